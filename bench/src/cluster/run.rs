//! One measured run of a cluster workload: a fresh 3-node rig (fresh images), the daemons
//! started, prepared, stopped, the zero point, the measured part, the daemons stopped, the
//! figures of every measured node's loop device.
//!
//! Which daemons speak `lwcfs stats` is [`DaemonSpec::stats`] (`--stats`, by default the
//! binaries named `lwcfs*`): those are judged synced by their stats (mode `Synced`, every
//! member, one checksum), the others by C pmxcfs's log ([`super::c_log_synced`]).

use super::{c_log_synced, Config, Kind, Latency, Workload};
use crate::diskstat::DiskStat;
use crate::exec::Outcome;
use crate::progress::Progress;
use crate::rig::{self, wait_until, Rig, FORM_TIMEOUT};
use crate::runner::{find_counter, interrupted, DaemonSpec, Fatal};
use crate::sandbox::{output_with_timeout, Exit, Stopped, MOUNT_POINT};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The nodes of every rig.
const NODES: [usize; 3] = [1, 2, 3];

/// What lwcfs logs when its database group is synced.
const LWCFS_SYNCED: &str = "pve_dcdb_v1: all data is up to date";

/// How runs are made.
#[derive(Debug, Clone)]
pub struct Options {
    pub cluster: Config,
    pub rig: rig::Config,
    /// Wait after the workload before the daemons are stopped.
    pub settle_ms: u64,
    pub stop_timeout: Duration,
    /// Keep every node's daemon log of every run here.
    pub logs: Option<PathBuf>,
}

/// What one node's disk took during the measured part.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeFigures {
    pub node: usize,
    /// Loop device: bytes written (sectors × 512), write and flush requests, from the synced
    /// state before the daemon started to the synced state after it exited.
    pub device_write_bytes: u64,
    pub device_write_ios: u64,
    pub device_flushes: u64,
    /// `/proc/<pid>/io` `write_bytes` of the daemon at exit.
    pub daemon_write_bytes: Option<u64>,
    /// CPU time of the daemon over the measured part (start to exit), all threads.
    pub daemon_cpu_ms: Option<f64>,
    /// `config.db` + `config.db-wal`, before the daemon started and after it exited.
    pub db_bytes_before: u64,
    pub db_bytes_after: u64,
    /// SQLite transactions committed during the workload (lwcfs stats).
    pub transactions: Option<u64>,
    pub exit: Option<Exit>,
}

/// The figures of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Figures {
    /// Every measured node (the join: node 3 only).
    pub nodes: Vec<NodeFigures>,
    pub logical_bytes: u64,
    pub steps: u64,
    pub workload_ms: f64,
    /// The write-latency workload.
    pub latency: Option<Latency>,
    /// The join: from node 3's start until it was synced with the others.
    pub sync_ms: Option<f64>,
    /// The join, lwcfs: until synced and `lwcfs flush` returned (the tree on its disk).
    pub flushed_ms: Option<f64>,
}

/// One run: its figures, and whether they count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub repeat: usize,
    pub valid: bool,
    pub invalid_reason: Option<String>,
    pub figures: Option<Figures>,
}

/// Runs `w` once against `spec` on a fresh rig.
pub fn run_once(
    spec: &DaemonSpec,
    w: &Workload,
    opts: &Options,
    repeat: usize,
    progress: &Progress,
) -> Result<RunRecord, Fatal> {
    progress.status("rig: namespaces, images, corosync");
    let mut rig = Rig::new(NODES.len(), &opts.rig).map_err(Fatal::Sandbox)?;
    rig.try_start_all_corosync().map_err(Fatal::Sandbox)?;
    let mut fig = Figures::default();
    let result = match w.kind {
        Kind::Join => measure_join(&mut rig, spec, w, opts, progress, &mut fig),
        _ => measure_steady(&mut rig, spec, w, opts, progress, &mut fig),
    };
    if let Some(dir) = &opts.logs {
        let tag = format!(
            "{}-{}-{repeat}",
            spec.label
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            w.name
        );
        let _ = std::fs::create_dir_all(dir);
        for i in NODES {
            let _ = std::fs::write(dir.join(format!("{tag}-node{i}.log")), rig.daemon_log(i));
        }
    }
    drop(rig);
    if interrupted() {
        return Err(Fatal::Interrupted);
    }
    let unclean = fig
        .nodes
        .iter()
        .find(|n| n.exit.as_ref().is_some_and(|e| *e != Exit::Clean));
    let (valid, invalid_reason) = match (result, unclean) {
        (Err(e), _) => (false, Some(e)),
        (Ok(()), Some(n)) => (
            false,
            Some(format!(
                "daemon of node {} did not exit cleanly after SIGTERM: {}",
                n.node,
                n.exit.as_ref().expect("found by its exit")
            )),
        ),
        (Ok(()), None) => (true, None),
    };
    let has_figures = !fig.nodes.is_empty();
    Ok(RunRecord {
        repeat,
        valid,
        invalid_reason,
        figures: has_figures.then_some(fig),
    })
}

