//! The catalogue of named workloads and the plan each one runs.
//!
//! Every workload that repeats an update exists twice: `<family>-burst` (operations back to
//! back, inside any commit delay) and `<family>-paced` (one operation per `pace_ms`, longer than
//! the commit delay, so that each update's own cost shows). `bench/README.md` says what each
//! one models.

use crate::content::{qemu_conf, Content, Lcg};
use crate::ha;
use crate::plan::{Plan, Readers, RunPart, Step, Timed};
use crate::seed::{self, Seed};
use serde::Serialize;

/// How a workload spaces its operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One fixed scenario.
    Single,
    /// The operations back to back.
    Burst,
    /// One operation every `pace_ms`.
    Paced,
}

/// What a family of workloads does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Baseline,
    Dd { bs: usize },
    TouchNew,
    TouchAgain,
    EchoOverwrite,
    EchoAppend,
    Mv,
    Rm,
    PveUpdate { size: usize },
    LrmStatus,
    LockChurn,
    IdleHa,
    ArmedHa,
    VmConfigs,
    Read { readers: usize },
}

struct Family {
    name: &'static str,
    kind: Kind,
    /// Repeated families: default operation counts (burst, paced). `None`: a single scenario.
    repeated: Option<(u64, u64)>,
    unit: &'static str,
    about: &'static str,
}

const MIB: usize = 1 << 20;

const FAMILIES: &[Family] = &[
    Family { name: "baseline", kind: Kind::Baseline, repeated: None, unit: "run",
        about: "start the daemon, do nothing, stop it: the fixed cost every other figure includes" },
    Family { name: "dd-512", kind: Kind::Dd { bs: 512 }, repeated: None, unit: "file",
        about: "dd bs=512 count=2048: 1 MiB in 512-byte writes into a new file" },
    Family { name: "dd-1m", kind: Kind::Dd { bs: MIB }, repeated: None, unit: "file",
        about: "dd bs=1M count=1: 1 MiB in one write into a new file" },
    Family { name: "touch-new", kind: Kind::TouchNew, repeated: Some((20, 5)), unit: "file",
        about: "touch of a file that does not exist yet (one new file per operation)" },
    Family { name: "touch-again", kind: Kind::TouchAgain, repeated: Some((20, 5)), unit: "touch",
        about: "touch of an existing 512-byte file (mtime only)" },
    Family { name: "echo-overwrite", kind: Kind::EchoOverwrite, repeated: Some((20, 5)), unit: "write",
        about: "echo line > existing file (O_TRUNC then one write)" },
    Family { name: "echo-append", kind: Kind::EchoAppend, repeated: Some((20, 5)), unit: "write",
        about: "echo line >> existing 512-byte file" },
    Family { name: "mv", kind: Kind::Mv, repeated: Some((20, 5)), unit: "rename",
        about: "mv of an existing 512-byte file to a new name" },
    Family { name: "rm", kind: Kind::Rm, repeated: Some((20, 5)), unit: "unlink",
        about: "rm of an existing 512-byte file" },
    Family { name: "pve-update-1k", kind: Kind::PveUpdate { size: 1024 }, repeated: Some((20, 10)), unit: "update",
        about: "Proxmox file update (NAME.tmp.PID in one write, rename over NAME) of a 1 KiB file" },
    Family { name: "pve-update-8k", kind: Kind::PveUpdate { size: 8 * 1024 }, repeated: Some((20, 10)), unit: "update",
        about: "the same pattern for an 8 KiB file" },
    Family { name: "pve-update-64k", kind: Kind::PveUpdate { size: 64 * 1024 }, repeated: Some((20, 10)), unit: "update",
        about: "the same pattern for a 64 KiB file" },
    Family { name: "pve-update-512k", kind: Kind::PveUpdate { size: 512 * 1024 }, repeated: Some((20, 10)), unit: "update",
        about: "the same pattern for a 512 KiB file" },
    Family { name: "lrm-status", kind: Kind::LrmStatus, repeated: Some((100, 20)), unit: "update",
        about: "pve-ha-lrm rewriting nodes/pve1/lrm_status (83 B JSON, new timestamp, key order varies)" },
    Family { name: "lock-churn", kind: Kind::LockChurn, repeated: Some((100, 10)), unit: "cycle",
        about: "cfs_lock_file: mkdir priv/lock/NAME, utime refresh, rmdir, one cycle per operation" },
    Family { name: "idle-ha-minute", kind: Kind::IdleHa, repeated: None, unit: "minute",
        about: "one real minute of an idle 3-node HA cluster as one node's disk sees it (workload.md 4.1)" },
    Family { name: "armed-ha-minute", kind: Kind::ArmedHa, repeated: None, unit: "minute",
        about: "one real minute of an armed 3-node HA cluster, pve1 CRM master (workload.md 4.2)" },
    Family { name: "vm-configs", kind: Kind::VmConfigs, repeated: None, unit: "config",
        about: "create 1000 VM configs under nodes/pve1/qemu-server/, then update each once" },
    Family { name: "read-parallel-1", kind: Kind::Read { readers: 1 }, repeated: None, unit: "cycle",
        about: "1 reader process: stat+open+read+close of 1000 files of 4 KiB, 20 passes" },
    Family { name: "read-parallel-8", kind: Kind::Read { readers: 8 }, repeated: None, unit: "cycle",
        about: "8 reader processes, each: stat+open+read+close of 1000 files of 4 KiB, 20 passes" },
];

