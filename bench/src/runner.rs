//! Runs workloads against daemons in sandboxes and collects the figures of every run.

use crate::diskstat::DiskStat;
use crate::exec::Outcome;
use crate::plan::{Plan, RunPart};
use crate::progress::Progress;
use crate::sandbox::{self, output_with_timeout, Daemon, Exit, Sandbox, MOUNT_POINT};
use crate::workloads::{self, Workload};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM/SIGHUP; every wait loop checks it and unwinds, so the guards clean up.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// A daemon to measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonSpec {
    pub label: String,
    pub binary: PathBuf,
    pub args: Vec<String>,
    /// Query `<binary> stats --json` for commit counters (lwcfs).
    pub stats: bool,
}

/// How runs are made.
#[derive(Debug, Clone)]
pub struct Options {
    pub workload: workloads::Config,
    pub sandbox: sandbox::Config,
    pub settle_ms: u64,
    pub stop_timeout: Duration,
    pub mount_timeout: Duration,
    /// Keep the daemon logs of every run here.
    pub logs: Option<PathBuf>,
}

/// The figures of one measured run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Loop device: bytes written (sectors × 512), write requests, flush requests, between the
    /// synced state before the daemon started and the synced state after it exited.
    pub device_write_bytes: u64,
    pub device_write_ios: u64,
    pub device_flushes: u64,
    /// `/proc/<pid>/io` of the daemon at exit.
    pub daemon_write_bytes: Option<u64>,
    pub daemon_wchar: Option<u64>,
    pub daemon_syscw: Option<u64>,
    pub daemon_cancelled_write_bytes: Option<u64>,
    /// Bytes the loop device took when the bench itself checkpointed a WAL that the daemon
    /// left behind at exit (`PRAGMA wal_checkpoint(TRUNCATE)`, then close): writes the daemon
    /// deferred to whoever opens the database next. 0 when no WAL was left.
    pub checkpoint_debt_bytes: Option<u64>,
    /// config.db + config.db-wal, before the daemon started and after it exited.
    pub db_bytes_before: u64,
    pub db_bytes_after: u64,
    /// Transactions committed during the workload, from `stats --json` (lwcfs only).
    pub transactions: Option<u64>,
    pub stats_start: Option<serde_json::Value>,
    pub stats_end: Option<serde_json::Value>,
    pub logical_bytes: u64,
    pub steps: u64,
    pub tolerated_failures: u64,
    pub workload_ms: f64,
    pub stop_ms: f64,
    pub cycles: u64,
    pub mismatches: u64,
    pub cycles_per_s: Option<f64>,
    pub exit: Option<Exit>,
}

impl Figures {
    pub fn db_delta(&self) -> i64 {
        self.db_bytes_after as i64 - self.db_bytes_before as i64
    }
}

/// One run: its figures, and whether they count.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub repeat: usize,
    pub valid: bool,
    pub invalid_reason: Option<String>,
    pub figures: Option<Figures>,
}

/// An error that ends the whole bench (not just one run).
#[derive(Debug)]
pub enum Fatal {
    Interrupted,
    Sandbox(String),
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::Interrupted => f.write_str("interrupted"),
            Fatal::Sandbox(e) => write!(f, "cannot build the sandbox: {e}"),
        }
    }
}

fn workload_command(
    sb: &Sandbox,
    w: &Workload,
    opts: &Options,
    phase: &str,
) -> std::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut cmd = sb.command(exe);
    let c = &opts.workload;
    cmd.args([
        "__workload",
        "--name",
        &w.name,
        "--phase",
        phase,
        "--root",
        MOUNT_POINT,
    ]);
    cmd.args([
        "--seed",
        &c.seed.to_string(),
        "--pace-ms",
        &c.pace_ms.to_string(),
    ]);
    if let Some(n) = c.burst_ops {
        cmd.args(["--burst-ops", &n.to_string()]);
    }
    if let Some(n) = c.paced_ops {
        cmd.args(["--paced-ops", &n.to_string()]);
    }
    cmd
}

