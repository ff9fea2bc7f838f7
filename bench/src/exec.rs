//! Runs plans against a directory: the sandbox's `/etc/pve`, or a temporary directory in tests.
//!
//! Each step issues the syscalls its doc in `plan.rs` names, no more: the daemon must see what
//! the modelled program would make it see.

use crate::plan::{Expect, Mtime, Readers, Step, Timed};
use nix::sys::stat::{futimens, utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a run of steps did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub steps: u64,
    /// Bytes handed to `write(2)`.
    pub logical_bytes: u64,
    /// Probes that failed as they may (contended mkdir, refused unlock request, …).
    pub tolerated_failures: u64,
    pub duration_ms: f64,
    /// Read workloads: stat+open+read+close cycles done, and those whose content was wrong.
    pub cycles: u64,
    pub mismatches: u64,
    pub cycles_per_s: Option<f64>,
    /// Wall time of each step of a run, in milliseconds, in order (the latency workloads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_ms: Vec<f64>,
}

/// A step that failed although it had to succeed.
#[derive(Debug)]
pub struct StepError {
    pub step: String,
    pub error: io::Error,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.error)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn write_once(mut f: &File, data: &[u8]) -> io::Result<u64> {
    if !data.is_empty() {
        f.write_all(data)?;
    }
    Ok(data.len() as u64)
}

/// Performs one step; returns the bytes written.
pub fn perform(root: &Path, step: &Step) -> io::Result<u64> {
    let p = |rel: &str| root.join(rel);
    match step {
        Step::MkdirAll(d) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p(d))
            .map(|_| 0),
        Step::Mkdir(d) => fs::DirBuilder::new().mode(0o755).create(p(d)).map(|_| 0),
        Step::Rmdir(d) => fs::remove_dir(p(d)).map(|_| 0),
        Step::Overwrite { path, content } => {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o666)
                .open(p(path))?;
            write_once(&f, &content.render(now_secs()))
        }
        Step::Append { path, data } => {
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o666)
                .open(p(path))?;
            write_once(&f, data)
        }
        Step::SetContents {
            target,
            pid,
            content,
        } => {
            let data = content.render(now_secs());
            let tmp = p(&format!("{target}.tmp.{pid}"));
            let mut tries = 0;
            let f = loop {
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&tmp)
                {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 2 => {
                        tries += 1;
                        let _ = fs::remove_file(&tmp);
                    }
                    other => break other?,
                }
            };
            let n = write_once(&f, &data)?;
            drop(f);
            fs::rename(&tmp, p(target))?;
            Ok(n)
        }
        Step::Touch(path) => {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .mode(0o666)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(p(path))?;
            futimens(f.as_raw_fd(), &TimeSpec::UTIME_NOW, &TimeSpec::UTIME_NOW)?;
            Ok(0)
        }
        Step::Dd {
            path,
            bs,
            count,
            seed,
        } => {
            let data = crate::content::Lcg::new(*seed).bytes(bs * count);
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o666)
                .open(p(path))?;
            for chunk in data.chunks(*bs) {
                f.write_all(chunk)?;
            }
            Ok(data.len() as u64)
        }
        Step::Rename { from, to } => fs::rename(p(from), p(to)).map(|_| 0),
        Step::Unlink(path) => fs::remove_file(p(path)).map(|_| 0),
        Step::Utime { path, mtime } => {
            let m = match mtime {
                Mtime::Now => now_secs() as i64,
                Mtime::Zero => 0,
            };
            utimensat(
                None,
                &p(path),
                &TimeSpec::new(0, 0),
                &TimeSpec::new(m, 0),
                UtimensatFlags::FollowSymlink,
            )?;
            Ok(0)
        }
        Step::Lstat(path) => fs::symlink_metadata(p(path)).map(|_| 0),
        Step::Stat(path) => fs::metadata(p(path)).map(|_| 0),
        Step::Read(path) => fs::read(p(path)).map(|_| 0),
    }
}

/// Runs the preparation steps in order; any failure is fatal.
pub fn prepare(root: &Path, steps: &[Step]) -> Result<(), StepError> {
    for s in steps {
        perform(root, s).map_err(|error| StepError {
            step: format!("{s:?}"),
            error,
        })?;
    }
    Ok(())
}

