//! One real minute of a 3-node HA cluster as one node's database sees it
//! (`shared/spec/workload.md` §4.1 idle and §4.2 armed).
//!
//! Every node of a pmxcfs cluster applies every node's mutations to its own database, so the
//! minute replays all three nodes' operations against the one daemon under test, each at its
//! offset in the minute. Node `pve1` is the one whose disk is measured (the sandbox's hostname)
//! and, when armed, the CRM master; its own reads are replayed too.

use crate::content::Content;
use crate::plan::{Mtime, Step, Timed};
use crate::seed::NODES;

/// Length of the model.
pub const MINUTE_MS: u64 = 60_000;

/// Fake pids used in the `.tmp.<pid>` names of each node's LRM and CRM.
fn lrm_pid(k: usize) -> u32 {
    41_000 + k as u32
}
const CRM_PID: u32 = 42_000;

fn lrm_status(node: &str, k: usize, state: &'static str, services: Vec<u32>, round: u64) -> Step {
    Step::SetContents {
        target: format!("nodes/{node}/lrm_status"),
        pid: lrm_pid(k),
        content: Content::LrmStatus {
            state,
            services,
            shuffle: round * 7 + k as u64,
        },
    }
}

/// pvescheduler on every node, once per minute at about the same second: a `cfs_lock_file` pair
/// for `replication.cfg` and one for `jobs.cfg` (§3.2). Nodes contend for the same lock names;
/// applied in order, each pair succeeds.
fn scheduler(out: &mut Vec<Timed>) {
    for k in 0..NODES.len() {
        let t = 200 + 150 * k as u64;
        for lock in ["priv/lock/file-replication_cfg", "priv/lock/file-jobs_cfg"] {
            out.push(Timed::at(t, Step::Mkdir(lock.into())));
            out.push(Timed::at(t, Step::Rmdir(lock.into())));
        }
    }
}

/// pve1's own reads (§4.1 table): LRM and CRM lstat `local` every 5 s, pvestatd every 10 s.
/// They cost no write; they are here so that a daemon that writes on reads shows it.
fn own_reads(out: &mut Vec<Timed>) {
    for i in 0..12u64 {
        out.push(Timed::probe(100 + 5000 * i, Step::Lstat("local".into())));
        out.push(Timed::probe(150 + 5000 * i, Step::Lstat("local".into())));
    }
    for i in 0..6u64 {
        let t = 2500 + 10_000 * i;
        out.push(Timed::probe(t, Step::Read("nodes/pve1/config".into())));
        out.push(Timed::probe(t, Step::Stat("authkey.pub".into())));
        out.push(Timed::probe(t, Step::Lstat("local".into())));
    }
}

fn sorted(mut v: Vec<Timed>) -> Vec<Timed> {
    // Stable: steps at the same time keep their order (mkdir before rmdir).
    v.sort_by_key(|t| t.at_ms);
    v
}

/// §4.1: HA services running, no HA resources. Each LRM writes `lrm_status` every 5 s in
/// `wait_for_agent_lock` (12 per node); each scheduler makes two lock pairs. 120 mutations.
pub fn idle_minute() -> Vec<Timed> {
    let mut out = Vec::new();
    for (k, node) in NODES.iter().enumerate() {
        let offset = 400 + 1700 * k as u64;
        for i in 0..12u64 {
            out.push(Timed::at(
                offset + 5000 * i,
                lrm_status(node, k, "wait_for_agent_lock", vec![], i),
            ));
        }
    }
    scheduler(&mut out);
    own_reads(&mut out);
    sorted(out)
}

/// The HA services of the armed model: one VM per node.
pub fn armed_services() -> Vec<(u32, &'static str)> {
    NODES
        .iter()
        .enumerate()
        .map(|(k, n)| (100 + 10 * k as u32, *n))
        .collect()
}

/// What the armed minute needs before it starts: the agent locks of all LRMs and the manager
/// lock held by pve1, the HA config and status files.
pub fn armed_prepare() -> Vec<Step> {
    let mut s = vec![
        Step::MkdirAll("priv/lock".into()),
        Step::MkdirAll("ha".into()),
    ];
    for node in NODES {
        s.push(Step::MkdirAll(format!("nodes/{node}")));
        s.push(Step::Mkdir(format!("priv/lock/ha_agent_{node}_lock")));
    }
    s.push(Step::Mkdir("priv/lock/ha_manager_lock".into()));
    let resources: String = armed_services()
        .iter()
        .map(|(vmid, _)| format!("vm: {vmid}\n\tstate started\n\n"))
        .collect();
    s.push(Step::Overwrite {
        path: "ha/resources.cfg".into(),
        content: Content::Bytes(resources.into_bytes()),
    });
    s.push(Step::Overwrite {
        path: "ha/crm_commands".into(),
        content: Content::Bytes(Vec::new()),
    });
    s
}