/// Knobs shared by all plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    pub seed: Seed,
    /// Interval between operations of paced workloads.
    pub pace_ms: u64,
    /// Overrides the families' default operation counts.
    pub burst_ops: Option<u64>,
    pub paced_ops: Option<u64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seed: Seed::Pve3,
            pace_ms: 1500,
            burst_ops: None,
            paced_ops: None,
        }
    }
}

/// One named workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub name: String,
    pub family: &'static str,
    pub mode: Mode,
    /// Operations in the run: the divisor of the per-operation figures.
    pub ops: u64,
    pub unit: &'static str,
    pub about: &'static str,
    #[serde(skip)]
    kind: Kind,
}

/// Every workload, in the order a full run takes them (`baseline` first).
pub fn catalogue(cfg: &Config) -> Vec<Workload> {
    let mut out = Vec::new();
    for f in FAMILIES {
        let mut push = |name: String, mode: Mode, ops: u64| {
            out.push(Workload {
                name,
                family: f.name,
                mode,
                ops,
                unit: f.unit,
                about: f.about,
                kind: f.kind,
            })
        };
        match f.repeated {
            Some((burst, paced)) => {
                push(
                    format!("{}-burst", f.name),
                    Mode::Burst,
                    cfg.burst_ops.unwrap_or(burst),
                );
                push(
                    format!("{}-paced", f.name),
                    Mode::Paced,
                    cfg.paced_ops.unwrap_or(paced),
                );
            }
            None => {
                let ops = match f.kind {
                    Kind::VmConfigs => 1000,
                    Kind::Read { readers } => (readers * 1000 * READ_PASSES) as u64,
                    _ => 1,
                };
                push(f.name.to_string(), Mode::Single, ops);
            }
        }
    }
    out
}

/// Looks a workload up by its exact name.
pub fn find(cfg: &Config, name: &str) -> Option<Workload> {
    catalogue(cfg).into_iter().find(|w| w.name == name)
}

/// Resolves user selections: exact names, family names (both modes), or a prefix ending in `*`.
/// Keeps catalogue order and drops duplicates.
pub fn select(cfg: &Config, patterns: &[String]) -> Result<Vec<Workload>, String> {
    let all = catalogue(cfg);
    if patterns.is_empty() {
        return Ok(all);
    }
    let mut chosen = vec![false; all.len()];
    for p in patterns
        .iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let mut any = false;
        for (i, w) in all.iter().enumerate() {
            let hit = match p.strip_suffix('*') {
                Some(prefix) => w.name.starts_with(prefix),
                None => w.name == p || w.family == p,
            };
            if hit {
                chosen[i] = true;
                any = true;
            }
        }
        if !any {
            return Err(format!("no workload matches {p:?} (see --list)"));
        }
    }
    Ok(all
        .into_iter()
        .zip(chosen)
        .filter(|(_, c)| *c)
        .map(|(w, _)| w)
        .collect())
}

const READ_FILES: usize = 1000;
const READ_PASSES: usize = 20;
const SMALL_FILE: usize = 512;

fn small_file(i: u64) -> Content {
    let mut text = format!("# bench file {i}\n").into_bytes();
    text.extend(Lcg::new(i).base64(SMALL_FILE - text.len() - 1).into_bytes());
    text.push(b'\n');
    Content::Bytes(text)
}

fn update_content(size: usize, revision: u64) -> Content {
    let mut text = format!("# revision {revision}\n").into_bytes();
    let body = Lcg::new(revision * 31 + size as u64).base64(size);
    text.extend_from_slice(&body.as_bytes()[..size - text.len()]);
    Content::Bytes(text)
}