/// Runs timed steps, each not before its time, and lasts at least `min_duration_ms`.
pub fn run(root: &Path, steps: &[Timed], min_duration_ms: u64) -> Result<Outcome, StepError> {
    let start = Instant::now();
    let mut out = Outcome::default();
    for t in steps {
        let due = start + Duration::from_millis(t.at_ms);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let began = Instant::now();
        let result = perform(root, &t.step);
        out.step_ms.push(began.elapsed().as_secs_f64() * 1000.0);
        match (result, t.expect) {
            (Ok(n), _) => out.logical_bytes += n,
            (Err(_), Expect::Tolerated) => out.tolerated_failures += 1,
            (Err(error), Expect::Success) => {
                return Err(StepError {
                    step: format!("at {} ms: {}", t.at_ms, describe(&t.step)),
                    error,
                })
            }
        }
        out.steps += 1;
    }
    let end = start + Duration::from_millis(min_duration_ms);
    let now = Instant::now();
    if end > now {
        std::thread::sleep(end - now);
    }
    out.duration_ms = start.elapsed().as_secs_f64() * 1000.0;
    Ok(out)
}

/// A short description of a step for error messages (without the file contents).
pub fn describe(step: &Step) -> String {
    match step {
        Step::Overwrite { path, content } => {
            format!("overwrite {path} ({} bytes)", content.len_hint())
        }
        Step::SetContents {
            target,
            pid,
            content,
        } => {
            format!(
                "set contents of {target} via .tmp.{pid} ({} bytes)",
                content.len_hint()
            )
        }
        Step::Append { path, data } => format!("append {} bytes to {path}", data.len()),
        Step::Dd {
            path, bs, count, ..
        } => format!("dd of={path} bs={bs} count={count}"),
        other => format!("{other:?}"),
    }
}

/// What one reader did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderOutcome {
    pub cycles: u64,
    pub mismatches: u64,
    pub errors: u64,
}

/// The contents a reader checks its reads against (computed before the timed part).
pub fn expected_contents(spec: &Readers) -> Vec<Vec<u8>> {
    (0..spec.files).map(|i| spec.content(i)).collect()
}