/// Starts `spec` on node `i`; returns where its log stood before (C's sync is read from the
/// log written after it).
fn start(rig: &mut Rig, spec: &DaemonSpec, i: usize) -> Result<usize, String> {
    let offset = rig.daemon_log(i).len();
    let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
    rig.try_start_daemon_bin(i, &spec.binary, &args)?;
    Ok(offset)
}

/// Whether node `i` is synced with `members` members: lwcfs by its stats (and, if given, with
/// that checksum), C by its log since `offset`.
fn synced(
    rig: &Rig,
    spec: &DaemonSpec,
    i: usize,
    members: usize,
    offset: usize,
    checksum: Option<&str>,
) -> bool {
    if spec.stats {
        let Ok(s) = rig.try_stats(i) else {
            return false;
        };
        let c = &s["cluster"];
        c["quorate"] == true
            && c["mode"] == "Synced"
            && c["members"].as_array().is_some_and(|m| m.len() == members)
            && checksum.is_none_or(|want| s["checksum"] == want)
    } else {
        let log = rig.daemon_log(i);
        c_log_synced(log.get(offset..).unwrap_or_default(), members)
    }
}

/// Waits until every node of `nodes` is synced with all of them (lwcfs: also one checksum).
fn wait_synced(
    rig: &Rig,
    spec: &DaemonSpec,
    nodes: &[usize],
    offsets: &[usize],
) -> Result<(), String> {
    if spec.stats {
        return rig.try_converge(nodes, FORM_TIMEOUT).map(|_| ());
    }
    let ok = wait_until(FORM_TIMEOUT, || {
        nodes
            .iter()
            .zip(offsets)
            .all(|(&i, &o)| synced(rig, spec, i, nodes.len(), o, None))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("nodes {nodes:?} did not report a completed sync"))
    }
}

/// Waits until every node of `nodes` has applied what node 1 did: lwcfs by one checksum
/// everywhere, C by `probe` (made last) showing on every node's mount.
fn wait_replicated(
    rig: &Rig,
    spec: &DaemonSpec,
    nodes: &[usize],
    probe: Option<&str>,
) -> Result<(), String> {
    if spec.stats {
        return rig.try_converge(nodes, FORM_TIMEOUT).map(|_| ());
    }
    let Some(probe) = probe else {
        return Ok(());
    };
    if wait_until(FORM_TIMEOUT, || {
        nodes.iter().all(|&i| rig.p(i, probe).exists())
    }) {
        Ok(())
    } else {
        Err(format!("{probe} did not reach every node"))
    }
}