fn run_workload(
    sb: &Sandbox,
    w: &Workload,
    opts: &Options,
    phase: &str,
    progress: &Progress,
    expected: Duration,
) -> Result<Outcome, String> {
    let start = Instant::now();
    let tick = || {
        progress.status(&format!(
            "{phase} {}",
            progress.elapsed_of(start.elapsed(), expected)
        ));
        interrupted()
    };
    let out = output_with_timeout(
        workload_command(sb, w, opts, phase),
        Duration::from_secs(3600),
        &tick,
    )
    .map_err(|e| e.0)?;
    if !out.status.success() {
        return Err(format!(
            "workload {phase} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("workload {phase} printed no result: {e}"))
}

fn query_stats(sb: &Sandbox, spec: &DaemonSpec) -> Option<serde_json::Value> {
    let mut cmd = sb.command(&spec.binary);
    cmd.args(["stats", "--json"]);
    let out = output_with_timeout(cmd, Duration::from_secs(10), &interrupted).ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The first number under a key named `key`, searched depth-first.
pub fn find_counter(v: &serde_json::Value, key: &str) -> Option<u64> {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(n) = m.get(key).and_then(|x| x.as_u64()) {
                return Some(n);
            }
            m.values().find_map(|x| find_counter(x, key))
        }
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_counter(x, key)),
        _ => None,
    }
}

/// Checkpoints a WAL the daemon left behind and returns what that wrote to the device.
fn checkpoint_debt(sb: &Sandbox, after: &DiskStat) -> Result<u64, String> {
    let wal = sb.inside(&format!("{}/config.db-wal", sandbox::DB_DIR));
    if std::fs::metadata(&wal)
        .map(|m| m.len() == 0)
        .unwrap_or(true)
    {
        return Ok(0);
    }
    // Opened from inside the sandbox: SQLite resolves the `/proc/PID/root` link of an
    // `inside` path to the host's own file.
    let db = format!("{}/config.db", sandbox::DB_DIR);
    sb.in_mount_ns(|| -> Result<(), String> {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
                .map_err(|e| format!("open {db}: {e}"))?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| format!("checkpoint: {e}"))?;
        conn.close().map_err(|(_, e)| format!("close: {e}"))
    })
    .map_err(|e| e.0)??;
    let now = sb.sync_and_read().map_err(|e| e.0)?;
    Ok(now.since(after).write_bytes())
}

fn sleep_interruptible(d: Duration) -> Result<(), Fatal> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if interrupted() {
            return Err(Fatal::Interrupted);
        }
        std::thread::sleep(
            Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())),
        );
    }
    Ok(())
}

/// The expected wall time of a plan's run, for the progress line.
fn expected_duration(plan: &Plan) -> Duration {
    let last = plan.steps().last().map(|t| t.at_ms).unwrap_or(0);
    Duration::from_millis(plan.min_duration_ms.max(last))
}

/// Runs `w` once against `spec` in a fresh sandbox.
pub fn run_once(
    spec: &DaemonSpec,
    w: &Workload,
    opts: &Options,
    repeat: usize,
    progress: &Progress,
) -> Result<RunRecord, Fatal> {
    let tag = format!(
        "{}-{}-{repeat}",
        spec.label
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        w.name
    );
    progress.status("sandbox");
    let sb = Sandbox::create(&opts.sandbox, &tag).map_err(|e| Fatal::Sandbox(e.0))?;
    let mut figures = Figures::default();
    let result = measure(&sb, spec, w, opts, progress, &mut figures);
    if let Some(dir) = &opts.logs {
        for phase in ["prepare", "run"] {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::copy(
                sb.scratch().join(format!("{phase}.log")),
                dir.join(format!("{tag}-{phase}.log")),
            );
        }
    }
    if interrupted() {
        return Err(Fatal::Interrupted);
    }
    let (valid, invalid_reason) = match result {
        Ok(()) => match &figures.exit {
            Some(Exit::Clean) if figures.mismatches == 0 => (true, None),
            Some(Exit::Clean) => (
                false,
                Some(format!(
                    "{} reads returned wrong content",
                    figures.mismatches
                )),
            ),
            Some(other) => (
                false,
                Some(format!(
                    "daemon did not exit cleanly after SIGTERM: {other}"
                )),
            ),
            None => (false, Some("daemon exit not observed".into())),
        },
        Err(e) => (false, Some(e)),
    };
    let has_figures = figures.exit.is_some();
    Ok(RunRecord {
        repeat,
        valid,
        invalid_reason,
        figures: has_figures.then_some(figures),
    })
}

