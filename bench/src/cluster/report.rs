//! The cluster report: summaries over repeats, the tables (terminal and Markdown), the JSON
//! document (`tool` = `lwcfs-bench cluster`, read back by `--markdown`).

use super::run::RunRecord;
use super::{Config, Kind, Workload};
use crate::report::{layout, Machine};
use crate::runner::DaemonSpec;
use crate::summary::Summary;
use crate::units;
use serde::{Deserialize, Serialize};

/// The `tool` of a cluster report.
pub const TOOL: &str = "lwcfs-bench cluster";

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub format_version: u32,
    /// UTC, RFC 3339.
    pub date: String,
    /// False in the partial report written after each workload while a run goes on.
    pub complete: bool,
    pub machine: Machine,
    pub command: Vec<String>,
    pub config: RunConfig,
    pub daemons: Vec<DaemonSpec>,
    pub results: Vec<WorkloadResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub cluster: Config,
    pub nodes: usize,
    pub repeat: usize,
    pub settle_ms: u64,
    pub stop_timeout_s: u64,
    pub image_mib: u64,
    pub filesystem: String,
}

/// One workload against one daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadResult {
    pub workload: Workload,
    pub daemon: String,
    /// Bytes the workload hands to write(2), from the plan.
    pub logical_bytes: u64,
    pub runs: Vec<RunRecord>,
    pub summary: Option<Figures>,
}

/// One node's medians over the valid runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSummary {
    pub node: usize,
    pub device_write_bytes: Summary,
    pub device_flushes: Summary,
    pub daemon_write_bytes: Option<Summary>,
    pub daemon_cpu_ms: Option<Summary>,
    pub transactions: Option<Summary>,
    pub db_bytes_after: Summary,
    /// (median device bytes − the same node's median in `cluster-baseline`) / ops.
    pub marginal_bytes_per_op: Option<f64>,
}

/// Medians and spreads over the valid runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub valid_runs: usize,
    pub nodes: Vec<NodeSummary>,
    /// Over the runs' medians, p99s, means and maxima.
    pub latency_median_ms: Option<Summary>,
    pub latency_p99_ms: Option<Summary>,
    pub latency_mean_ms: Option<Summary>,
    pub latency_max_ms: Option<Summary>,
    pub sync_ms: Option<Summary>,
    pub flushed_ms: Option<Summary>,
    /// The join: node 3's median device bytes over its median database size after exit.
    pub ratio_to_db: Option<f64>,
    pub workload_ms: Summary,
}

fn opt_summary(values: impl Iterator<Item = Option<f64>>) -> Option<Summary> {
    let v: Option<Vec<f64>> = values.collect();
    v.and_then(|v| Summary::of(&v))
}

/// Summarises the valid runs (`None` if there is none).
pub fn summarise(runs: &[RunRecord]) -> Option<Figures> {
    let valid: Vec<&super::run::Figures> = runs
        .iter()
        .filter(|r| r.valid)
        .filter_map(|r| r.figures.as_ref())
        .collect();
    let first = valid.first()?;
    let mut nodes = Vec::new();
    for (k, n) in first.nodes.iter().enumerate() {
        let per: Vec<&super::run::NodeFigures> =
            valid.iter().filter_map(|f| f.nodes.get(k)).collect();
        let u = |f: fn(&super::run::NodeFigures) -> u64| {
            Summary::of_u64(&per.iter().map(|x| f(x)).collect::<Vec<_>>())
        };
        nodes.push(NodeSummary {
            node: n.node,
            device_write_bytes: u(|n| n.device_write_bytes)?,
            device_flushes: u(|n| n.device_flushes)?,
            daemon_write_bytes: opt_summary(
                per.iter().map(|n| n.daemon_write_bytes.map(|v| v as f64)),
            ),
            daemon_cpu_ms: opt_summary(per.iter().map(|n| n.daemon_cpu_ms)),
            transactions: opt_summary(per.iter().map(|n| n.transactions.map(|v| v as f64))),
            db_bytes_after: u(|n| n.db_bytes_after)?,
            marginal_bytes_per_op: None,
        });
    }
    let lat = |f: fn(&super::Latency) -> f64| {
        opt_summary(valid.iter().map(|x| x.latency.as_ref().map(f)))
    };
    let ratio_to_db = match (&first.sync_ms, nodes.first()) {
        (Some(_), Some(n)) if n.db_bytes_after.median > 0.0 => {
            Some(n.device_write_bytes.median / n.db_bytes_after.median)
        }
        _ => None,
    };
    Some(Figures {
        valid_runs: valid.len(),
        latency_median_ms: lat(|l| l.median_ms),
        latency_p99_ms: lat(|l| l.p99_ms),
        latency_mean_ms: lat(|l| l.mean_ms),
        latency_max_ms: lat(|l| l.max_ms),
        sync_ms: opt_summary(valid.iter().map(|x| x.sync_ms)),
        flushed_ms: opt_summary(valid.iter().map(|x| x.flushed_ms)),
        ratio_to_db,
        workload_ms: Summary::of(&valid.iter().map(|x| x.workload_ms).collect::<Vec<_>>())?,
        nodes,
    })
}

