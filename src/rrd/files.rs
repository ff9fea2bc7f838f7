//! Writing updates into the RRD files, as C's `update_rrd_data` does: create the file with
//! librrd if it is missing (its directories first), then send the update to rrdcached, or
//! write it with librrd when rrdcached is not there or refuses it (status.md §3.4).
//!
//! Failures are logged when a file (or a key) starts failing and when it works again, not at
//! every update: pvestatd sends every object every 10 s, and C logs each failure each time.

use std::collections::HashMap;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::key::Target;
use super::librrd;
use super::rrdcached;
use super::schema::STEP;

/// How many distinct failing files or keys are remembered; past that the memory is cleared
/// (at worst a failure is logged once more).
const MAX_REMEMBERED_FAILURES: usize = 4096;
/// The failure subject of an rrdcached that cannot be reached.
const CONNECT: &str = "rrdcached connection";
/// After rrdcached timed out or broke a connection, it is not asked again for this long
/// (seconds): every update would otherwise wait for the timeout first.
pub const DAEMON_BACKOFF: i64 = 30;

/// What happened to one update, for tests and debug logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The key is not an RRD key C knows.
    BadKey,
    /// Written through rrdcached.
    Daemon,
    /// Written with librrd directly (no rrdcached, or rrdcached refused).
    Direct,
    /// Not written; the error.
    Failed(String),
}

pub struct Files {
    base: PathBuf,
    daemon: Option<rrdcached::Client>,
    /// rrdcached is skipped before this time (seconds) after it failed as a daemon.
    daemon_down_until: i64,
    /// Files and keys whose last update failed, with the number of failures not logged.
    failing: HashMap<String, u64>,
}

impl Files {
    /// Files under `base` (C: `/var/lib/rrdcached/db`), updates through the rrdcached socket
    /// `daemon` if given (C: `/var/run/rrdcached.sock`).
    pub fn new(base: PathBuf, daemon: Option<PathBuf>) -> Files {
        Files::with_client(base, daemon.map(rrdcached::Client::new))
    }

    /// Files under `base`, updates through `daemon` if given.
    pub fn with_client(base: PathBuf, daemon: Option<rrdcached::Client>) -> Files {
        Files {
            base,
            daemon,
            daemon_down_until: i64::MIN,
            failing: HashMap::new(),
        }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Write one update (`key` without `rrd/`, `value` as received) at time `now`.
    pub fn write(&mut self, key: &str, value: &[u8], now: i64) -> Outcome {
        let target = match Target::parse(key) {
            Ok(t) => t,
            Err(e) => {
                self.failed(&format!("key {key}"), || format!("RRD update error: {e}"));
                return Outcome::BadKey;
            }
        };
        let file = self.base.join(target.rel_path());
        let subject = file.display().to_string();
        if !file.exists() {
            if let Err(msg) = self.create(&target, &file, now) {
                self.failed(&subject, || msg.clone());
                return Outcome::Failed(msg);
            }
        }
        let update = target.update_string(value);
        let daemon_subject = format!("rrdcached {subject}");
        let mut daemon_error = None;
        let daemon = match self.daemon.as_mut() {
            Some(d) if now >= self.daemon_down_until => Some(d),
            _ => None,
        };
        if let Some(d) = daemon {
            match d.connect() {
                Ok(()) => {
                    // librrd's client resolves the path before sending it; so does this.
                    let real = file.canonicalize().unwrap_or_else(|_| file.clone());
                    match d.update(&real, &update) {
                        Ok(()) => {
                            self.works(CONNECT);
                            self.works(&daemon_subject);
                            self.works(&subject);
                            return Outcome::Daemon;
                        }
                        Err(e) => {
                            if e.is_daemon_down() {
                                self.daemon_down_until = now.saturating_add(DAEMON_BACKOFF);
                            }
                            daemon_error = Some(format!("RRDC update error {subject}: {e}"))
                        }
                    }
                }
                // C falls back silently; one line says why files are written directly.
                Err(e) => self.failed(CONNECT, || format!("{e}: writing RRD files directly")),
            }
        }
        match librrd::update(&file, &update) {
            Ok(()) => {
                if let Some(msg) = daemon_error {
                    // rrdcached refused what librrd took: worth a line of its own.
                    self.failed(&daemon_subject, || msg.clone());
                }
                self.works(&subject);
                Outcome::Direct
            }
            Err(e) => {
                let mut msg = format!("RRD update error {subject}: {e}");
                if let Some(d) = daemon_error {
                    msg = format!("{d}; {msg}");
                }
                self.failed(&subject, || msg.clone());
                Outcome::Failed(msg)
            }
        }
    }

    /// The missing directories (mode 0750), then the file with librrd, started at local
    /// midnight (C's `create_rrd_file`). C never creates the base directory and logs every
    /// failure forever when it is missing; here the whole chain is created once.
    fn create(&self, target: &Target, file: &Path, now: i64) -> Result<(), String> {
        if let Some(dir) = file.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|e| format!("could not create directory {}: {e}", dir.display()))?;
        }
        librrd::create(
            file,
            STEP,
            librrd::local_midnight(now),
            &target.kind.create_args(),
        )
        .map_err(|e| format!("RRD create error {}: {e}", file.display()))
    }

    fn failed(&mut self, subject: &str, msg: impl FnOnce() -> String) {
        if self.failing.len() >= MAX_REMEMBERED_FAILURES && !self.failing.contains_key(subject) {
            self.failing.clear();
        }
        let n = self.failing.entry(subject.to_owned()).or_insert(0);
        if *n == 0 {
            tracing::warn!("{} (logged once until it works again)", msg());
        } else {
            tracing::debug!("{}", msg());
        }
        *n += 1;
    }

    fn works(&mut self, subject: &str) {
        if let Some(n) = self.failing.remove(subject) {
            tracing::info!("RRD updates of {subject} work again after {n} failures");
        }
    }

    /// Files and keys currently failing.
    pub fn failing(&self) -> usize {
        self.failing.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    /// An rrdcached that accepts but never answers: the update times out, goes to librrd, and
    /// the daemon is left alone for the backoff, then asked again.
    #[test]
    fn a_stuck_rrdcached_is_skipped_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let _listener = UnixListener::bind(&sock).unwrap(); // never accepts: connect succeeds
        let client = rrdcached::Client::with_timeout(sock, Duration::from_millis(100));
        let mut f = Files::with_client(dir.path().join("db"), Some(client));
        let t = 1_795_693_658;
        let key = "pve2-storage/n/s";
        assert_eq!(
            f.write(key, format!("{t}:1:2\0").as_bytes(), t),
            Outcome::Direct
        );
        assert!(f.daemon_down_until > t);
        // Within the backoff: straight to librrd, no waiting.
        let started = std::time::Instant::now();
        assert_eq!(
            f.write(key, format!("{}:1:2\0", t + 60).as_bytes(), t + 1),
            Outcome::Direct
        );
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(!f.daemon.as_ref().unwrap().is_connected());
        // After it: rrdcached is tried again (and times out again).
        let later = t + 1 + DAEMON_BACKOFF;
        assert_eq!(
            f.write(key, format!("{}:1:2\0", t + 120).as_bytes(), later),
            Outcome::Direct
        );
        assert!(f.daemon_down_until > later);
    }
}
