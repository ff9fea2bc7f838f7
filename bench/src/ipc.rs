//! `lwcfs-bench ipc`: round-trip latency of the `pve2` IPC service (issue 5), measured with the
//! repository's libqb client (`crate::ipcc`, Debian's libqb) against a daemon in
//! the usual sandbox.
//!
//! Per daemon: one sandbox, the daemon started with `-f -l`, a 1 KiB file written through the
//! mount, then for each operation (GET_FS_VERSION, GET_CONFIG of the 1 KiB file) and each
//! client count (1, 8): every client connects from a thread inside the daemon's network
//! namespace, makes `warmup` calls, then `calls` timed calls back to back. The figures are the
//! median and the 99th percentile of all timed calls, and the calls per second of all clients
//! together over the timed part.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::ipcc::{request, Client};

use crate::runner::interrupted;
use crate::sandbox::{self, Daemon, Sandbox, MOUNT_POINT};

/// The 1 KiB file GET_CONFIG reads.
pub const CONFIG_FILE: &str = "ipc-bench-1k.cfg";

/// One measured case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    FsVersion,
    Config1k,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::FsVersion => "GET_FS_VERSION",
            Op::Config1k => "GET_CONFIG 1 KiB",
        }
    }

    fn request(self) -> Vec<u8> {
        match self {
            Op::FsVersion => request(1, b""),
            Op::Config1k => {
                let mut p = CONFIG_FILE.as_bytes().to_vec();
                p.push(0);
                request(6, &p)
            }
        }
    }
}

pub struct Options {
    pub sandbox: sandbox::Config,
    pub calls: usize,
    pub warmup: usize,
    pub clients: Vec<usize>,
}

/// The figures of one (daemon, op, clients) case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Case {
    pub daemon: String,
    pub op: &'static str,
    pub clients: usize,
    pub calls: usize,
    pub median_us: f64,
    pub p99_us: f64,
    pub calls_per_s: f64,
    /// The daemon's CPU time (user + system, all threads) per timed call: what a call costs
    /// the server, whatever else the machine runs.
    pub server_cpu_us: f64,
}

/// The `q`-quantile (0..=1) of sorted samples, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The 1 KiB content: a storage.cfg-like text.
pub fn config_1k() -> Vec<u8> {
    let mut s = Vec::with_capacity(1024);
    let mut i = 0;
    while s.len() < 1024 {
        s.extend_from_slice(
            format!("dir: store{i}\n\tpath /var/lib/vz{i}\n\tcontent iso,backup\n\n").as_bytes(),
        );
        i += 1;
    }
    s.truncate(1024);
    s
}

/// User + system CPU time of a process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn ticks_per_s() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

fn listening(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/net/unix"))
        .map(|t| t.lines().any(|l| l.contains(" @pve2")))
        .unwrap_or(false)
}

/// `n` clients, each `warmup` + `calls` calls of `op`, from threads in the net namespace of
/// `pid`. Returns every timed latency (ns), the wall time of the timed part and the daemon's
/// CPU ticks during it.
fn measure(
    pid: i32,
    op: Op,
    n: usize,
    warmup: usize,
    calls: usize,
) -> Result<(Vec<u64>, Duration, u64), String> {
    let msg = op.request();
    let ns_path = format!("/proc/{pid}/ns/net");
    let barrier = Barrier::new(n + 1);
    let (samples, wall, ticks) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (msg, ns_path, barrier) = (&msg, &ns_path, &barrier);
                s.spawn(move || -> Result<Vec<u64>, String> {
                    let ns = fs::File::open(ns_path).map_err(|e| format!("{ns_path}: {e}"));
                    let joined = ns.and_then(|ns| {
                        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(|e| format!("setns: {e}"))
                    });
                    let client = joined.and_then(|()| {
                        Client::connect("pve2").map_err(|e| format!("connect @pve2: {e}"))
                    });
                    let mut c = match client {
                        Ok(c) => c,
                        Err(e) => {
                            barrier.wait();
                            barrier.wait();
                            return Err(e);
                        }
                    };
                    let check = |c: &mut Client| match c.call_raw(msg) {
                        Ok(r) if r.error == 0 => Ok(()),
                        Ok(r) => Err(format!("{} answered error {}", op.name(), r.error)),
                        Err(e) => Err(format!("{}: {e}", op.name())),
                    };
                    for _ in 0..warmup {
                        check(&mut c)?;
                    }
                    barrier.wait();
                    let mut lat = Vec::with_capacity(calls);
                    for _ in 0..calls {
                        let t = Instant::now();
                        check(&mut c)?;
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    barrier.wait();
                    Ok(lat)
                })
            })
            .collect();
        barrier.wait();
        let (start, cpu0) = (Instant::now(), cpu_ticks(pid));
        barrier.wait();
        let (wall, ticks) = (start.elapsed(), cpu_ticks(pid).saturating_sub(cpu0));
        let samples: Result<Vec<Vec<u64>>, String> = handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect();
        (samples, wall, ticks)
    });
    Ok((samples?.concat(), wall, ticks))
}