/// Fills each node's `marginal_bytes_per_op` from the same daemon's `cluster-baseline` (not
/// for the baseline itself, nor for the join, which measures a start).
pub fn fill_marginals(results: &mut [WorkloadResult]) {
    let baselines: Vec<(String, Vec<(usize, f64)>)> = results
        .iter()
        .filter(|r| r.workload.kind == Kind::Baseline)
        .filter_map(|r| {
            let s = r.summary.as_ref()?;
            Some((
                r.daemon.clone(),
                s.nodes
                    .iter()
                    .map(|n| (n.node, n.device_write_bytes.median))
                    .collect(),
            ))
        })
        .collect();
    for r in results
        .iter_mut()
        .filter(|r| !matches!(r.workload.kind, Kind::Baseline | Kind::Join))
    {
        let Some((_, base)) = baselines.iter().find(|(d, _)| *d == r.daemon) else {
            continue;
        };
        let ops = r.workload.ops.max(1) as f64;
        if let Some(s) = r.summary.as_mut() {
            for n in &mut s.nodes {
                if let Some((_, b)) = base.iter().find(|(node, _)| *node == n.node) {
                    n.marginal_bytes_per_op = Some((n.device_write_bytes.median - b) / ops);
                }
            }
        }
    }
}

/// A table: a header and rows of cells, the first column(s) text, the others figures.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Columns aligned left (the others right).
    pub left: usize,
}

