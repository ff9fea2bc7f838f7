//! `lwcfs-bench cluster`: the command line of the cluster workloads, the loop over workloads,
//! repeats and daemons, and the hidden `__cluster-workload` that runs a phase on node 1.

use clap::Args;
use lwcfs_bench::cluster::report::{self, Report, RunConfig, WorkloadResult, TOOL};
use lwcfs_bench::cluster::run::{self, Options, RunRecord};
use lwcfs_bench::cluster::{self, Config, Kind};
use lwcfs_bench::exec::{self, Outcome};
use lwcfs_bench::plan::Step;
use lwcfs_bench::progress::Progress;
use lwcfs_bench::report::Machine;
use lwcfs_bench::runner::{DaemonSpec, Fatal};
use lwcfs_bench::seed::Seed;
use lwcfs_bench::{rig, sandbox};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Runs the cluster workloads on a real 3-node Corosync cluster of the daemon under test (every
/// node the same binary, without -l), each node's database on its own loop-mounted ext4 image,
/// and prints bytes per node, latencies and join times. Needs root and corosync.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    daemons: crate::args::Daemons,
    #[command(flatten)]
    run: crate::args::RunArgs,
    /// Workloads: names or a prefix ending in `*`, repeatable or comma-separated. Default: all.
    #[arg(short, long = "workload", value_name = "NAME")]
    workloads: Vec<String>,
    /// Do not add `cluster-baseline`, which per-op figures are computed against.
    #[arg(long)]
    no_baseline: bool,
    /// Runs per workload and daemon; the report gives the median and the spread.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Tree node 1 writes before each workload: pve3 or empty.
    #[arg(long, default_value = "pve3")]
    seed: Seed,
    /// Interval between the paced updates of cluster-pve-update.
    #[arg(long, default_value_t = 1500)]
    pace_ms: u64,
    /// Timed writes of cluster-write-latency.
    #[arg(long, default_value_t = 1000)]
    latency_ops: u64,
    /// Updates of cluster-pve-update.
    #[arg(long, default_value_t = 20)]
    update_ops: u64,
    /// mkdir+rmdir pairs of cluster-lock-churn.
    #[arg(long, default_value_t = 100)]
    lock_ops: u64,
    /// Files nodes 1 and 2 hold when node 3 joins (cluster-join).
    #[arg(long, default_value_t = 10_000)]
    join_files: u64,
    /// Size of each of those files.
    #[arg(long, default_value_t = 5120)]
    join_file_size: usize,
}

impl ClusterArgs {
    fn config(&self) -> Config {
        Config {
            seed: self.seed,
            pace_ms: self.pace_ms,
            latency_ops: self.latency_ops,
            update_ops: self.update_ops,
            lock_ops: self.lock_ops,
            join_files: self.join_files,
            join_file_size: self.join_file_size,
            ..Config::default()
        }
    }
}

pub fn main(a: ClusterArgs) -> ExitCode {
    let cfg = a.config();
    if let Some(path) = &a.run.markdown {
        let rendered = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_slice::<Report>(&t).map_err(|e| e.to_string()));
        return match rendered {
            Ok(r) => {
                print!("{}", report::render_markdown(&r));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lwcfs-bench cluster: {}: {e}", path.display());
                ExitCode::from(2)
            }
        };
    }
    if a.run.list {
        let rows: Vec<Vec<String>> = cluster::catalogue(&cfg)
            .into_iter()
            .map(|w| vec![w.name, format!("{} {}", w.ops, w.unit), w.about])
            .collect();
        print!(
            "{}",
            lwcfs_bench::report::layout_aligned(&["workload", "ops", "what it models"], &rows, 3)
        );
        return ExitCode::SUCCESS;
    }
    match bench(&a, cfg) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lwcfs-bench cluster: {e}");
            ExitCode::from(2)
        }
    }
}

fn build_report(
    a: &ClusterArgs,
    cfg: &Config,
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
        tool: TOOL.into(),
        format_version: 1,
        date: lwcfs_bench::report::rfc3339(secs),
        complete,
        machine: Machine::probe(),
        command: std::env::args().collect(),
        config: RunConfig {
            cluster: cfg.clone(),
            nodes: 3,
            repeat: a.repeat,
            settle_ms,
            stop_timeout_s: a.run.stop_timeout,
            image_mib: a.run.image_mib,
            filesystem: "ext4 (mkfs.ext4 -E lazy_itable_init=0,lazy_journal_init=0) on a loop \
                         device, one per node"
                .into(),
        },
        daemons: daemons.to_vec(),
        results,
    }
}