/// Runs a phase of `w` on node 1, as a process of its own inside node 1's namespaces.
fn run_phase(
    rig: &Rig,
    w: &Workload,
    opts: &Options,
    phase: &str,
    progress: &Progress,
) -> Result<Outcome, String> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut cmd = rig.sandbox(1).command(exe);
    cmd.args(["__cluster-workload", "--name", &w.name, "--phase", phase])
        .args(["--root", MOUNT_POINT, "--config"])
        .arg(serde_json::to_string(&opts.cluster).expect("serialisable"));
    let start = Instant::now();
    let tick = || {
        progress.status(&format!(
            "{phase} {}",
            progress.elapsed_of(start.elapsed(), Duration::ZERO)
        ));
        interrupted()
    };
    let out = output_with_timeout(cmd, Duration::from_secs(3600), &tick).map_err(|e| e.0)?;
    if !out.status.success() {
        return Err(format!(
            "workload {phase} on node 1 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("workload {phase} printed no result: {e}"))
}

fn transactions(rig: &Rig, spec: &DaemonSpec, i: usize) -> Option<u64> {
    if !spec.stats {
        return None;
    }
    rig.try_stats(i)
        .ok()
        .and_then(|v| find_counter(&v, "transactions"))
}

fn sleep_interruptible(d: Duration) -> Result<(), String> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if interrupted() {
            return Err("interrupted".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Stops the daemons of `nodes` one at a time, from the last (node 1, the leader, goes last):
/// each one's exit is awaited, and then the sync of the nodes left (a node must not be
/// stopped in the middle of a sync round: C pmxcfs may then hang in its teardown). How each
/// ended, in the order of `nodes`.
fn stop_in_turn(
    rig: &mut Rig,
    spec: &DaemonSpec,
    nodes: &[usize],
    opts: &Options,
) -> Result<Vec<Option<Stopped>>, String> {
    let mut stopped = vec![None; nodes.len()];
    for k in (0..nodes.len()).rev() {
        stopped[k] = rig.try_stop_daemon(nodes[k], opts.stop_timeout);
        let left = &nodes[..k];
        if !left.is_empty() {
            // C's log is read whole: its last membership line is the one after this stop.
            wait_synced(rig, spec, left, &vec![0; left.len()])
                .map_err(|e| format!("after node {} stopped: {e}", nodes[k]))?;
        }
    }
    Ok(stopped)
}

/// Stops the daemons of `nodes` in turn; every one must exit cleanly.
fn stop_clean(
    rig: &mut Rig,
    spec: &DaemonSpec,
    nodes: &[usize],
    opts: &Options,
    what: &str,
) -> Result<(), String> {
    for (i, s) in nodes.iter().zip(stop_in_turn(rig, spec, nodes, opts)?) {
        match s {
            Some(Stopped {
                exit: Exit::Clean, ..
            }) => {}
            Some(s) => {
                return Err(format!(
                    "{what} daemon of node {i} did not exit cleanly: {}",
                    s.exit
                ))
            }
            None => return Err(format!("{what} daemon of node {i} was not running")),
        }
    }
    Ok(())
}

/// The figures of node `i` once its daemon has stopped.
fn node_figures(
    rig: &Rig,
    i: usize,
    before: &DiskStat,
    db_before: u64,
    stopped: Option<Stopped>,
    transactions: Option<u64>,
) -> Result<NodeFigures, String> {
    let sb = rig.sandbox(i);
    let after = sb.sync_and_read().map_err(|e| e.0)?;
    let delta = after.since(before);
    Ok(NodeFigures {
        node: i,
        device_write_bytes: delta.write_bytes(),
        device_write_ios: delta.write_ios,
        device_flushes: delta.flush_ios,
        daemon_write_bytes: stopped
            .as_ref()
            .and_then(|s| s.io.as_ref())
            .map(|io| io.write_bytes),
        daemon_cpu_ms: stopped.as_ref().and_then(|s| s.cpu_ms),
        db_bytes_before: db_before,
        db_bytes_after: sb.db_bytes(),
        transactions,
        exit: Some(stopped.map_or(Exit::Status(-1), |s| s.exit)),
    })
}

/// Every workload but the join: the 3 nodes prepared, stopped, started again and measured.
fn measure_steady(
    rig: &mut Rig,
    spec: &DaemonSpec,
    w: &Workload,
    opts: &Options,
    progress: &Progress,
    fig: &mut Figures,
) -> Result<(), String> {
    let plan = super::plan(w, &opts.cluster);
    // 1. Preparation (not measured): the databases are created, and the tree written, by the
    // daemons under test.
    progress.status("prepare: start daemons");
    let mut offsets = Vec::new();
    for i in NODES {
        offsets.push(start(rig, spec, i)?);
    }
    wait_synced(rig, spec, &NODES, &offsets).map_err(|e| format!("preparation: {e}"))?;
    run_phase(rig, w, opts, "prepare", progress)?;
    wait_replicated(rig, spec, &NODES, plan.prepared_probe.as_deref())
        .map_err(|e| format!("preparation: {e}"))?;
    progress.status("prepare: stop daemons");
    stop_clean(rig, spec, &NODES, opts, "preparation")?;

    // 2. The zero point of every node.
    let mut before = Vec::new();
    let mut db_before = Vec::new();
    for i in NODES {
        before.push(rig.sandbox(i).sync_and_read().map_err(|e| e.0)?);
        db_before.push(rig.sandbox(i).db_bytes());
    }

    // 3. The measured part: start, sync, the workload on node 1, settle, stop.
    progress.status("start daemons");
    let mut offsets = Vec::new();
    for i in NODES {
        offsets.push(start(rig, spec, i)?);
    }
    wait_synced(rig, spec, &NODES, &offsets)?;
    let tx_start: Vec<Option<u64>> = NODES.iter().map(|&i| transactions(rig, spec, i)).collect();
    if !plan.run.is_empty() {
        let out = run_phase(rig, w, opts, "run", progress)?;
        fig.logical_bytes = out.logical_bytes;
        fig.steps = out.steps;
        fig.workload_ms = out.duration_ms;
        if w.kind == Kind::WriteLatency {
            fig.latency = Latency::of(&out.step_ms);
        }
    }
    progress.status("settle");
    sleep_interruptible(Duration::from_millis(opts.settle_ms))?;
    wait_replicated(rig, spec, &NODES, plan.prepared_probe.as_deref())?;
    let tx: Vec<Option<u64>> = NODES
        .iter()
        .zip(&tx_start)
        .map(|(&i, a)| Some(transactions(rig, spec, i)?.saturating_sub((*a)?)))
        .collect();
    progress.status("stop daemons");
    let stopped = stop_in_turn(rig, spec, &NODES, opts)?;
    for (k, s) in stopped.into_iter().enumerate() {
        let i = NODES[k];
        fig.nodes
            .push(node_figures(rig, i, &before[k], db_before[k], s, tx[k])?);
    }
    Ok(())
}

/// The join: nodes 1 and 2 hold the files; node 3 starts with an empty database.
fn measure_join(
    rig: &mut Rig,
    spec: &DaemonSpec,
    w: &Workload,
    opts: &Options,
    progress: &Progress,
    fig: &mut Figures,
) -> Result<(), String> {
    let plan = super::plan(w, &opts.cluster);
    let pair = [1, 2];
    progress.status("prepare: start nodes 1 and 2");
    let mut offsets = Vec::new();
    for i in pair {
        offsets.push(start(rig, spec, i)?);
    }
    wait_synced(rig, spec, &pair, &offsets).map_err(|e| format!("preparation: {e}"))?;
    run_phase(rig, w, opts, "prepare", progress)?;
    wait_replicated(rig, spec, &pair, plan.prepared_probe.as_deref())
        .map_err(|e| format!("preparation: {e}"))?;
    let checksum = if spec.stats {
        for i in pair {
            rig.try_flush(i)?;
        }
        Some(
            rig.try_stats(1)?["checksum"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    } else {
        None
    };

    // The zero point of node 3, then its start; the clock runs from the spawn. Both daemons
    // log when their database group is synced; the log is polled (cheap: no process to spawn,
    // no checksum of the whole tree to compute, which would load the machine during the
    // measurement), and for lwcfs the time is taken only once its stats confirm it: mode
    // Synced with 3 members and node 1's checksum.
    let before = rig.sandbox(3).sync_and_read().map_err(|e| e.0)?;
    let db_before = rig.sandbox(3).db_bytes();
    progress.status("node 3 joins");
    let t0 = Instant::now();
    let offset = start(rig, spec, 3)?;
    let mut sync_ms = 0.0;
    let ok = wait_until(FORM_TIMEOUT, || {
        let log = rig.daemon_log(3);
        let tail = log.get(offset..).unwrap_or_default();
        let seen = if spec.stats {
            tail.contains(LWCFS_SYNCED)
        } else {
            c_log_synced(tail, 3)
        };
        if !seen {
            return false;
        }
        sync_ms = t0.elapsed().as_secs_f64() * 1000.0;
        !spec.stats || synced(rig, spec, 3, 3, offset, checksum.as_deref())
    });
    if !ok {
        return Err(format!(
            "node 3 did not sync within {FORM_TIMEOUT:?}; its log:\n{}",
            rig.daemon_log(3)
        ));
    }
    fig.sync_ms = Some(sync_ms);
    if spec.stats {
        rig.try_flush(3)?;
        fig.flushed_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
    } else {
        // C: check the files through node 3's mount (lwcfs: the checksum did).
        progress.status("check node 3's files");
        for t in &plan.prepare {
            if let crate::plan::Step::Overwrite { path, content } = t {
                if !path.starts_with("bench/join/") {
                    continue;
                }
                let len = std::fs::metadata(rig.p(3, path)).map(|m| m.len()).ok();
                if len != Some(content.len_hint() as u64) {
                    return Err(format!("node 3 has {path} as {len:?} bytes after its sync"));
                }
            }
        }
    }
    fig.steps = w.ops;
    fig.workload_ms = sync_ms;
    progress.status("stop node 3");
    let stopped = rig.try_stop_daemon(3, opts.stop_timeout);
    fig.nodes
        .push(node_figures(rig, 3, &before, db_before, stopped, None)?);
    Ok(())
}
