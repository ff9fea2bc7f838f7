//! The cluster workloads (`lwcfs-bench cluster`): what a 3-node cluster of one daemon (all
//! lwcfs or all C) costs, on a real Corosync cluster ([`crate::rig`]), each node's database
//! directory on its own loop-mounted ext4 image.
//!
//! This module is the pure part: the catalogue, the plan each workload runs on node 1, and the
//! latency statistics. [`run`] makes the measured runs (root); [`report`] the summaries, tables
//! and JSON. `bench/README.md` says what each workload models.

pub mod report;
pub mod run;

use crate::content::{Content, Lcg};
use crate::plan::{Step, Timed};
use crate::seed::{self, Seed};
use serde::{Deserialize, Serialize};

/// What a workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Start the 3 daemons, wait until they are synced, stop them: the fixed cost.
    Baseline,
    /// Small writes on node 1, back to back, each one timed.
    WriteLatency,
    /// A fresh node 3 joins nodes 1 and 2, which hold many files.
    Join,
    /// Paced Proxmox-style updates of a 1 KiB file on node 1.
    PveUpdate,
    /// `priv/lock/<name>` mkdir + rmdir pairs on node 1, back to back.
    LockChurn,
}

/// Knobs of the cluster workloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The tree node 1 writes before the measured run (without its `corosync.conf`: the rig's
    /// own is in the tree already).
    pub seed: Seed,
    /// Interval between the paced updates.
    pub pace_ms: u64,
    pub latency_ops: u64,
    /// Bytes of each timed write.
    pub latency_size: usize,
    pub update_ops: u64,
    pub update_size: usize,
    pub lock_ops: u64,
    /// Files nodes 1 and 2 hold when node 3 joins, and their size.
    pub join_files: u64,
    pub join_file_size: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seed: Seed::Pve3,
            pace_ms: 1500,
            latency_ops: 1000,
            latency_size: 100,
            update_ops: 20,
            update_size: 1024,
            lock_ops: 100,
            join_files: 10_000,
            join_file_size: 5 * 1024,
        }
    }
}

/// One named cluster workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub kind: Kind,
    /// Operations in the run: the divisor of the per-operation figures.
    pub ops: u64,
    pub unit: String,
    pub about: String,
}

/// Every cluster workload, `cluster-baseline` first.
pub fn catalogue(cfg: &Config) -> Vec<Workload> {
    let w = |name: &str, kind: Kind, ops: u64, unit: &str, about: String| Workload {
        name: name.into(),
        kind,
        ops,
        unit: unit.into(),
        about,
    };
    vec![
        w(
            "cluster-baseline",
            Kind::Baseline,
            1,
            "run",
            "start the 3 daemons, wait until synced, stop them: the fixed cost per node".into(),
        ),
        w(
            "cluster-write-latency",
            Kind::WriteLatency,
            cfg.latency_ops,
            "write",
            format!(
                "on node 1: open(O_TRUNC) an existing file, write {} bytes, close; back to back, \
                 each timed",
                cfg.latency_size
            ),
        ),
        w(
            "cluster-join",
            Kind::Join,
            cfg.join_files,
            "file",
            format!(
                "nodes 1 and 2 hold {} files of {} bytes; a fresh node 3 (empty database) \
                 joins: time until synced, bytes on its disk",
                cfg.join_files, cfg.join_file_size
            ),
        ),
        w(
            "cluster-pve-update",
            Kind::PveUpdate,
            cfg.update_ops,
            "update",
            format!(
                "on node 1, one every {} ms: {} bytes written to NAME.tmp.PID in one write, \
                 renamed over NAME; bytes on every node",
                cfg.pace_ms, cfg.update_size
            ),
        ),
        w(
            "cluster-lock-churn",
            Kind::LockChurn,
            cfg.lock_ops,
            "pair",
            "on node 1, back to back: mkdir priv/lock/NAME, rmdir it; bytes on every node".into(),
        ),
    ]
}

/// Resolves `-w` selections (exact names, or a prefix ending in `*`, comma-separated or
/// repeated) in catalogue order; `cluster-baseline` is added unless `no_baseline`.
pub fn select(
    cfg: &Config,
    patterns: &[String],
    no_baseline: bool,
) -> Result<Vec<Workload>, String> {
    let all = catalogue(cfg);
    let mut chosen = vec![patterns.is_empty(); all.len()];
    for p in patterns
        .iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let hits: Vec<usize> = (0..all.len())
            .filter(|&i| match p.strip_suffix('*') {
                Some(prefix) => all[i].name.starts_with(prefix),
                None => all[i].name == p,
            })
            .collect();
        if hits.is_empty() {
            return Err(format!("no cluster workload matches {p:?} (see --list)"));
        }
        for i in hits {
            chosen[i] = true;
        }
    }
    chosen[0] |= !no_baseline;
    Ok(all
        .into_iter()
        .zip(chosen)
        .filter(|(_, c)| *c)
        .map(|(w, _)| w)
        .collect())
}