fn measure(
    sb: &Sandbox,
    spec: &DaemonSpec,
    w: &Workload,
    opts: &Options,
    progress: &Progress,
    fig: &mut Figures,
) -> Result<(), String> {
    let plan = workloads::plan(w, &opts.workload);
    // 1. Preparation (not measured): create the database, the seed tree and what the
    // workload needs, with the same daemon.
    progress.status("prepare: start daemon");
    let d = Daemon::start(
        sb,
        &spec.binary,
        &spec.args,
        sb.scratch().join("prepare.log"),
    )
    .map_err(|e| e.0)?;
    d.wait_mounted(opts.mount_timeout, &interrupted)
        .map_err(|e| format!("preparation: {e}"))?;
    run_workload(sb, w, opts, "prepare", progress, Duration::ZERO)?;
    progress.status("prepare: stop daemon");
    let tail = d.log_tail();
    let stopped = d.stop(opts.stop_timeout);
    if stopped.exit != Exit::Clean {
        return Err(format!(
            "preparation daemon did not exit cleanly: {}\n{tail}",
            stopped.exit
        ));
    }
    let before: DiskStat = sb.sync_and_read().map_err(|e| e.0)?;
    fig.db_bytes_before = sb.db_bytes();

    // 2. The measured run.
    progress.status("start daemon");
    let d = Daemon::start(sb, &spec.binary, &spec.args, sb.scratch().join("run.log"))
        .map_err(|e| e.0)?;
    d.wait_mounted(opts.mount_timeout, &interrupted)
        .map_err(|e| e.0)?;
    if spec.stats {
        fig.stats_start = query_stats(sb, spec);
    }
    let outcome = match &plan.run {
        RunPart::Steps(_) | RunPart::Readers(_) => {
            run_workload(sb, w, opts, "run", progress, expected_duration(&plan))?
        }
    };
    fig.logical_bytes = outcome.logical_bytes;
    fig.steps = outcome.steps;
    fig.tolerated_failures = outcome.tolerated_failures;
    fig.workload_ms = outcome.duration_ms;
    fig.cycles = outcome.cycles;
    fig.mismatches = outcome.mismatches;
    fig.cycles_per_s = outcome.cycles_per_s;
    progress.status("settle");
    sleep_interruptible(Duration::from_millis(opts.settle_ms))
        .map_err(|_| "interrupted".to_string())?;
    if spec.stats {
        fig.stats_end = query_stats(sb, spec);
        let count = |v: &Option<serde_json::Value>| {
            v.as_ref().and_then(|v| find_counter(v, "transactions"))
        };
        fig.transactions = match (count(&fig.stats_start), count(&fig.stats_end)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
    }
    progress.status("stop daemon");
    let tail = d.log_tail();
    let stopped = d.stop(opts.stop_timeout);
    fig.stop_ms = stopped.stop_ms;
    if let Some(io) = stopped.io {
        fig.daemon_write_bytes = Some(io.write_bytes);
        fig.daemon_wchar = Some(io.wchar);
        fig.daemon_syscw = Some(io.syscw);
        fig.daemon_cancelled_write_bytes = Some(io.cancelled_write_bytes);
    }
    let after = sb.sync_and_read().map_err(|e| e.0)?;
    let delta = after.since(&before);
    fig.device_write_bytes = delta.write_bytes();
    fig.device_write_ios = delta.write_ios;
    fig.device_flushes = delta.flush_ios;
    fig.db_bytes_after = sb.db_bytes();
    fig.checkpoint_debt_bytes = Some(checkpoint_debt(sb, &after)?);
    if stopped.exit != Exit::Clean {
        let reason = format!(
            "daemon did not exit cleanly after SIGTERM: {}\n{tail}",
            stopped.exit
        );
        fig.exit = Some(stopped.exit);
        return Err(reason);
    }
    fig.exit = Some(stopped.exit);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_counters_at_any_depth() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"writer":{"commits":{"transactions":7,"rows":12}},"transactions_pending":1}"#,
        )
        .unwrap();
        assert_eq!(find_counter(&v, "transactions"), Some(7));
        assert_eq!(find_counter(&v, "rows"), Some(12));
        assert_eq!(find_counter(&v, "nope"), None);
        let flat: serde_json::Value = serde_json::from_str(r#"{"transactions": 3}"#).unwrap();
        assert_eq!(find_counter(&flat, "transactions"), Some(3));
    }
}