/// Run every case against one daemon binary.
pub fn run_daemon(binary: &Path, label: &str, opts: &Options) -> Result<Vec<Case>, String> {
    let sb = Sandbox::create(&opts.sandbox, "ipc").map_err(|e| e.0)?;
    let d = Daemon::start(
        &sb,
        binary,
        &["-f".into(), "-l".into()],
        sb.scratch().join("ipc.log"),
    )
    .map_err(|e| e.0)?;
    d.wait_mounted(Duration::from_secs(30), &interrupted)
        .map_err(|e| e.0)?;
    let file = sb.inside(&format!("{MOUNT_POINT}/{CONFIG_FILE}"));
    fs::write(&file, config_1k()).map_err(|e| format!("{}: {e}", file.display()))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !listening(d.pid()) {
        if Instant::now() > deadline {
            return Err(format!("{label}: no @pve2 socket:\n{}", d.log_tail()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cases = Vec::new();
    for op in [Op::FsVersion, Op::Config1k] {
        for &n in &opts.clients {
            let (mut lat, wall, ticks) = measure(d.pid(), op, n, opts.warmup, opts.calls)?;
            lat.sort_unstable();
            let cpu_us = ticks as f64 / ticks_per_s() * 1e6;
            cases.push(Case {
                daemon: label.to_owned(),
                op: op.name(),
                clients: n,
                calls: lat.len(),
                median_us: quantile(&lat, 0.5) as f64 / 1000.0,
                p99_us: quantile(&lat, 0.99) as f64 / 1000.0,
                calls_per_s: lat.len() as f64 / wall.as_secs_f64().max(1e-9),
                server_cpu_us: cpu_us / lat.len().max(1) as f64,
            });
        }
    }
    let stopped = d.stop(Duration::from_secs(10));
    if stopped.exit != sandbox::Exit::Clean {
        return Err(format!("{label} did not stop cleanly: {}", stopped.exit));
    }
    Ok(cases)
}

/// Cases of repeated runs merged: per (daemon, op, clients) the median of the runs' medians,
/// p99s and rates (runs of different daemons are interleaved, so slow phases of a shared
/// machine hit both).
pub fn merge_runs(runs: &[Case]) -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    for c in runs {
        if out
            .iter()
            .any(|o| o.daemon == c.daemon && o.op == c.op && o.clients == c.clients)
        {
            continue;
        }
        let same: Vec<&Case> = runs
            .iter()
            .filter(|o| o.daemon == c.daemon && o.op == c.op && o.clients == c.clients)
            .collect();
        let med = |f: &dyn Fn(&Case) -> f64| {
            let mut v: Vec<f64> = same.iter().map(|c| f(c)).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        out.push(Case {
            daemon: c.daemon.clone(),
            op: c.op,
            clients: c.clients,
            calls: same.iter().map(|c| c.calls).sum(),
            median_us: med(&|c| c.median_us),
            p99_us: med(&|c| c.p99_us),
            calls_per_s: med(&|c| c.calls_per_s),
            server_cpu_us: med(&|c| c.server_cpu_us),
        });
    }
    out
}

/// A Markdown table of the cases, one row per (op, clients), one column group per daemon.
pub fn table(cases: &[Case]) -> String {
    let mut daemons: Vec<&str> = Vec::new();
    for c in cases {
        if !daemons.contains(&c.daemon.as_str()) {
            daemons.push(&c.daemon);
        }
    }
    let mut out = String::from("| operation | clients |");
    for d in &daemons {
        out.push_str(&format!(
            " {d} median µs | {d} p99 µs | {d} calls/s | {d} server CPU µs/call |"
        ));
    }
    out.push_str("\n|---|---:|");
    for _ in &daemons {
        out.push_str("---:|---:|---:|---:|");
    }
    out.push('\n');
    let mut keys: Vec<(&str, usize)> = Vec::new();
    for c in cases {
        if !keys.contains(&(c.op, c.clients)) {
            keys.push((c.op, c.clients));
        }
    }
    for (op, n) in keys {
        out.push_str(&format!("| {op} | {n} |"));
        for d in &daemons {
            match cases
                .iter()
                .find(|c| c.daemon == *d && c.op == op && c.clients == n)
            {
                Some(c) => out.push_str(&format!(
                    " {:.1} | {:.1} | {:.0} | {:.1} |",
                    c.median_us, c.p99_us, c.calls_per_s, c.server_cpu_us
                )),
                None => out.push_str(" – | – | – | – |"),
            }
        }
        out.push('\n');
    }
    out
}

/// The daemons to run: (binary, label).
pub fn daemons(
    binary: PathBuf,
    label: String,
    vs: Option<(PathBuf, String)>,
) -> Vec<(PathBuf, String)> {
    let mut v = vec![(binary, label)];
    v.extend(vs);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn repeated_runs_give_medians() {
        let case = |m: f64| Case {
            daemon: "d".into(),
            op: "GET_FS_VERSION",
            clients: 1,
            calls: 10,
            median_us: m,
            p99_us: m,
            calls_per_s: m,
            server_cpu_us: m,
        };
        let merged = merge_runs(&[case(3.0), case(1.0), case(2.0)]);
        assert_eq!(merged.len(), 1);
        assert_eq!((merged[0].median_us, merged[0].calls), (2.0, 30));
    }

    #[test]
    fn the_config_is_1_kib() {
        assert_eq!(config_1k().len(), 1024);
    }

    #[test]
    fn table_puts_daemons_side_by_side() {
        let case = |d: &str, op, n, m| Case {
            daemon: d.into(),
            op,
            clients: n,
            calls: 10,
            median_us: m,
            p99_us: m * 2.0,
            calls_per_s: 1000.0,
            server_cpu_us: 3.0,
        };
        let t = table(&[
            case("lwcfs", "GET_FS_VERSION", 1, 10.0),
            case("pmxcfs", "GET_FS_VERSION", 1, 20.0),
        ]);
        assert!(
            t.contains(
                "| GET_FS_VERSION | 1 | 10.0 | 20.0 | 1000 | 3.0 | 20.0 | 40.0 | 1000 | 3.0 |"
            ),
            "{t}"
        );
    }
}