/// What a workload runs, on node 1, through its mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Before the measured run (not measured): directories first, then files.
    pub prepare: Vec<Step>,
    /// The measured run (empty for the baseline and the join, whose run is node 3's start).
    pub run: Vec<Timed>,
    /// The shortest wall time of the run.
    pub min_duration_ms: u64,
    /// A path the preparation makes last: once every node shows it, every node has applied
    /// the preparation.
    pub prepared_probe: Option<String>,
}

impl Plan {
    pub fn logical_bytes(&self) -> u64 {
        self.run.iter().map(|t| t.step.logical_bytes()).sum()
    }
}

fn bytes(seed: u64, size: usize) -> Content {
    let mut text = format!("# bench {seed}\n").into_bytes();
    text.extend(Lcg::new(seed).base64(size).into_bytes());
    text.truncate(size);
    if let Some(last) = text.last_mut() {
        *last = b'\n';
    }
    Content::Bytes(text)
}

/// Where file `k` of the join workload lives: 100 files per directory.
pub fn join_file(k: u64) -> String {
    format!("bench/join/d{:03}/f{:03}.cfg", k / 100, k % 100)
}

/// The plan of `w`.
pub fn plan(w: &Workload, cfg: &Config) -> Plan {
    let mut prepare: Vec<Step> = seed::steps(cfg.seed)
        .into_iter()
        .filter(|s| !matches!(s, Step::Overwrite { path, .. } if path == "corosync.conf"))
        .collect();
    let mut run = Vec::new();
    let mut min_duration_ms = 0;
    let probe: Option<String>;
    match w.kind {
        Kind::Baseline => probe = None,
        Kind::WriteLatency => {
            let path = "bench/latency.cfg".to_string();
            prepare.push(Step::MkdirAll("bench".into()));
            prepare.push(Step::Overwrite {
                path: path.clone(),
                content: bytes(0, cfg.latency_size),
            });
            run = (0..w.ops)
                .map(|i| {
                    Timed::now(Step::Overwrite {
                        path: path.clone(),
                        content: bytes(i + 1, cfg.latency_size),
                    })
                })
                .collect();
            probe = Some(path);
        }
        Kind::Join => {
            let dirs = w.ops.div_ceil(100);
            prepare.extend((0..dirs).map(|d| Step::MkdirAll(format!("bench/join/d{d:03}"))));
            prepare.extend((0..w.ops).map(|k| Step::Overwrite {
                path: join_file(k),
                content: bytes(1_000_000 + k, cfg.join_file_size),
            }));
            probe = w.ops.checked_sub(1).map(join_file);
        }
        Kind::PveUpdate => {
            let target = "bench/update.cfg".to_string();
            prepare.push(Step::MkdirAll("bench".into()));
            prepare.push(Step::Overwrite {
                path: target.clone(),
                content: bytes(0, cfg.update_size),
            });
            run = (0..w.ops)
                .map(|i| {
                    Timed::at(
                        i * cfg.pace_ms,
                        Step::SetContents {
                            target: target.clone(),
                            pid: 50_000,
                            content: bytes(i + 1, cfg.update_size),
                        },
                    )
                })
                .collect();
            // The last update is as alone as the others before the stop.
            min_duration_ms = w.ops * cfg.pace_ms;
            probe = Some(target);
        }
        Kind::LockChurn => {
            prepare.push(Step::MkdirAll("priv/lock".into()));
            run = (0..w.ops)
                .flat_map(|i| {
                    let lock = format!("priv/lock/bench-{i}");
                    [Step::Mkdir(lock.clone()), Step::Rmdir(lock)]
                })
                .map(Timed::now)
                .collect();
            probe = Some("priv/lock".into());
        }
    }
    Plan {
        prepare,
        run,
        min_duration_ms,
        prepared_probe: probe,
    }
}

/// Latency figures of one run, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub n: usize,
    pub median_ms: f64,
    /// Nearest-rank 99th percentile.
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// `None` without samples.
    pub fn of(samples_ms: &[f64]) -> Option<Latency> {
        if samples_ms.is_empty() {
            return None;
        }
        let mut v = samples_ms.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let rank = |p: f64| v[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Latency {
            n,
            median_ms: median,
            p99_ms: rank(0.99),
            mean_ms: v.iter().sum::<f64>() / n as f64,
            min_ms: v[0],
            max_ms: v[n - 1],
        })
    }
}

