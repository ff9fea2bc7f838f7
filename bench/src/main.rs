//! `lwcfs-bench`: see `bench/README.md`. The single-daemon workloads are here; the cluster
//! workloads (`lwcfs-bench cluster`) in `cluster_cmd.rs`.

mod args;
mod cluster_cmd;

use clap::{Args, Parser, Subcommand};
use lwcfs_bench::exec::{self, Outcome, ReaderOutcome};
use lwcfs_bench::plan::{Readers, RunPart};
use lwcfs_bench::progress::Progress;
use lwcfs_bench::report::{self, Machine, Report, RunConfig, WorkloadResult};
use lwcfs_bench::runner::{self, DaemonSpec, Fatal, Options};
use lwcfs_bench::seed::Seed;
use lwcfs_bench::{sandbox, workloads};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Measures what a pmxcfs-like daemon writes to disk, per workload, in a private sandbox.
///
/// Each run builds a fresh ext4 image on a loop device, starts the daemon in its own mount,
/// network and UTS namespaces with the database directory, /etc/pve, /run, /etc/hosts and
/// /etc/corosync bound per instance, prepares the seed tree, restarts the daemon, runs the
/// workload through its FUSE mount, stops it with SIGTERM and reads the loop device's counters
/// once the file system is synced. Needs root.
#[derive(Parser, Debug)]
#[command(name = "lwcfs-bench", version)]
struct Cli {
    #[command(subcommand)]
    internal: Option<Internal>,
    #[command(flatten)]
    bench: Bench,
}