fn bench(a: &ClusterArgs, cfg: Config) -> Result<ExitCode, String> {
    rig::check_tools()?;
    let selected = cluster::select(&cfg, &a.workloads, a.no_baseline)?;
    let lwcfs = crate::default_binary();
    let binary = a.daemons.binary.clone().or_else(|| lwcfs.clone()).ok_or(
        "no lwcfs next to this binary: build it (cargo build --release -p lwcfs) or pass --binary PATH",
    )?;
    let mut daemons = vec![crate::daemon_spec(
        binary,
        &[],
        &a.daemons.args,
        a.daemons.label.clone(),
        &a.run.stats,
    )?];
    if let Some(vs) = &a.daemons.vs {
        let mut spec = crate::daemon_spec(
            vs.clone(),
            &[],
            &a.daemons.vs_args,
            a.daemons.vs_label.clone(),
            &a.run.stats,
        )?;
        if spec.label == daemons[0].label {
            spec.label.push_str("-vs");
        }
        daemons.push(spec);
    }
    // The `lwcfs stats` client: the lwcfs under test, else the one next to this binary.
    let client = daemons
        .iter()
        .find(|d| d.stats)
        .map(|d| d.binary.clone())
        .or(lwcfs);
    if daemons.iter().any(|d| d.stats) && client.is_none() {
        return Err("no lwcfs binary to query stats with".into());
    }
    crate::install_signal_handlers();
    let settle_ms = a.run.settle_ms.unwrap_or(a.pace_ms);
    let opts = Options {
        cluster: cfg.clone(),
        rig: rig::Config {
            lwcfs: client.unwrap_or_else(|| PathBuf::from("lwcfs")),
            sandbox: sandbox::Config {
                scratch_parent: a.run.scratch.clone().unwrap_or_else(std::env::temp_dir),
                image_mib: a.run.image_mib,
            },
        },
        settle_ms,
        stop_timeout: Duration::from_secs(a.run.stop_timeout),
        logs: a.run.logs.clone(),
    };
    let started = std::time::SystemTime::now();
    let progress = Progress::new(selected.len() * a.repeat * daemons.len(), !a.run.quiet);
    let mut results: Vec<WorkloadResult> = Vec::new();
    for w in &selected {
        let logical = cluster::plan(w, &cfg).logical_bytes();
        let mut runs: Vec<Vec<RunRecord>> = vec![Vec::new(); daemons.len()];
        // Interleave the daemons run by run, so that drift of the machine hits both alike.
        for repeat in 0..a.repeat {
            for (i, d) in daemons.iter().enumerate() {
                progress.begin(format!(
                    "{} · {} · run {}/{}",
                    w.name,
                    d.label,
                    repeat + 1,
                    a.repeat
                ));
                match run::run_once(d, w, &opts, repeat, &progress) {
                    Ok(rec) => {
                        progress.end(if rec.valid { "ok" } else { "INVALID" });
                        if let (false, Some(reason)) = (rec.valid, &rec.invalid_reason) {
                            eprintln!("    {}", reason.lines().next().unwrap_or(""));
                        }
                        runs[i].push(rec);
                    }
                    Err(Fatal::Interrupted) => {
                        progress.end("interrupted");
                        return Err("interrupted; rigs removed".into());
                    }
                    Err(e) => {
                        progress.end("failed");
                        return Err(e.to_string());
                    }
                }
            }
        }
        for (d, runs) in daemons.iter().zip(runs) {
            results.push(WorkloadResult {
                workload: w.clone(),
                daemon: d.label.clone(),
                logical_bytes: logical,
                summary: report::summarise(&runs),
                runs,
            });
        }
        if let Some(path) = &a.run.json_out {
            let partial = build_report(
                a,
                &cfg,
                settle_ms,
                started,
                &daemons,
                results.clone(),
                false,
            );
            let _ = std::fs::write(
                path,
                serde_json::to_string_pretty(&partial).expect("serialisable"),
            );
        }
    }
    let rep = build_report(a, &cfg, settle_ms, started, &daemons, results, true);
    let json = serde_json::to_string_pretty(&rep).expect("serialisable");
    if let Some(path) = &a.run.json_out {
        std::fs::write(path, &json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if a.run.json {
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

/// `__cluster-workload`: one phase of a cluster workload, run on node 1 through `root`.
pub fn workload_main(name: &str, phase: &str, root: &Path, config: &str) -> ExitCode {
    let result = (|| -> Result<Outcome, String> {
        let cfg: Config = serde_json::from_str(config).map_err(|e| format!("--config: {e}"))?;
        let w = cluster::catalogue(&cfg)
            .into_iter()
            .find(|w| w.name == name)
            .ok_or_else(|| format!("unknown cluster workload {name}"))?;
        let plan = cluster::plan(&w, &cfg);
        match phase {
            "prepare" => prepare(root, &plan.prepare, w.kind).map(|()| Outcome::default()),
            "run" => exec::run(root, &plan.run, plan.min_duration_ms).map_err(|e| e.to_string()),
            other => Err(format!("unknown phase {other}")),
        }
    })();
    match result {
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

/// The preparation: directories in order, then the join's thousands of files by 4 writers at
/// once (every file is a cluster round trip; their order does not matter).
fn prepare(root: &Path, steps: &[Step], kind: Kind) -> Result<(), String> {
    let (dirs, files): (Vec<&Step>, Vec<&Step>) = steps
        .iter()
        .partition(|s| matches!(s, Step::MkdirAll(_) | Step::Mkdir(_)));
    let dirs: Vec<Step> = dirs.into_iter().cloned().collect();
    exec::prepare(root, &dirs).map_err(|e| e.to_string())?;
    let writers = if kind == Kind::Join { 4 } else { 1 };
    let chunk = files.len().div_ceil(writers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                let part: Vec<Step> = part.iter().map(|s| (*s).clone()).collect();
                s.spawn(move || exec::prepare(root, &part).map_err(|e| e.to_string()))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|_| Err("a writer panicked".into())))
    })
}