impl Table {
    pub fn text(&self) -> String {
        let h: Vec<&str> = self.header.iter().map(String::as_str).collect();
        if self.left <= 1 {
            layout(&h, &self.rows)
        } else {
            crate::report::layout_aligned(&h, &self.rows, self.left)
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("| {} |\n|", self.header.join(" | "));
        for i in 0..self.header.len() {
            out.push_str(if i < self.left { "---|" } else { "---:|" });
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out
    }
}

fn signed_bytes(v: f64) -> String {
    if v < 0.0 {
        format!("-{}", units::bytes(-v))
    } else {
        units::bytes(v)
    }
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn spread(s: &Summary) -> String {
    match s.spread_pct {
        Some(p) if s.n > 1 => format!("±{p:.0}%"),
        Some(_) => String::new(),
        None => "±?".into(),
    }
}

fn cell(s: Option<&Summary>, f: fn(f64) -> String) -> String {
    s.map(|s| f(s.median)).unwrap_or_else(|| "-".into())
}

fn valid_cell(r: &WorkloadResult) -> String {
    format!(
        "{}/{}",
        r.summary.as_ref().map_or(0, |s| s.valid_runs),
        r.runs.len()
    )
}

/// Bytes on each node's disk, per workload, for one daemon.
pub fn bytes_table(report: &Report, daemon: &str) -> Table {
    let header = [
        "workload",
        "node",
        "device",
        "spread",
        "per op",
        "× db",
        "flushes",
        "daemon wb",
        "cpu",
        "txns",
        "db after",
        "valid",
    ];
    let mut rows = Vec::new();
    for r in report.results.iter().filter(|r| r.daemon == daemon) {
        let Some(s) = &r.summary else {
            let mut row = vec![r.workload.name.clone(), "-".into(), "INVALID".into()];
            row.extend(std::iter::repeat_n(String::new(), header.len() - 4));
            row.push(valid_cell(r));
            rows.push(row);
            continue;
        };
        for n in &s.nodes {
            rows.push(vec![
                r.workload.name.clone(),
                n.node.to_string(),
                units::bytes(n.device_write_bytes.median),
                spread(&n.device_write_bytes),
                n.marginal_bytes_per_op
                    .map(signed_bytes)
                    .unwrap_or_else(|| "-".into()),
                s.ratio_to_db
                    .map(units::ratio)
                    .unwrap_or_else(|| "-".into()),
                units::count(n.device_flushes.median),
                cell(n.daemon_write_bytes.as_ref(), units::bytes),
                cell(n.daemon_cpu_ms.as_ref(), ms),
                cell(n.transactions.as_ref(), units::count),
                units::bytes(n.db_bytes_after.median),
                valid_cell(r),
            ]);
        }
    }
    Table {
        header: header.iter().map(|h| h.to_string()).collect(),
        rows,
        left: 1,
    }
}

/// Latencies and join times, for one daemon (only workloads that have them).
pub fn times_table(report: &Report, daemon: &str) -> Table {
    let header = [
        "workload",
        "median",
        "p99",
        "mean",
        "max",
        "synced",
        "synced + on disk",
        "valid",
    ];
    let rows = report
        .results
        .iter()
        .filter(|r| r.daemon == daemon)
        .filter_map(|r| {
            let s = r.summary.as_ref()?;
            if s.latency_median_ms.is_none() && s.sync_ms.is_none() {
                return None;
            }
            Some(vec![
                r.workload.name.clone(),
                cell(s.latency_median_ms.as_ref(), ms),
                cell(s.latency_p99_ms.as_ref(), ms),
                cell(s.latency_mean_ms.as_ref(), ms),
                cell(s.latency_max_ms.as_ref(), ms),
                cell(s.sync_ms.as_ref(), ms),
                cell(s.flushed_ms.as_ref(), ms),
                valid_cell(r),
            ])
        })
        .collect();
    Table {
        header: header.iter().map(|h| h.to_string()).collect(),
        rows,
        left: 1,
    }
}

/// One figure a workload is judged by: its name, its median, how it is shown.
type Headline = (String, Option<f64>, fn(f64) -> String);

/// The figures a workload is judged by.
fn headline(r: &WorkloadResult) -> Vec<Headline> {
    let s = r.summary.as_ref();
    let m = |x: Option<&Summary>| x.map(|x| x.median);
    match r.workload.kind {
        Kind::WriteLatency => vec![
            (
                "median latency".into(),
                m(s.and_then(|s| s.latency_median_ms.as_ref())),
                ms,
            ),
            (
                "p99 latency".into(),
                m(s.and_then(|s| s.latency_p99_ms.as_ref())),
                ms,
            ),
        ],
        Kind::Join => vec![
            (
                "time to sync".into(),
                m(s.and_then(|s| s.sync_ms.as_ref())),
                ms,
            ),
            (
                "node 3 device".into(),
                m(s.and_then(|s| s.nodes.first())
                    .map(|n| &n.device_write_bytes)),
                units::bytes,
            ),
            (
                "× its database".into(),
                s.and_then(|s| s.ratio_to_db),
                units::ratio,
            ),
        ],
        Kind::Baseline | Kind::PveUpdate | Kind::LockChurn => (1..=3)
            .flat_map(|node| {
                let n = s.and_then(|s| s.nodes.iter().find(|n| n.node == node));
                let mut v: Vec<Headline> = vec![(
                    format!("node {node} device"),
                    m(n.map(|n| &n.device_write_bytes)),
                    units::bytes,
                )];
                if r.workload.kind != Kind::Baseline {
                    v.push((
                        format!("node {node} per op"),
                        n.and_then(|n| n.marginal_bytes_per_op),
                        signed_bytes,
                    ));
                }
                v
            })
            .collect(),
    }
}

/// The side-by-side table of two daemons: each workload's headline figures and `b / a`.
pub fn versus_table(report: &Report, a: &str, b: &str) -> Table {
    let mut rows = Vec::new();
    for ra in report.results.iter().filter(|r| r.daemon == a) {
        let Some(rb) = report
            .results
            .iter()
            .find(|r| r.daemon == b && r.workload.name == ra.workload.name)
        else {
            continue;
        };
        for ((name, x, f), (_, y, _)) in headline(ra).into_iter().zip(headline(rb)) {
            let show = |v: Option<f64>| v.map(f).unwrap_or_else(|| "-".into());
            let ratio = match (x, y) {
                (Some(x), Some(y)) if x != 0.0 => units::ratio(y / x),
                (Some(_), Some(y)) if y != 0.0 => "∞".into(),
                (Some(_), Some(_)) => "=".into(),
                _ => "-".into(),
            };
            rows.push(vec![
                ra.workload.name.clone(),
                name,
                show(x),
                show(y),
                ratio,
            ]);
        }
    }
    Table {
        header: vec![
            "workload".into(),
            "figure".into(),
            a.into(),
            b.into(),
            format!("{b} / {a}"),
        ],
        rows,
        left: 2,
    }
}

/// `binary -f args…`: how the rig starts the daemon.
fn command_line(d: &DaemonSpec) -> String {
    let args: String = d.args.iter().map(|a| format!(" {a}")).collect();
    format!("{} -f{args}", d.binary.display())
}

/// The whole terminal report.
pub fn render_text(report: &Report) -> String {
    let c = &report.config;
    let mut out = format!(
        "lwcfs-bench cluster {} — {} nodes, seed {}, {} repeat(s), ext4 on a {} MiB loop image per node; kernel {}, {} × {}\n",
        report.date,
        c.nodes,
        c.cluster.seed,
        c.repeat,
        c.image_mib,
        report.machine.kernel,
        report.machine.cpus,
        report.machine.cpu
    );
    out.push_str("device = bytes written to the node's loop device from start to synced exit (median); per op = (device − cluster-baseline) / ops\n");
    for d in &report.daemons {
        out.push_str(&format!("\n== {} ({})\n", d.label, command_line(d)));
        out.push_str(&bytes_table(report, &d.label).text());
        let t = times_table(report, &d.label);
        if !t.rows.is_empty() {
            out.push('\n');
            out.push_str(&t.text());
        }
    }
    if report.daemons.len() == 2 {
        let (a, b) = (&report.daemons[0].label, &report.daemons[1].label);
        out.push_str(&format!("\n== side by side ({b} / {a})\n"));
        out.push_str(&versus_table(report, a, b).text());
    }
    for r in &report.results {
        for run in r.runs.iter().filter(|x| !x.valid) {
            out.push_str(&format!(
                "\ninvalid: {} on {} run {}: {}\n",
                r.workload.name,
                r.daemon,
                run.repeat,
                run.invalid_reason.as_deref().unwrap_or("?")
            ));
        }
    }
    out
}

/// The Markdown tables of a saved report.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    for d in &report.daemons {
        out.push_str(&format!("\n#### {} (`{}`)\n\n", d.label, command_line(d)));
        out.push_str(&bytes_table(report, &d.label).markdown());
        let t = times_table(report, &d.label);
        if !t.rows.is_empty() {
            out.push('\n');
            out.push_str(&t.markdown());
        }
    }
    if report.daemons.len() == 2 {
        let (a, b) = (&report.daemons[0].label, &report.daemons[1].label);
        out.push_str("\n#### side by side\n\n");
        out.push_str(&versus_table(report, a, b).markdown());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::run::{Figures as RunFigures, NodeFigures};
    use super::super::{catalogue, Latency};
    use super::*;
    use crate::sandbox::Exit;

    fn run(devices: &[u64], valid: bool, latency: Option<f64>, sync: Option<f64>) -> RunRecord {
        RunRecord {
            repeat: 0,
            valid,
            invalid_reason: (!valid).then(|| "node 2 hung".into()),
            figures: Some(RunFigures {
                nodes: devices
                    .iter()
                    .enumerate()
                    .map(|(k, &d)| NodeFigures {
                        node: if devices.len() == 1 { 3 } else { k + 1 },
                        device_write_bytes: d,
                        db_bytes_after: 50_000,
                        exit: Some(Exit::Clean),
                        ..Default::default()
                    })
                    .collect(),
                latency: latency.and_then(|m| Latency::of(&[m, m, m * 3.0])),
                sync_ms: sync,
                ..Default::default()
            }),
        }
    }

    fn sample() -> Report {
        let cat = catalogue(&Config::default());
        let by = |k: Kind| cat.iter().find(|w| w.kind == k).unwrap().clone();
        let mut results = Vec::new();
        for (daemon, f) in [("lwcfs", 1u64), ("pmxcfs", 4)] {
            let mut push = |w: Workload, runs: Vec<RunRecord>| {
                results.push(WorkloadResult {
                    workload: w,
                    daemon: daemon.into(),
                    logical_bytes: 0,
                    summary: summarise(&runs),
                    runs,
                })
            };
            push(
                by(Kind::Baseline),
                vec![run(&[10_000 * f, 20_000 * f, 20_000 * f], true, None, None)],
            );
            push(
                by(Kind::PveUpdate),
                vec![
                    run(&[30_000 * f, 40_000 * f, 40_000 * f], true, None, None),
                    run(&[1, 1, 1], false, None, None),
                ],
            );
            push(
                by(Kind::WriteLatency),
                vec![run(&[0, 0, 0], true, Some(0.5 * f as f64), None)],
            );
            push(
                by(Kind::Join),
                vec![run(&[60_000 * f], true, None, Some(2000.0 * f as f64))],
            );
        }
        fill_marginals(&mut results);
        Report {
            tool: TOOL.into(),
            format_version: 1,
            date: crate::report::rfc3339(0),
            complete: true,
            machine: Machine {
                kernel: "6.18".into(),
                cpu: "cpu".into(),
                cpus: 2,
                memory_kib: 1,
            },
            command: vec!["lwcfs-bench".into(), "cluster".into()],
            config: RunConfig {
                cluster: Config::default(),
                nodes: 3,
                repeat: 1,
                settle_ms: 1500,
                stop_timeout_s: 10,
                image_mib: 256,
                filesystem: "ext4".into(),
            },
            daemons: ["lwcfs", "pmxcfs"]
                .iter()
                .map(|l| DaemonSpec {
                    label: l.to_string(),
                    binary: "/x".into(),
                    args: vec![],
                    stats: false,
                })
                .collect(),
            results,
        }
    }

    #[test]
    fn per_op_is_over_the_same_nodes_baseline() {
        let r = sample();
        let upd = r.results[1].summary.as_ref().unwrap();
        assert_eq!(upd.valid_runs, 1);
        let per: Vec<Option<f64>> = upd.nodes.iter().map(|n| n.marginal_bytes_per_op).collect();
        assert_eq!(per, [Some(1000.0), Some(1000.0), Some(1000.0)]);
        assert!(r.results[0].summary.as_ref().unwrap().nodes[0]
            .marginal_bytes_per_op
            .is_none());
    }

    #[test]
    fn join_and_latency_figures() {
        let r = sample();
        let lat = r.results[2].summary.as_ref().unwrap();
        assert_eq!(lat.latency_median_ms.unwrap().median, 0.5);
        assert_eq!(lat.latency_p99_ms.unwrap().median, 1.5);
        let join = r.results[3].summary.as_ref().unwrap();
        assert_eq!(join.nodes[0].node, 3);
        assert_eq!(join.ratio_to_db, Some(60_000.0 / 50_000.0));
        assert_eq!(join.sync_ms.unwrap().median, 2000.0);
        assert!(join.nodes[0].marginal_bytes_per_op.is_none());
    }

    #[test]
    fn tables_and_markdown_round_trip_through_json() {
        let r = sample();
        let text = render_text(&r);
        assert!(text.contains("cluster-pve-update"), "{text}");
        assert!(text.contains("invalid: cluster-pve-update on lwcfs run 0"));
        let json = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        let md = render_markdown(&back);
        let row = md
            .lines()
            .find(|l| l.starts_with("| cluster-join | time to sync |"))
            .unwrap_or_else(|| panic!("{md}"));
        assert!(row.contains("| 2.00 s | 8.00 s | 4.00× |"), "{row}");
        let p99 = md
            .lines()
            .find(|l| l.starts_with("| cluster-write-latency | p99 latency |"))
            .unwrap();
        assert!(p99.contains("| 1.50 ms | 6.00 ms |"), "{p99}");
        assert!(md.contains("| cluster-pve-update | 2 | 40.0 KB |"), "{md}");
    }
}