#[derive(Args, Debug)]
struct Bench {
    #[command(flatten)]
    daemons: args::Daemons,
    #[command(flatten)]
    run: args::RunArgs,
    /// Workloads to run: names, family names (both burst and paced) or a prefix ending in `*`;
    /// repeatable or comma-separated. Default: all.
    #[arg(short, long = "workload", value_name = "NAME")]
    workloads: Vec<String>,
    /// Do not add the `baseline` workload that per-op figures are computed against.
    #[arg(long)]
    no_baseline: bool,
    /// Runs per workload and daemon; the report gives the median and the spread.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Tree in the database before each workload: pve3 (3-node cluster tree) or empty.
    #[arg(long, default_value = "pve3")]
    seed: Seed,
    /// Interval between the operations of paced workloads (longer than the commit delay).
    #[arg(long, default_value_t = 1500)]
    pace_ms: u64,
    /// Operation count of every burst workload (default: each family's own).
    #[arg(long)]
    burst_ops: Option<u64>,
    /// Operation count of every paced workload (default: each family's own).
    #[arg(long)]
    paced_ops: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum Internal {
    /// IPC round trips of the `pve2` service: GET_FS_VERSION and GET_CONFIG of a 1 KiB file,
    /// 1 and 8 clients, median and p99 (see bench/README.md).
    Ipc {
        /// Daemon under test (default: the workspace's lwcfs next to this binary).
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Name of the daemon in the table (default: the binary's file name).
        #[arg(long)]
        label: Option<String>,
        /// A second daemon, measured after the first and printed side by side.
        #[arg(long, value_name = "PATH")]
        vs: Option<PathBuf>,
        /// Name of the --vs daemon in the table.
        #[arg(long)]
        vs_label: Option<String>,
        /// Timed calls per client and case.
        #[arg(long, default_value_t = 20_000)]
        calls: usize,
        /// Untimed calls per client before the timed ones.
        #[arg(long, default_value_t = 2_000)]
        warmup: usize,
        /// Runs per daemon (interleaved); the table gives the median over the runs.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Client counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        clients: Vec<usize>,
        /// Where scratch directories and images go.
        #[arg(long, value_name = "DIR")]
        scratch: Option<PathBuf>,
        /// Also write the figures as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json_out: Option<PathBuf>,
    },
    /// The cluster workloads: a real 3-node Corosync cluster of the daemon under test, every
    /// node's database on its own loop device (see bench/README.md).
    Cluster(Box<cluster_cmd::ClusterArgs>),
    /// (internal) Runs one phase of a cluster workload on a node and prints its outcome.
    #[command(name = "__cluster-workload", hide = true)]
    ClusterWorkload {
        #[arg(long)]
        name: String,
        #[arg(long)]
        phase: String,
        #[arg(long)]
        root: PathBuf,
        /// The cluster workloads' configuration, as JSON.
        #[arg(long)]
        config: String,
    },
    /// (internal) Runs one phase of a workload inside the sandbox and prints its outcome.
    #[command(name = "__workload", hide = true)]
    Workload {
        #[arg(long)]
        name: String,
        #[arg(long)]
        phase: String,
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        seed: Seed,
        #[arg(long)]
        pace_ms: u64,
        #[arg(long)]
        burst_ops: Option<u64>,
        #[arg(long)]
        paced_ops: Option<u64>,
    },
    /// (internal) One reader process of the read-parallel workloads.
    #[command(name = "__reader", hide = true)]
    Reader {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        dir: String,
        #[arg(long)]
        files: usize,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        passes: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.internal {
        Some(Internal::Cluster(args)) => cluster_cmd::main(*args),
        Some(Internal::ClusterWorkload {
            name,
            phase,
            root,
            config,
        }) => cluster_cmd::workload_main(&name, &phase, &root, &config),
        Some(Internal::Workload {
            name,
            phase,
            root,
            seed,
            pace_ms,
            burst_ops,
            paced_ops,
        }) => {
            let cfg = workloads::Config {
                seed,
                pace_ms,
                burst_ops,
                paced_ops,
            };
            match workload_main(&cfg, &name, &phase, &root) {
                Ok(out) => {
                    println!("{}", serde_json::to_string(&out).expect("serialisable"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Internal::Reader {
            root,
            dir,
            files,
            size,
            passes,
        }) => {
            let spec = Readers {
                dir,
                files,
                file_size: size,
                readers: 1,
                passes,
            };
            reader_main(&root, &spec)
        }
        Some(Internal::Ipc {
            binary,
            label,
            vs,
            vs_label,
            calls,
            warmup,
            repeat,
            clients,
            scratch,
            json_out,
        }) => ipc_main(
            binary,
            label,
            vs,
            vs_label,
            (calls, warmup, repeat),
            clients,
            scratch,
            json_out,
        ),
        None => bench_main(cli.bench),
    }
}

#[allow(clippy::too_many_arguments)]
fn ipc_main(
    binary: Option<PathBuf>,
    label: Option<String>,
    vs: Option<PathBuf>,
    vs_label: Option<String>,
    (calls, warmup, repeat): (usize, usize, usize),
    clients: Vec<usize>,
    scratch: Option<PathBuf>,
    json_out: Option<PathBuf>,
) -> ExitCode {
    let resolve = |p: PathBuf, l: Option<String>| -> Result<(PathBuf, String), String> {
        let p = std::fs::canonicalize(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        Ok((p, l.unwrap_or(name)))
    };
    let Some(binary) = binary.or_else(default_binary) else {
        eprintln!("lwcfs-bench ipc: no daemon: build lwcfs or give --binary");
        return ExitCode::from(2);
    };
    let daemons = match resolve(binary, label).and_then(|(b, l)| {
        let vs = vs.map(|v| resolve(v, vs_label)).transpose()?;
        Ok(lwcfs_bench::ipc::daemons(b, l, vs))
    }) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("lwcfs-bench ipc: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = lwcfs_bench::ipc::Options {
        sandbox: sandbox::Config {
            scratch_parent: scratch.unwrap_or_else(std::env::temp_dir),
            image_mib: 64,
        },
        calls,
        warmup,
        clients,
    };
    let mut runs = Vec::new();
    for run in 1..=repeat.max(1) {
        for (bin, label) in &daemons {
            eprintln!(
                "lwcfs-bench ipc: run {run}/{repeat}: {label} ({})",
                bin.display()
            );
            match lwcfs_bench::ipc::run_daemon(bin, label, &opts) {
                Ok(c) => runs.extend(c),
                Err(e) => {
                    eprintln!("lwcfs-bench ipc: {label}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let cases = lwcfs_bench::ipc::merge_runs(&runs);
    print!("{}", lwcfs_bench::ipc::table(&cases));
    if let Some(path) = json_out {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "merged": cases,
            "runs": runs,
        }))
        .expect("serialisable");
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("lwcfs-bench ipc: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn workload_main(
    cfg: &workloads::Config,
    name: &str,
    phase: &str,
    root: &Path,
) -> Result<Outcome, String> {
    let w = workloads::find(cfg, name).ok_or_else(|| format!("unknown workload {name}"))?;
    let plan = workloads::plan(&w, cfg);
    match (phase, &plan.run) {
        ("prepare", _) => exec::prepare(root, &plan.prepare)
            .map(|()| Outcome::default())
            .map_err(|e| e.to_string()),
        ("run", RunPart::Steps(steps)) => {
            exec::run(root, steps, plan.min_duration_ms).map_err(|e| e.to_string())
        }
        ("run", RunPart::Readers(spec)) => run_readers(root, spec),
        (other, _) => Err(format!("unknown phase {other}")),
    }
}

/// Starts the reader processes, lets them all go at once, and rates the cycles over the wall
/// time from the start signal to the last reader's result.
fn run_readers(root: &Path, spec: &Readers) -> Result<Outcome, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    for _ in 0..spec.readers {
        let child = std::process::Command::new(&exe)
            .arg("__reader")
            .arg("--root")
            .arg(root)
            .args(["--dir", &spec.dir, "--files", &spec.files.to_string()])
            .args([
                "--size",
                &spec.file_size.to_string(),
                "--passes",
                &spec.passes.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a reader: {e}"))?;
        children.push(child);
    }
    let mut outs = Vec::new();
    for c in &mut children {
        let mut r = std::io::BufReader::new(c.stdout.take().expect("piped"));
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            return Err("a reader did not start".into());
        }
        outs.push(r);
    }
    let start = Instant::now();
    for c in &mut children {
        let mut stdin = c.stdin.take().expect("piped");
        stdin.write_all(b"go\n").map_err(|e| e.to_string())?;
    }
    let mut total = ReaderOutcome::default();
    for r in &mut outs {
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let o: ReaderOutcome =
            serde_json::from_str(&line).map_err(|e| format!("reader result: {e}"))?;
        total.cycles += o.cycles;
        total.mismatches += o.mismatches;
        total.errors += o.errors;
    }
    let secs = start.elapsed().as_secs_f64();
    for c in &mut children {
        let _ = c.wait();
    }
    Ok(Outcome {
        steps: total.cycles,
        cycles: total.cycles,
        mismatches: total.mismatches + total.errors,
        cycles_per_s: Some(total.cycles as f64 / secs),
        duration_ms: secs * 1000.0,
        ..Outcome::default()
    })
}

fn reader_main(root: &Path, spec: &Readers) -> ExitCode {
    // Build the expected contents before announcing readiness, so that start-up cost is not timed.
    let expected = exec::expected_contents(spec);
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut go = String::new();
    if std::io::stdin().read_line(&mut go).is_err() {
        return ExitCode::FAILURE;
    }
    let out = exec::read_passes(root, spec, &expected);
    println!("{}", serde_json::to_string(&out).expect("serialisable"));
    ExitCode::SUCCESS
}

pub(crate) extern "C" fn on_signal(_: libc::c_int) {
    runner::INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn install_signal_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

pub(crate) fn default_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("lwcfs");
    candidate.exists().then_some(candidate)
}

/// The daemon to run: `base` arguments (`-f -l` here; the cluster rig adds `-f` itself) then
/// the user's.
pub(crate) fn daemon_spec(
    binary: PathBuf,
    base: &[&str],
    extra: &[String],
    label: Option<String>,
    stats: &str,
) -> Result<DaemonSpec, String> {
    let binary =
        std::fs::canonicalize(&binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stats = match stats {
        "on" => true,
        "off" => false,
        "auto" => name.starts_with("lwcfs"),
        other => return Err(format!("--stats must be auto, on or off, not {other}")),
    };
    let mut args: Vec<String> = base.iter().map(|a| a.to_string()).collect();
    args.extend(extra.iter().cloned());
    Ok(DaemonSpec {
        label: label.unwrap_or(name),
        binary,
        args,
        stats,
    })
}

fn bench_main(b: Bench) -> ExitCode {
    let cfg = workloads::Config {
        seed: b.seed,
        pace_ms: b.pace_ms,
        burst_ops: b.burst_ops,
        paced_ops: b.paced_ops,
    };
    if let Some(path) = &b.run.markdown {
        let rendered = std::fs::read(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|t| {
                serde_json::from_slice(&t).map_err(|e| format!("{}: {e}", path.display()))
            })
            .and_then(|v: serde_json::Value| {
                if v["tool"] == lwcfs_bench::cluster::report::TOOL {
                    serde_json::from_value(v)
                        .map(|r| lwcfs_bench::cluster::report::render_markdown(&r))
                        .map_err(|e| format!("{}: {e}", path.display()))
                } else {
                    report::markdown_from_json(&v)
                }
            });
        return match rendered {
            Ok(md) => {
                print!("{md}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lwcfs-bench: {e}");
                ExitCode::from(2)
            }
        };
    }
    if b.run.list {
        let all = workloads::catalogue(&cfg);
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|w| {
                vec![
                    w.name.clone(),
                    format!("{:?}", w.mode).to_lowercase(),
                    format!("{} {}", w.ops, w.unit),
                    w.about.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            report::layout_aligned(&["workload", "mode", "ops", "what it models"], &rows, 4)
        );
        return ExitCode::SUCCESS;
    }
    match bench(b, cfg) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lwcfs-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn build_report(
    b: &Bench,
    settle_ms: u64,
    started: std::time::SystemTime,
    daemons: &[DaemonSpec],
    mut results: Vec<WorkloadResult>,
    complete: bool,
) -> Report {
    report::fill_marginals(&mut results);
    let secs = started
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Report {
        tool: "lwcfs-bench",
        format_version: 1,
        date: report::rfc3339(secs),
        complete,
        machine: Machine::probe(),
        command: std::env::args().collect(),
        config: RunConfig {
            seed: b.seed.to_string(),
            repeat: b.repeat,
            pace_ms: b.pace_ms,
            settle_ms,
            stop_timeout_s: b.run.stop_timeout,
            image_mib: b.run.image_mib,
            filesystem:
                "ext4 (mkfs.ext4 -E lazy_itable_init=0,lazy_journal_init=0) on a loop device",
        },
        daemons: daemons.to_vec(),
        results,
    }
}

fn bench(b: Bench, cfg: workloads::Config) -> Result<ExitCode, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (loop devices, mounts and namespaces)".into());
    }
    let mut selected = workloads::select(&cfg, &b.workloads)?;
    if !b.no_baseline && !selected.iter().any(|w| w.name == "baseline") {
        selected.insert(
            0,
            workloads::find(&cfg, "baseline").expect("baseline exists"),
        );
    }
    let binary = match b.daemons.binary.clone().or_else(default_binary) {
        Some(p) => p,
        None => {
            return Err("no lwcfs next to this binary: build it (cargo build --release -p lwcfs) or pass --binary PATH".into())
        }
    };
    let mut daemons = vec![daemon_spec(
        binary,
        &["-f", "-l"],
        &b.daemons.args,
        b.daemons.label.clone(),
        &b.run.stats,
    )?];
    if let Some(vs) = &b.daemons.vs {
        let mut spec = daemon_spec(
            vs.clone(),
            &["-f", "-l"],
            &b.daemons.vs_args,
            b.daemons.vs_label.clone(),
            &b.run.stats,
        )?;
        if spec.label == daemons[0].label {
            spec.label.push_str("-vs");
        }
        daemons.push(spec);
    }
    install_signal_handlers();
    let settle_ms = b.run.settle_ms.unwrap_or(b.pace_ms);
    let opts = Options {
        workload: cfg.clone(),
        sandbox: sandbox::Config {
            scratch_parent: b.run.scratch.clone().unwrap_or_else(std::env::temp_dir),
            image_mib: b.run.image_mib,
        },
        settle_ms,
        stop_timeout: Duration::from_secs(b.run.stop_timeout),
        mount_timeout: Duration::from_secs(30),
        logs: b.run.logs.clone(),
    };
    let started = std::time::SystemTime::now();
    let total = selected.len() * b.repeat * daemons.len();
    let progress = Progress::new(total, !b.run.quiet);
    let mut results: Vec<WorkloadResult> = Vec::new();
    for w in &selected {
        let plan = workloads::plan(w, &cfg);
        let mut runs: Vec<Vec<runner::RunRecord>> = vec![Vec::new(); daemons.len()];
        // Interleave the daemons run by run, so that drift of the machine hits both alike.
        for repeat in 0..b.repeat {
            for (i, d) in daemons.iter().enumerate() {
                progress.begin(format!(
                    "{} · {} · run {}/{}",
                    w.name,
                    d.label,
                    repeat + 1,
                    b.repeat
                ));
                match runner::run_once(d, w, &opts, repeat, &progress) {
                    Ok(rec) => {
                        progress.end(if rec.valid { "ok" } else { "INVALID" });
                        if let (false, Some(reason)) = (rec.valid, &rec.invalid_reason) {
                            eprintln!("    {}", reason.lines().next().unwrap_or(""));
                        }
                        runs[i].push(rec);
                    }
                    Err(Fatal::Interrupted) => {
                        progress.end("interrupted");
                        return Err("interrupted; sandboxes removed".into());
                    }
                    Err(e) => {
                        progress.end("failed");
                        return Err(e.to_string());
                    }
                }
            }
        }
        for (d, runs) in daemons.iter().zip(runs) {
            let logical = plan.logical_bytes();
            results.push(WorkloadResult {
                workload: w.clone(),
                daemon: d.label.clone(),
                logical_bytes: logical,
                page_floor_bytes: workloads::page_floor(&plan),
                summary: report::summarise(&runs, logical),
                runs,
            });
        }
        // Keep a partial report on disk, so that a long run that is cut short still leaves
        // its finished workloads.
        if let Some(path) = &b.run.json_out {
            let partial = build_report(&b, settle_ms, started, &daemons, results.clone(), false);
            let _ = std::fs::write(
                path,
                serde_json::to_string_pretty(&partial).expect("serialisable"),
            );
        }
    }
    let rep = build_report(&b, settle_ms, started, &daemons, results, true);
    let json = serde_json::to_string_pretty(&rep).expect("serialisable");
    if let Some(path) = &b.run.json_out {
        std::fs::write(path, &json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if b.run.json {
        println!("{json}");
    } else {
        print!("{}", report::render_text(&rep));
    }
    let all_valid = rep.results.iter().all(|r| r.runs.iter().all(|x| x.valid));
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
