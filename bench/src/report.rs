//! The report: summaries over repeats, the terminal table, and the JSON document.

use crate::runner::{DaemonSpec, RunRecord};
use crate::summary::Summary;
use crate::units;
use crate::workloads::Workload;
use serde::Serialize;

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
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

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub memory_kib: u64,
}

impl Machine {
    pub fn probe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Machine {
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            memory_kib,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub seed: String,
    pub repeat: usize,
    pub pace_ms: u64,
    pub settle_ms: u64,
    pub stop_timeout_s: u64,
    pub image_mib: u64,
    pub filesystem: &'static str,
}

/// One workload against one daemon.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadResult {
    pub workload: Workload,
    pub daemon: String,
    /// Bytes the workload hands to write(2), from the plan.
    pub logical_bytes: u64,
    /// See `workloads::page_floor`.
    pub page_floor_bytes: u64,
    pub runs: Vec<RunRecord>,
    pub summary: Option<Figures>,
}

/// Medians and spreads over the valid runs.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub valid_runs: usize,
    pub device_write_bytes: Summary,
    pub device_write_ios: Summary,
    pub device_flushes: Summary,
    pub daemon_write_bytes: Option<Summary>,
    pub daemon_syscw: Option<Summary>,
    pub db_delta_bytes: Summary,
    pub checkpoint_debt_bytes: Option<Summary>,
    pub transactions: Option<Summary>,
    pub workload_ms: Summary,
    pub cycles_per_s: Option<Summary>,
    /// Median device bytes over the logical bytes.
    pub ratio_to_logical: Option<f64>,
    /// (median device bytes − median device bytes of `baseline` for the same daemon) / ops.
    pub marginal_bytes_per_op: Option<f64>,
}

fn opt_summary(values: Vec<Option<u64>>) -> Option<Summary> {
    let v: Option<Vec<u64>> = values.into_iter().collect();
    v.and_then(|v| Summary::of_u64(&v))
}

/// Summarises the valid runs (`None` if there is none).
pub fn summarise(runs: &[RunRecord], logical_bytes: u64) -> Option<Figures> {
    let valid: Vec<&crate::runner::Figures> = runs
        .iter()
        .filter(|r| r.valid)
        .filter_map(|r| r.figures.as_ref())
        .collect();
    if valid.is_empty() {
        return None;
    }
    let u = |f: fn(&crate::runner::Figures) -> u64| {
        Summary::of_u64(&valid.iter().map(|x| f(x)).collect::<Vec<_>>())
    };
    let device = u(|f| f.device_write_bytes)?;
    let rates: Vec<f64> = valid.iter().filter_map(|f| f.cycles_per_s).collect();
    Some(Figures {
        valid_runs: valid.len(),
        device_write_bytes: device,
        device_write_ios: u(|f| f.device_write_ios)?,
        device_flushes: u(|f| f.device_flushes)?,
        daemon_write_bytes: opt_summary(valid.iter().map(|f| f.daemon_write_bytes).collect()),
        daemon_syscw: opt_summary(valid.iter().map(|f| f.daemon_syscw).collect()),
        db_delta_bytes: Summary::of(
            &valid
                .iter()
                .map(|f| f.db_delta() as f64)
                .collect::<Vec<_>>(),
        )?,
        transactions: opt_summary(valid.iter().map(|f| f.transactions).collect()),
        checkpoint_debt_bytes: opt_summary(valid.iter().map(|f| f.checkpoint_debt_bytes).collect()),
        workload_ms: Summary::of(&valid.iter().map(|f| f.workload_ms).collect::<Vec<_>>())?,
        cycles_per_s: if rates.len() == valid.len() {
            Summary::of(&rates)
        } else {
            None
        },
        ratio_to_logical: (logical_bytes > 0).then(|| device.median / logical_bytes as f64),
        marginal_bytes_per_op: None,
    })
}