/// Directories and files the workload needs besides the seed.
fn needs(kind: Kind, ops: u64) -> Vec<Step> {
    let bench = || Step::MkdirAll("bench".into());
    let files = |prefix: &str| -> Vec<Step> {
        std::iter::once(bench())
            .chain((0..ops).map(|i| Step::Overwrite {
                path: format!("bench/{prefix}-{i}"),
                content: small_file(i),
            }))
            .collect()
    };
    match kind {
        Kind::Baseline => vec![],
        Kind::Dd { .. } | Kind::TouchNew => vec![bench()],
        Kind::TouchAgain => vec![
            bench(),
            Step::Overwrite {
                path: "bench/touch-0".into(),
                content: small_file(0),
            },
        ],
        Kind::EchoOverwrite => vec![
            bench(),
            Step::Overwrite {
                path: "bench/echo-0".into(),
                content: small_file(0),
            },
        ],
        Kind::EchoAppend => vec![
            bench(),
            Step::Overwrite {
                path: "bench/append-0".into(),
                content: small_file(0),
            },
        ],
        Kind::Mv => files("mv"),
        Kind::Rm => files("rm"),
        Kind::PveUpdate { size } => vec![
            bench(),
            Step::Overwrite {
                path: format!("bench/update-{}.cfg", size / 1024),
                content: update_content(size, 0),
            },
        ],
        Kind::LrmStatus => vec![Step::MkdirAll("nodes/pve1".into())],
        Kind::LockChurn => vec![Step::MkdirAll("priv/lock".into())],
        Kind::IdleHa => {
            let mut s = vec![Step::MkdirAll("priv/lock".into())];
            s.extend(
                seed::NODES
                    .iter()
                    .map(|n| Step::MkdirAll(format!("nodes/{n}"))),
            );
            s
        }
        Kind::ArmedHa => ha::armed_prepare(),
        Kind::VmConfigs => vec![Step::MkdirAll("nodes/pve1/qemu-server".into())],
        Kind::Read { .. } => {
            let spec = read_spec(1);
            std::iter::once(Step::MkdirAll(spec.dir.clone()))
                .chain((0..spec.files).map(|i| Step::Overwrite {
                    path: format!("{}/{}", spec.dir, Readers::file_name(i)),
                    content: Content::Bytes(spec.content(i)),
                }))
                .collect()
        }
    }
}

fn read_spec(readers: usize) -> Readers {
    Readers {
        dir: "bench/read".into(),
        files: READ_FILES,
        file_size: 4096,
        readers,
        passes: READ_PASSES,
    }
}

/// The operations of repetition `i`.
fn op(kind: Kind, i: u64) -> Vec<Step> {
    match kind {
        Kind::TouchNew => vec![Step::Touch(format!("bench/new-{i}"))],
        Kind::TouchAgain => vec![Step::Touch("bench/touch-0".into())],
        Kind::EchoOverwrite => vec![Step::Overwrite {
            path: "bench/echo-0".into(),
            content: Content::Bytes(format!("echo line {i}\n").into_bytes()),
        }],
        Kind::EchoAppend => vec![Step::Append {
            path: "bench/append-0".into(),
            data: format!("echo line {i}\n").into_bytes(),
        }],
        Kind::Mv => vec![Step::Rename {
            from: format!("bench/mv-{i}"),
            to: format!("bench/mv-{i}.moved"),
        }],
        Kind::Rm => vec![Step::Unlink(format!("bench/rm-{i}"))],
        Kind::PveUpdate { size } => vec![Step::SetContents {
            target: format!("bench/update-{}.cfg", size / 1024),
            pid: 50_000,
            content: update_content(size, i + 1),
        }],
        Kind::LrmStatus => vec![Step::SetContents {
            target: "nodes/pve1/lrm_status".into(),
            pid: 41_000,
            content: Content::LrmStatus {
                state: "wait_for_agent_lock",
                services: vec![],
                shuffle: i,
            },
        }],
        Kind::LockChurn => {
            let lock = format!("priv/lock/bench-{i}");
            vec![
                Step::Mkdir(lock.clone()),
                Step::Utime {
                    path: lock.clone(),
                    mtime: crate::plan::Mtime::Now,
                },
                Step::Rmdir(lock),
            ]
        }
        _ => vec![],
    }
}