/// One reader: `passes` times over every file, stat + open + read + close, each read checked
/// against the expected content.
pub fn read_passes(root: &Path, spec: &Readers, expected: &[Vec<u8>]) -> ReaderOutcome {
    let dir = root.join(&spec.dir);
    let paths: Vec<_> = (0..spec.files)
        .map(|i| dir.join(Readers::file_name(i)))
        .collect();
    let mut buf = Vec::with_capacity(spec.file_size + 1);
    let mut out = ReaderOutcome::default();
    for _ in 0..spec.passes {
        for (path, want) in paths.iter().zip(expected) {
            let mut cycle = || -> io::Result<bool> {
                let meta = fs::metadata(path)?;
                buf.clear();
                File::open(path)?.read_to_end(&mut buf)?;
                Ok(meta.len() == want.len() as u64 && buf == *want)
            };
            match cycle() {
                Ok(true) => {}
                Ok(false) => out.mismatches += 1,
                Err(_) => out.errors += 1,
            }
            out.cycles += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RunPart;
    use crate::workloads::{self, Config};

    fn run_workload(name: &str, cfg: &Config) -> (tempfile::TempDir, Outcome) {
        let dir = tempfile::tempdir().unwrap();
        let w = workloads::find(cfg, name).unwrap();
        let plan = workloads::plan(&w, cfg);
        prepare(dir.path(), &plan.prepare).unwrap();
        let out = match &plan.run {
            RunPart::Steps(s) => run(dir.path(), s, 0).unwrap(),
            RunPart::Readers(r) => {
                let r = Readers {
                    passes: 1,
                    ..r.clone()
                };
                let o = read_passes(dir.path(), &r, &expected_contents(&r));
                Outcome {
                    cycles: o.cycles,
                    mismatches: o.mismatches + o.errors,
                    ..Default::default()
                }
            }
        };
        (dir, out)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn pve_update_leaves_the_target_and_no_tmp_file() {
        let cfg = Config {
            seed: crate::seed::Seed::Empty,
            ..Config::default()
        };
        let (dir, out) = run_workload("pve-update-8k-burst", &cfg);
        assert_eq!(names(&dir.path().join("bench")), ["update-8.cfg"]);
        assert_eq!(
            fs::metadata(dir.path().join("bench/update-8.cfg"))
                .unwrap()
                .len(),
            8192
        );
        assert_eq!(out.logical_bytes, 20 * 8192);
        assert_eq!(out.steps, 20);
    }

    #[test]
    fn lock_churn_leaves_no_lock_and_lrm_status_is_json() {
        let cfg = Config::default();
        let (dir, _) = run_workload("lock-churn-burst", &cfg);
        assert!(names(&dir.path().join("priv/lock")).is_empty());
        let (dir, _) = run_workload("lrm-status-burst", &cfg);
        let text = fs::read(dir.path().join("nodes/pve1/lrm_status")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["state"], "wait_for_agent_lock");
        assert!(!names(&dir.path().join("nodes/pve1"))
            .iter()
            .any(|n| n.contains(".tmp.")));
    }

    #[test]
    fn free_pmx_cases_do_what_their_names_say() {
        let cfg = Config {
            seed: crate::seed::Seed::Empty,
            ..Config::default()
        };
        let (dir, _) = run_workload("mv-burst", &cfg);
        assert_eq!(
            names(&dir.path().join("bench"))
                .iter()
                .filter(|n| n.ends_with(".moved"))
                .count(),
            20
        );
        let (dir, _) = run_workload(
            "rm-paced",
            &Config {
                pace_ms: 1,
                ..cfg.clone()
            },
        );
        assert!(names(&dir.path().join("bench")).is_empty());
        let (dir, _) = run_workload("echo-append-burst", &cfg);
        assert_eq!(
            fs::metadata(dir.path().join("bench/append-0"))
                .unwrap()
                .len(),
            512 + 10 * 12 + 10 * 13
        );
        let (dir, _) = run_workload("echo-overwrite-burst", &cfg);
        assert_eq!(
            fs::read(dir.path().join("bench/echo-0")).unwrap(),
            b"echo line 19\n"
        );
        let (dir, _) = run_workload("touch-new-burst", &cfg);
        assert_eq!(names(&dir.path().join("bench")).len(), 20);
        let (dir, out) = run_workload("dd-512", &cfg);
        assert_eq!(
            fs::metadata(dir.path().join("bench/dd-512")).unwrap().len(),
            1 << 20
        );
        assert_eq!(out.logical_bytes, 1 << 20);
    }

    #[test]
    fn the_armed_minute_runs_against_a_plain_directory() {
        // Time-compressed: only the order and the outcomes of the steps are checked here.
        let cfg = Config {
            seed: crate::seed::Seed::Empty,
            ..Config::default()
        };
        let w = workloads::find(&cfg, "armed-ha-minute").unwrap();
        let plan = workloads::plan(&w, &cfg);
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), &plan.prepare).unwrap();
        let compressed: Vec<Timed> = plan
            .steps()
            .iter()
            .map(|t| Timed {
                at_ms: 0,
                ..t.clone()
            })
            .collect();
        let out = run(dir.path(), &compressed, 0).unwrap();
        // On a plain directory every slave probe's mkdir fails (EEXIST) and its utime succeeds;
        // on the bare tree pve1's reads of `local` (30), `nodes/pve1/config` (6) and
        // `authkey.pub` (6) find nothing.
        assert_eq!(out.tolerated_failures, 120 + 30 + 6 + 6);
        assert!(dir.path().join("ha/manager_status").exists());
        assert_eq!(
            fs::metadata(dir.path().join("ha/crm_commands"))
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn readers_detect_wrong_content() {
        let cfg = Config {
            seed: crate::seed::Seed::Empty,
            ..Config::default()
        };
        let (dir, out) = run_workload("read-parallel-1", &cfg);
        assert_eq!((out.cycles, out.mismatches), (1000, 0));
        fs::write(dir.path().join("bench/read/f0007"), b"stale").unwrap();
        let spec = Readers {
            dir: "bench/read".into(),
            files: 1000,
            file_size: 4096,
            readers: 1,
            passes: 2,
        };
        let o = read_passes(dir.path(), &spec, &expected_contents(&spec));
        assert_eq!((o.cycles, o.mismatches, o.errors), (2000, 2, 0));
    }

    #[test]
    fn a_failing_step_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            dir.path(),
            &[Timed::at(5, Step::Rmdir("missing".into()))],
            0,
        )
        .unwrap_err();
        assert!(
            err.step.contains("missing") && err.step.contains("at 5 ms"),
            "{}",
            err.step
        );
    }
}