/// Whether a C pmxcfs log (the part since the daemon started) shows its database group
/// synced with `members` members: its last `[dcdb] notice: members: …` line lists that many,
/// and `[dcdb] notice: all data is up to date` follows it. A member alone is synced at once,
/// without a round (C logs the mode only when it changes, so the line may not follow).
pub fn c_log_synced(log: &str, members: usize) -> bool {
    const MEMBERS: &str = "[dcdb] notice: members: ";
    let Some(pos) = log.rfind(MEMBERS) else {
        return false;
    };
    let rest = &log[pos..];
    let line = rest.lines().next().unwrap_or_default();
    let listed = line[MEMBERS.len()..]
        .split(", ")
        .filter(|m| !m.trim().is_empty())
        .count();
    listed == members && (members == 1 || rest.contains("[dcdb] notice: all data is up to date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::default()
    }

    fn find(name: &str) -> Workload {
        catalogue(&cfg())
            .into_iter()
            .find(|w| w.name == name)
            .unwrap()
    }

    #[test]
    fn the_issues_workloads_exist_with_their_counts() {
        assert_eq!(find("cluster-write-latency").ops, 1000);
        assert_eq!(find("cluster-join").ops, 10_000);
        assert_eq!(find("cluster-pve-update").ops, 20);
        assert_eq!(find("cluster-lock-churn").ops, 100);
        assert_eq!(catalogue(&cfg())[0].name, "cluster-baseline");
    }

    #[test]
    fn selection_adds_the_baseline_unless_told_not_to() {
        let names = |p: &[&str], nb: bool| -> Vec<String> {
            let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            select(&cfg(), &p, nb)
                .unwrap()
                .into_iter()
                .map(|w| w.name)
                .collect()
        };
        assert_eq!(
            names(&["cluster-join"], false),
            ["cluster-baseline", "cluster-join"]
        );
        assert_eq!(names(&["cluster-join"], true), ["cluster-join"]);
        assert_eq!(names(&["cluster-*"], true).len(), 5);
        assert_eq!(names(&[], false).len(), 5);
        assert!(select(&cfg(), &["pve-update-1k".into()], false).is_err());
    }

    #[test]
    fn the_seed_loses_its_corosync_conf() {
        let p = plan(&find("cluster-baseline"), &cfg());
        assert!(!p.prepare.is_empty());
        assert!(!p
            .prepare
            .iter()
            .any(|s| matches!(s, Step::Overwrite { path, .. } if path.contains("corosync"))));
    }

    #[test]
    fn latency_writes_have_the_size_and_differ() {
        let c = cfg();
        let p = plan(&find("cluster-write-latency"), &c);
        assert_eq!(p.run.len(), 1000);
        assert_eq!(p.logical_bytes(), 1000 * 100);
        assert!(p.run.iter().all(|t| t.at_ms == 0));
        assert_ne!(p.run[0].step, p.run[1].step);
    }

    #[test]
    fn join_prepares_its_files_in_directories_of_100() {
        let c = Config {
            seed: Seed::Empty,
            ..cfg()
        };
        let p = plan(&find("cluster-join"), &c);
        assert_eq!(p.prepare.len(), 100 + 10_000);
        assert!(p.run.is_empty());
        assert_eq!(
            p.prepared_probe.as_deref(),
            Some("bench/join/d099/f099.cfg")
        );
        let Step::Overwrite { content, .. } = &p.prepare[100] else {
            panic!("not a file")
        };
        assert_eq!(content.len_hint(), 5120);
    }

    #[test]
    fn updates_are_paced_and_lock_pairs_are_not() {
        let c = cfg();
        let u = plan(&find("cluster-pve-update"), &c);
        let times: Vec<u64> = u.run.iter().map(|t| t.at_ms).collect();
        assert_eq!(times, (0..20).map(|i| i * 1500).collect::<Vec<_>>());
        assert_eq!(u.min_duration_ms, 30_000);
        assert_eq!(u.logical_bytes(), 20 * 1024);
        let l = plan(&find("cluster-lock-churn"), &c);
        assert_eq!(l.run.len(), 200);
        assert!(matches!(&l.run[1].step, Step::Rmdir(p) if p == "priv/lock/bench-0"));
        assert_eq!(l.min_duration_ms, 0);
    }

    #[test]
    fn latency_percentiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=1000).map(f64::from).collect();
        let l = Latency::of(&samples).unwrap();
        assert_eq!((l.n, l.median_ms, l.p99_ms), (1000, 500.5, 990.0));
        assert_eq!((l.min_ms, l.max_ms, l.mean_ms), (1.0, 1000.0, 500.5));
        let one = Latency::of(&[2.0]).unwrap();
        assert_eq!((one.median_ms, one.p99_ms), (2.0, 2.0));
        assert!(Latency::of(&[]).is_none());
    }

    #[test]
    fn c_log_sync_state() {
        let start = "[main] notice: resolved node name 'node3' to '10.99.0.3'\n\
                     [dcdb] notice: members: 3/900\n\
                     [dcdb] notice: all data is up to date\n";
        assert!(c_log_synced(start, 1));
        assert!(!c_log_synced(start, 3));
        let joining = format!(
            "{start}[dcdb] notice: members: 1/100, 2/200, 3/900\n\
             [dcdb] notice: starting data syncronisation\n\
             [status] notice: all data is up to date\n\
             [dcdb] notice: waiting for updates from leader\n"
        );
        assert!(!c_log_synced(&joining, 3));
        let done = format!("{joining}[dcdb] notice: all data is up to date\n");
        assert!(c_log_synced(&done, 3));
        // The others stopped: alone, it is synced without a round and without a new line.
        let alone = format!("{done}[dcdb] notice: members: 1/100\n");
        assert!(c_log_synced(&alone, 1));
        assert!(!c_log_synced(&alone, 2));
        assert!(!c_log_synced("", 1));
    }
}