/// The plan of workload `w`.
pub fn plan(w: &Workload, cfg: &Config) -> Plan {
    let mut prepare = seed::steps(cfg.seed);
    prepare.extend(needs(w.kind, w.ops));
    let (run, min_duration_ms) = match w.kind {
        Kind::Baseline => (RunPart::Steps(vec![]), 0),
        Kind::Dd { bs } => (
            RunPart::Steps(vec![Timed::now(Step::Dd {
                path: format!("bench/dd-{bs}"),
                bs,
                count: MIB / bs,
                seed: bs as u64,
            })]),
            0,
        ),
        Kind::IdleHa => (RunPart::Steps(ha::idle_minute()), ha::MINUTE_MS),
        Kind::ArmedHa => (RunPart::Steps(ha::armed_minute()), ha::MINUTE_MS),
        Kind::VmConfigs => {
            let dir = "nodes/pve1/qemu-server";
            let mut steps = Vec::new();
            for revision in 0..2u32 {
                for vmid in 1000..1000 + w.ops as u32 {
                    steps.push(Timed::now(Step::SetContents {
                        target: format!("{dir}/{vmid}.conf"),
                        pid: 60_000,
                        content: Content::Bytes(qemu_conf(vmid, "pve1", revision).into_bytes()),
                    }));
                }
            }
            (RunPart::Steps(steps), 0)
        }
        Kind::Read { readers } => (RunPart::Readers(read_spec(readers)), 0),
        kind => {
            let interval = if w.mode == Mode::Paced {
                cfg.pace_ms
            } else {
                0
            };
            let steps = (0..w.ops)
                .flat_map(|i| {
                    op(kind, i)
                        .into_iter()
                        .map(move |s| Timed::at(i * interval, s))
                })
                .collect();
            // A paced run lasts its full last interval, so its last operation is as alone as
            // the others before the stop.
            (
                RunPart::Steps(steps),
                if w.mode == Mode::Paced {
                    w.ops * cfg.pace_ms
                } else {
                    0
                },
            )
        }
    };
    Plan {
        prepare,
        run,
        min_duration_ms,
    }
}