/// Fills `marginal_bytes_per_op` from each daemon's `baseline` result.
pub fn fill_marginals(results: &mut [WorkloadResult]) {
    let baselines: Vec<(String, f64)> = results
        .iter()
        .filter(|r| r.workload.name == "baseline")
        .filter_map(|r| {
            r.summary
                .as_ref()
                .map(|s| (r.daemon.clone(), s.device_write_bytes.median))
        })
        .collect();
    for r in results.iter_mut().filter(|r| r.workload.name != "baseline") {
        let base = baselines
            .iter()
            .find(|(d, _)| *d == r.daemon)
            .map(|(_, b)| *b);
        let ops = r.workload.ops.max(1) as f64;
        if let (Some(s), Some(b)) = (r.summary.as_mut(), base) {
            s.marginal_bytes_per_op = Some((s.device_write_bytes.median - b) / ops);
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

fn cell(s: Option<&Summary>, fmt: fn(f64) -> String) -> String {
    s.map(|s| fmt(s.median)).unwrap_or_else(|| "-".into())
}

fn spread(s: &Summary) -> String {
    match s.spread_pct {
        Some(p) if s.n > 1 => format!("±{p:.0}%"),
        Some(_) => String::new(),
        None => "±?".into(),
    }
}

fn signed_bytes(v: f64) -> String {
    if v < 0.0 {
        format!("-{}", units::bytes(-v))
    } else {
        units::bytes(v)
    }
}

/// Lays out rows with columns padded; the first column left-aligned, the others right-aligned.
pub fn layout(header: &[&str], rows: &[Vec<String>]) -> String {
    layout_aligned(header, rows, 1)
}

/// Like [`layout`], with the first `left` columns left-aligned.
pub fn layout_aligned(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let n = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if i < left {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The per-daemon table.
pub fn daemon_table(report: &Report, daemon: &str) -> String {
    let header = [
        "workload",
        "device",
        "spread",
        "per op",
        "× logical",
        "daemon wb",
        "syscw",
        "flushes",
        "db Δ",
        "ckpt debt",
        "txns",
        "logical",
        "rate/s",
        "time",
        "valid",
    ];
    let mut rows = Vec::new();
    for r in report.results.iter().filter(|r| r.daemon == daemon) {
        let total = r.runs.len();
        let Some(s) = &r.summary else {
            let mut row = vec![r.workload.name.clone(), "INVALID".into()];
            row.extend(std::iter::repeat_n(String::new(), header.len() - 3));
            row.push(format!("0/{total}"));
            rows.push(row);
            continue;
        };
        rows.push(vec![
            r.workload.name.clone(),
            units::bytes(s.device_write_bytes.median),
            spread(&s.device_write_bytes),
            s.marginal_bytes_per_op
                .map(signed_bytes)
                .unwrap_or_else(|| "-".into()),
            s.ratio_to_logical
                .map(units::ratio)
                .unwrap_or_else(|| "-".into()),
            cell(s.daemon_write_bytes.as_ref(), units::bytes),
            cell(s.daemon_syscw.as_ref(), units::count),
            units::count(s.device_flushes.median),
            signed_bytes(s.db_delta_bytes.median),
            cell(s.checkpoint_debt_bytes.as_ref(), units::bytes),
            cell(s.transactions.as_ref(), units::count),
            if r.logical_bytes > 0 {
                units::bytes(r.logical_bytes as f64)
            } else {
                "-".into()
            },
            cell(s.cycles_per_s.as_ref(), units::count),
            units::secs(s.workload_ms.median),
            format!("{}/{total}", s.valid_runs),
        ]);
    }
    layout(&header, &rows)
}

/// The side-by-side table of two daemons: device bytes, per-op cost and read rate, and the
/// ratio of the second to the first.
pub fn versus_table(report: &Report, a: &str, b: &str) -> String {
    let ratio_hdr = format!("{b} / {a}");
    let (dev_a, dev_b) = (format!("{a} device"), format!("{b} device"));
    let (op_a, op_b) = (format!("{a} per op"), format!("{b} per op"));
    let (rate_a, rate_b) = (format!("{a} rate/s"), format!("{b} rate/s"));
    let header = [
        "workload", &dev_a, &dev_b, &ratio_hdr, &op_a, &op_b, &rate_a, &rate_b,
    ];
    let mut rows = Vec::new();
    for ra in report.results.iter().filter(|r| r.daemon == a) {
        let rb = report
            .results
            .iter()
            .find(|r| r.daemon == b && r.workload.name == ra.workload.name);
        let (sa, sb) = (ra.summary.as_ref(), rb.and_then(|r| r.summary.as_ref()));
        let dev = |s: Option<&Figures>| {
            s.map(|s| units::bytes(s.device_write_bytes.median))
                .unwrap_or_else(|| "INVALID".into())
        };
        let op = |s: Option<&Figures>| {
            s.and_then(|s| s.marginal_bytes_per_op)
                .map(signed_bytes)
                .unwrap_or_else(|| "-".into())
        };
        let rate =
            |s: Option<&Figures>| cell(s.and_then(|s| s.cycles_per_s.as_ref()), units::count);
        let ratio = match (sa, sb) {
            (Some(x), Some(y)) if x.cycles_per_s.is_some() && y.cycles_per_s.is_some() => {
                let (x, y) = (
                    x.cycles_per_s.unwrap().median,
                    y.cycles_per_s.unwrap().median,
                );
                format!("rate {}", units::ratio(y / x))
            }
            (Some(x), Some(y)) if x.device_write_bytes.median > 0.0 => {
                units::ratio(y.device_write_bytes.median / x.device_write_bytes.median)
            }
            (Some(_), Some(y)) if y.device_write_bytes.median > 0.0 => "∞".into(),
            (Some(_), Some(_)) => "=".into(),
            _ => "-".into(),
        };
        rows.push(vec![
            ra.workload.name.clone(),
            dev(sa),
            dev(sb),
            ratio,
            op(sa),
            op(sb),
            rate(sa),
            rate(sb),
        ]);
    }
    layout(&header, &rows)
}

/// The whole terminal report.
pub fn render_text(report: &Report) -> String {
    let mut out = format!(
        "lwcfs-bench {} — seed {}, {} repeat(s), pace {} ms, ext4 on a {} MiB loop image; kernel {}, {} × {}\n",
        report.date,
        report.config.seed,
        report.config.repeat,
        report.config.pace_ms,
        report.config.image_mib,
        report.machine.kernel,
        report.machine.cpus,
        report.machine.cpu
    );
    out.push_str("device = bytes written to the loop device from start to synced exit (median); per op = (device − baseline) / ops\n");
    for d in &report.daemons {
        out.push_str(&format!(
            "\n== {} ({} {})\n",
            d.label,
            d.binary.display(),
            d.args.join(" ")
        ));
        out.push_str(&daemon_table(report, &d.label));
    }
    if report.daemons.len() == 2 {
        let (a, b) = (&report.daemons[0].label, &report.daemons[1].label);
        out.push_str(&format!("\n== side by side ({b} / {a})\n"));
        out.push_str(&versus_table(report, a, b));
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

#[cfg(test)]
mod tests_support {
    pub use super::tests::sample;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Figures as RunFigures, RunRecord};
    use crate::sandbox::Exit;
    use crate::workloads::{self, Config};

    fn run(device: u64, valid: bool) -> RunRecord {
        RunRecord {
            repeat: 0,
            valid,
            invalid_reason: (!valid)
                .then(|| "daemon did not exit cleanly after SIGTERM: Hung".into()),
            figures: Some(RunFigures {
                device_write_bytes: device,
                daemon_write_bytes: Some(device / 2),
                daemon_syscw: Some(10),
                db_bytes_before: 1000,
                db_bytes_after: 5096,
                transactions: Some(1),
                workload_ms: 15_000.0,
                exit: Some(if valid { Exit::Clean } else { Exit::Hung }),
                ..Default::default()
            }),
        }
    }

    pub fn sample() -> Report {
        let cfg = Config::default();
        let base = workloads::find(&cfg, "baseline").unwrap();
        let upd = workloads::find(&cfg, "pve-update-1k-paced").unwrap();
        let mut results = Vec::new();
        for (daemon, k) in [("lwcfs", 1), ("pmxcfs", 3)] {
            let base_runs = vec![
                run(20_000 * k, true),
                run(22_000 * k, true),
                run(21_000 * k, true),
            ];
            let upd_runs = vec![
                run(120_000 * k, true),
                run(1, false),
                run(122_000 * k, true),
            ];
            results.push(WorkloadResult {
                workload: base.clone(),
                daemon: daemon.into(),
                logical_bytes: 0,
                page_floor_bytes: 0,
                summary: summarise(&base_runs, 0),
                runs: base_runs,
            });
            results.push(WorkloadResult {
                workload: upd.clone(),
                daemon: daemon.into(),
                logical_bytes: 10240,
                page_floor_bytes: 40960,
                summary: summarise(&upd_runs, 10240),
                runs: upd_runs,
            });
        }
        fill_marginals(&mut results);
        Report {
            tool: "lwcfs-bench",
            format_version: 1,
            date: rfc3339(0),
            complete: true,
            machine: Machine {
                kernel: "6.18".into(),
                cpu: "cpu".into(),
                cpus: 2,
                memory_kib: 1,
            },
            command: vec!["lwcfs-bench".into()],
            config: RunConfig {
                seed: "pve3".into(),
                repeat: 3,
                pace_ms: 1500,
                settle_ms: 1500,
                stop_timeout_s: 10,
                image_mib: 256,
                filesystem: "ext4",
            },
            daemons: ["lwcfs", "pmxcfs"]
                .iter()
                .map(|l| DaemonSpec {
                    label: l.to_string(),
                    binary: "/x".into(),
                    args: vec!["-f".into(), "-l".into()],
                    stats: false,
                })
                .collect(),
            results,
        }
    }

    #[test]
    fn invalid_runs_are_left_out_of_the_median() {
        let r = sample();
        let s = r.results[1].summary.as_ref().unwrap();
        assert_eq!(s.valid_runs, 2);
        assert_eq!(s.device_write_bytes.median, 121_000.0);
        assert_eq!(s.marginal_bytes_per_op, Some((121_000.0 - 21_000.0) / 10.0));
        assert_eq!(s.ratio_to_logical, Some(121_000.0 / 10240.0));
        assert_eq!(s.db_delta_bytes.median, 4096.0);
    }

    #[test]
    fn all_invalid_means_no_summary() {
        assert!(summarise(&[run(5, false)], 0).is_none());
    }

    #[test]
    fn json_shape_is_stable() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["tool"], "lwcfs-bench");
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["date"], "1970-01-01T00:00:00Z");
        assert_eq!(v["config"]["seed"], "pve3");
        assert_eq!(v["daemons"][1]["label"], "pmxcfs");
        let r = &v["results"][1];
        assert_eq!(r["workload"]["name"], "pve-update-1k-paced");
        assert_eq!(r["workload"]["mode"], "paced");
        assert_eq!(r["workload"]["ops"], 10);
        assert_eq!(r["daemon"], "lwcfs");
        assert_eq!(r["logical_bytes"], 10240);
        assert_eq!(r["runs"].as_array().unwrap().len(), 3);
        assert_eq!(r["runs"][1]["valid"], false);
        assert_eq!(r["runs"][1]["figures"]["exit"]["kind"], "hung");
        assert_eq!(r["runs"][0]["figures"]["exit"]["kind"], "clean");
        assert_eq!(r["runs"][0]["figures"]["device_write_bytes"], 120_000);
        let s = &r["summary"];
        for key in ["median", "min", "max", "spread_pct", "n"] {
            assert!(s["device_write_bytes"].get(key).is_some(), "{key}");
        }
        assert_eq!(s["valid_runs"], 2);
        assert_eq!(s["transactions"]["median"], 1.0);
        assert!(s["cycles_per_s"].is_null());
    }

    #[test]
    fn tables_render_every_workload_and_the_ratio() {
        let r = sample();
        let text = render_text(&r);
        assert!(text.contains("pve-update-1k-paced"));
        assert!(text.contains("2/3"));
        assert!(text.contains("invalid: pve-update-1k-paced on lwcfs run 0"));
        let vs = versus_table(&r, "lwcfs", "pmxcfs");
        let line = vs
            .lines()
            .find(|l| l.starts_with("pve-update-1k-paced"))
            .unwrap();
        assert!(line.contains("3.00×"), "{line}");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_160_330), "2025-11-26T12:32:10Z");
    }

    #[test]
    fn layout_pads_columns() {
        let t = layout(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxyz   1\n");
        let l = layout_aligned(&["a", "bb"], &[vec!["xyz".into(), "1".into()]], 2);
        assert_eq!(l, "a    bb\n---  --\nxyz  1\n");
    }
}

/// Markdown tables from a JSON report (the stable interface: works on saved reports of any run).
/// One table per daemon with the physical floors, and the side-by-side table for two daemons.
pub fn markdown_from_json(v: &serde_json::Value) -> Result<String, String> {
    use serde_json::Value;
    let results = v["results"].as_array().ok_or("no results array")?;
    let daemons: Vec<&str> = v["daemons"]
        .as_array()
        .ok_or("no daemons array")?
        .iter()
        .filter_map(|d| d["label"].as_str())
        .collect();
    let num = |x: &Value| x.as_f64();
    let median = |r: &Value, key: &str| num(&r["summary"][key]["median"]);
    let bytes_or_dash = |x: Option<f64>| x.map(units::bytes).unwrap_or_else(|| "-".into());
    let mut out = String::new();
    for d in &daemons {
        let spec = v["daemons"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["label"] == *d));
        let cmd = spec
            .map(|s| {
                let args: Vec<&str> = s["args"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                format!("{} {}", s["binary"].as_str().unwrap_or("?"), args.join(" "))
            })
            .unwrap_or_default();
        out.push_str(&format!("\n### {d} (`{}`)\n\n", cmd.trim()));
        out.push_str(
            "| workload | ops | device (median) | spread | per op | × logical | logical | page floor | ckpt debt | daemon wb | flushes | txns | rate/s | valid |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in results.iter().filter(|r| r["daemon"] == *d) {
            let w = &r["workload"];
            let runs = r["runs"].as_array().map(Vec::len).unwrap_or(0);
            let valid = r["summary"]["valid_runs"].as_u64().unwrap_or(0);
            let logical = r["logical_bytes"].as_u64().unwrap_or(0) as f64;
            let floor = r["page_floor_bytes"].as_u64().unwrap_or(0) as f64;
            let cells = if r["summary"].is_null() {
                vec![
                    "INVALID".to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]
            } else {
                let s = &r["summary"];
                let spread = match (s["device_write_bytes"]["spread_pct"].as_f64(), valid) {
                    (Some(p), n) if n > 1 => format!("±{p:.0}%"),
                    _ => String::new(),
                };
                vec![
                    bytes_or_dash(median(r, "device_write_bytes")),
                    spread,
                    num(&s["marginal_bytes_per_op"])
                        .map(signed_bytes)
                        .unwrap_or_else(|| "-".into()),
                    num(&s["ratio_to_logical"])
                        .map(units::ratio)
                        .unwrap_or_else(|| "-".into()),
                ]
            };
            out.push_str(&format!(
                "| {} | {} {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {valid}/{runs} |\n",
                w["name"].as_str().unwrap_or("?"),
                w["ops"],
                w["unit"].as_str().unwrap_or(""),
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                if logical > 0.0 { units::bytes(logical) } else { "-".into() },
                units::bytes(floor),
                bytes_or_dash(median(r, "checkpoint_debt_bytes")),
                bytes_or_dash(median(r, "daemon_write_bytes")),
                median(r, "device_flushes").map(units::count).unwrap_or_else(|| "-".into()),
                median(r, "transactions").map(units::count).unwrap_or_else(|| "-".into()),
                median(r, "cycles_per_s").map(units::count).unwrap_or_else(|| "-".into()),
            ));
        }
    }
    if daemons.len() == 2 {
        let (a, b) = (daemons[0], daemons[1]);
        out.push_str(&format!(
            "\n### side by side\n\n| workload | {a} device | {b} device | {b} / {a} | {a} per op | {b} per op | {a} rate/s | {b} rate/s |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n"
        ));
        for ra in results.iter().filter(|r| r["daemon"] == a) {
            let name = &ra["workload"]["name"];
            let Some(rb) = results
                .iter()
                .find(|r| r["daemon"] == b && r["workload"]["name"] == *name)
            else {
                continue;
            };
            let dev = |r: &Value| median(r, "device_write_bytes");
            let rate = |r: &Value| median(r, "cycles_per_s");
            let ratio = match (dev(ra), dev(rb), rate(ra), rate(rb)) {
                (_, _, Some(x), Some(y)) => format!("rate {}", units::ratio(y / x)),
                (Some(x), Some(y), _, _) if x > 0.0 => units::ratio(y / x),
                (Some(_), Some(y), _, _) if y > 0.0 => "∞".into(),
                (Some(_), Some(_), _, _) => "=".into(),
                _ => "-".into(),
            };
            let per_op = |r: &Value| {
                num(&r["summary"]["marginal_bytes_per_op"])
                    .map(signed_bytes)
                    .unwrap_or_else(|| "-".into())
            };
            let dev_s = |r: &Value| dev(r).map(units::bytes).unwrap_or_else(|| "INVALID".into());
            let rate_s = |r: &Value| rate(r).map(units::count).unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "| {} | {} | {} | {ratio} | {} | {} | {} | {} |\n",
                name.as_str().unwrap_or("?"),
                dev_s(ra),
                dev_s(rb),
                per_op(ra),
                per_op(rb),
                rate_s(ra),
                rate_s(rb)
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod markdown_tests {
    use super::*;

    #[test]
    fn markdown_renders_from_the_json_document() {
        let v = serde_json::to_value(tests_support::sample()).unwrap();
        let md = markdown_from_json(&v).unwrap();
        assert!(md.contains("### lwcfs (`/x -f -l`)"), "{md}");
        let row = md
            .lines()
            .find(|l| l.starts_with("| pve-update-1k-paced | 10 update"))
            .unwrap();
        assert!(
            row.contains("| 121 KB |") && row.contains("| 2/3 |"),
            "{row}"
        );
        assert!(row.contains("| 41.0 KB |"), "page floor in {row}");
        let vs = md
            .lines()
            .find(|l| l.starts_with("| pve-update-1k-paced | 121 KB"))
            .unwrap();
        assert!(vs.contains("| 3.00× |"), "{vs}");
        assert!(markdown_from_json(&serde_json::json!({})).is_err());
    }
}