/// §4.2: HA guests configured and running, pve1 CRM master. Per 10 s round each LRM refreshes
/// its agent lock and writes `lrm_status`; the master refreshes its lock, clears `crm_commands`
/// under the `domain-ha` lock and writes `manager_status`; the two slave CRMs probe the manager
/// lock every second (a failing mkdir and an unlock request, no database write in C). With the
/// scheduler's pairs: 132 mutations and 240 probes.
pub fn armed_minute() -> Vec<Timed> {
    let mut out = Vec::new();
    let services = armed_services();
    for (k, node) in NODES.iter().enumerate() {
        let offset = 300 + 3100 * k as u64;
        let own: Vec<u32> = services
            .iter()
            .filter(|(_, n)| n == node)
            .map(|(v, _)| *v)
            .collect();
        for i in 0..6u64 {
            let t = offset + 10_000 * i;
            out.push(Timed::at(
                t,
                Step::Utime {
                    path: format!("priv/lock/ha_agent_{node}_lock"),
                    mtime: Mtime::Now,
                },
            ));
            out.push(Timed::at(t, lrm_status(node, k, "active", own.clone(), i)));
        }
    }
    for i in 0..6u64 {
        let t = 1500 + 10_000 * i;
        out.push(Timed::at(
            t,
            Step::Utime {
                path: "priv/lock/ha_manager_lock".into(),
                mtime: Mtime::Now,
            },
        ));
        out.push(Timed::at(t, Step::Mkdir("priv/lock/domain-ha".into())));
        out.push(Timed::at(
            t,
            Step::SetContents {
                target: "ha/crm_commands".into(),
                pid: CRM_PID,
                content: Content::Bytes(Vec::new()),
            },
        ));
        out.push(Timed::at(t, Step::Rmdir("priv/lock/domain-ha".into())));
        out.push(Timed::at(
            t,
            Step::SetContents {
                target: "ha/manager_status".into(),
                pid: CRM_PID,
                content: Content::ManagerStatus {
                    master: "pve1",
                    nodes: NODES.to_vec(),
                    services: services.clone(),
                    shuffle: i,
                },
            },
        ));
    }
    for k in 1..NODES.len() {
        for i in 0..60u64 {
            let t = 700 + 100 * k as u64 + 1000 * i;
            out.push(Timed::probe(
                t,
                Step::Mkdir("priv/lock/ha_manager_lock".into()),
            ));
            out.push(Timed::probe(
                t,
                Step::Utime {
                    path: "priv/lock/ha_manager_lock".into(),
                    mtime: Mtime::Zero,
                },
            ));
        }
    }
    scheduler(&mut out);
    own_reads(&mut out);
    sorted(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Expect;

    fn mutations(v: &[Timed]) -> u64 {
        v.iter()
            .filter(|t| t.expect == Expect::Success)
            .map(|t| t.step.c_mutations())
            .sum()
    }

    #[test]
    fn idle_minute_is_120_mutations_108_from_lrm_status() {
        let m = idle_minute();
        assert_eq!(mutations(&m), 120);
        let lrm: u64 = m
            .iter()
            .filter(|t| matches!(&t.step, Step::SetContents { target, .. } if target.ends_with("lrm_status")))
            .map(|t| t.step.c_mutations())
            .sum();
        assert_eq!(lrm, 108);
        assert!(m.iter().all(|t| t.at_ms < MINUTE_MS));
        assert!(m.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[test]
    fn armed_minute_is_132_mutations_and_240_probes() {
        let m = armed_minute();
        assert_eq!(mutations(&m), 132);
        let probes = m
            .iter()
            .filter(|t| t.expect == Expect::Tolerated && t.step.mutates())
            .count();
        assert_eq!(probes, 240);
        assert!(m.iter().all(|t| t.at_ms < MINUTE_MS));
    }

    #[test]
    fn lock_pairs_are_made_before_they_are_removed() {
        for m in [idle_minute(), armed_minute()] {
            let mut held = std::collections::HashSet::new();
            for t in m.iter().filter(|t| t.expect == Expect::Success) {
                match &t.step {
                    Step::Mkdir(p) => assert!(held.insert(p.clone()), "{p} made twice"),
                    Step::Rmdir(p) => assert!(held.remove(p), "{p} removed before made"),
                    _ => {}
                }
            }
            assert!(held.is_empty());
        }
    }

    #[test]
    fn each_lrm_writes_its_own_node_only() {
        for t in idle_minute() {
            if let Step::SetContents { target, pid, .. } = &t.step {
                let k = (*pid - 41_000) as usize;
                assert_eq!(target, &format!("nodes/{}/lrm_status", NODES[k]));
            }
        }
    }
}