/// The physical floor of a run: each operation's net effect persisted in its own commit, data
/// rounded up to 4 KiB pages, one page for a metadata-only change, nothing for a lock directory
/// made and removed within the run, nothing for reads and tolerated probes.
pub fn page_floor(plan: &Plan) -> u64 {
    use std::collections::HashSet;
    const PAGE: u64 = 4096;
    let steps = plan.steps();
    let made: HashSet<&str> = steps
        .iter()
        .filter_map(|t| {
            if let Step::Mkdir(p) = &t.step {
                Some(p.as_str())
            } else {
                None
            }
        })
        .collect();
    let removed: HashSet<&str> = steps
        .iter()
        .filter_map(|t| {
            if let Step::Rmdir(p) = &t.step {
                Some(p.as_str())
            } else {
                None
            }
        })
        .collect();
    let transient = |p: &str| made.contains(p) && removed.contains(p);
    steps
        .iter()
        .filter(|t| t.expect == crate::plan::Expect::Success && t.step.mutates())
        .map(|t| match &t.step {
            Step::Mkdir(p) | Step::Rmdir(p) | Step::Utime { path: p, .. } if transient(p) => 0,
            s => s.logical_bytes().div_ceil(PAGE).max(1) * PAGE,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Expect;

    fn cfg() -> Config {
        Config::default()
    }

    #[test]
    fn names_are_unique_and_baseline_comes_first() {
        let all = catalogue(&cfg());
        let mut names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names[0], "baseline");
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn the_issues_workloads_all_exist() {
        for name in [
            "dd-512",
            "dd-1m",
            "touch-new-burst",
            "touch-again-paced",
            "echo-overwrite-burst",
            "echo-append-paced",
            "mv-burst",
            "rm-paced",
            "pve-update-1k-paced",
            "pve-update-8k-burst",
            "pve-update-64k-burst",
            "pve-update-512k-paced",
            "lrm-status-burst",
            "lrm-status-paced",
            "lock-churn-burst",
            "lock-churn-paced",
            "idle-ha-minute",
            "armed-ha-minute",
            "vm-configs",
            "read-parallel-1",
            "read-parallel-8",
        ] {
            assert!(find(&cfg(), name).is_some(), "{name}");
        }
    }

    #[test]
    fn every_repeated_family_has_burst_and_paced() {
        let all = catalogue(&cfg());
        for w in all.iter().filter(|w| w.mode == Mode::Burst) {
            assert!(
                all.iter()
                    .any(|p| p.family == w.family && p.mode == Mode::Paced),
                "{}",
                w.family
            );
        }
        assert_eq!(find(&cfg(), "lrm-status-burst").unwrap().ops, 100);
    }

    #[test]
    fn selection_by_name_family_and_prefix() {
        let c = cfg();
        let names = |p: &[&str]| -> Vec<String> {
            select(&c, &p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .into_iter()
                .map(|w| w.name)
                .collect()
        };
        assert_eq!(names(&["mv"]), ["mv-burst", "mv-paced"]);
        assert_eq!(names(&["dd-1m,mv-paced"]), ["dd-1m", "mv-paced"]);
        assert_eq!(names(&["pve-update-*"]).len(), 8);
        assert_eq!(names(&["rm-burst", "rm"]), ["rm-burst", "rm-paced"]);
        assert!(select(&c, &["nope".into()]).is_err());
        assert_eq!(select(&c, &[]).unwrap().len(), catalogue(&c).len());
    }

    #[test]
    fn paced_plans_space_operations_by_the_pace() {
        let c = Config {
            pace_ms: 700,
            ..cfg()
        };
        let w = find(&c, "pve-update-1k-paced").unwrap();
        let p = plan(&w, &c);
        let times: Vec<u64> = p.steps().iter().map(|t| t.at_ms).collect();
        assert_eq!(times, (0..10).map(|i| i * 700).collect::<Vec<_>>());
        assert_eq!(p.min_duration_ms, 7000);
        assert_eq!(p.logical_bytes(), 10 * 1024);
        let b = plan(&find(&c, "pve-update-1k-burst").unwrap(), &c);
        assert!(b.steps().iter().all(|t| t.at_ms == 0));
        assert_eq!(b.min_duration_ms, 0);
    }

    #[test]
    fn update_contents_have_the_exact_size_and_differ() {
        for size in [1024, 8192, 65536, 524288] {
            let a = update_content(size, 1);
            assert_eq!(a.len_hint(), size);
            assert_ne!(a, update_content(size, 2));
        }
        assert_eq!(small_file(3).len_hint(), SMALL_FILE);
    }

    #[test]
    fn dd_writes_one_mib_in_the_requested_block_size() {
        let c = cfg();
        let p = plan(&find(&c, "dd-512").unwrap(), &c);
        assert_eq!(p.logical_bytes(), 1 << 20);
        assert!(matches!(
            &p.steps()[0].step,
            Step::Dd {
                bs: 512,
                count: 2048,
                ..
            }
        ));
    }

    #[test]
    fn seed_choice_only_changes_the_preparation() {
        let pve3 = cfg();
        let empty = Config {
            seed: Seed::Empty,
            ..cfg()
        };
        let w = find(&pve3, "lrm-status-paced").unwrap();
        let (a, b) = (plan(&w, &pve3), plan(&w, &empty));
        assert_eq!(a.run, b.run);
        assert!(a.prepare.len() > b.prepare.len());
        assert_eq!(b.prepare, vec![Step::MkdirAll("nodes/pve1".into())]);
    }

    #[test]
    fn page_floor_ignores_transient_locks() {
        let c = cfg();
        let lock = plan(&find(&c, "lock-churn-burst").unwrap(), &c);
        assert_eq!(page_floor(&lock), 0);
        let upd = plan(&find(&c, "pve-update-64k-paced").unwrap(), &c);
        assert_eq!(page_floor(&upd), 10 * 16 * 4096);
        let rm = plan(&find(&c, "rm-burst").unwrap(), &c);
        assert_eq!(page_floor(&rm), 20 * 4096);
    }

    #[test]
    fn read_workloads_prepare_their_files() {
        let c = Config {
            seed: Seed::Empty,
            ..cfg()
        };
        let w = find(&c, "read-parallel-8").unwrap();
        let p = plan(&w, &c);
        assert_eq!(p.prepare.len(), 1 + READ_FILES);
        assert!(matches!(&p.run, RunPart::Readers(r) if r.readers == 8 && r.files == READ_FILES));
        assert_eq!(w.ops, 8 * 1000 * 20);
    }

    #[test]
    fn mutations_of_single_files_are_all_expected_to_succeed() {
        let c = cfg();
        for w in catalogue(&c).iter().filter(|w| w.mode != Mode::Single) {
            assert!(
                plan(w, &c)
                    .steps()
                    .iter()
                    .all(|t| t.expect == Expect::Success),
                "{}",
                w.name
            );
        }
    }
}
