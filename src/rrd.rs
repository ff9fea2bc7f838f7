//! RRD: the `rrd/…` status updates pvestatd sends (locally through SET_STATUS, from other nodes
//! as kvstore UPDATEs) kept in memory for GET_RRD_DUMP / `.rrd`, and written into the RRD files
//! of the PVE 9 layout, as C pmxcfs does (status.md §3).
//!
//! - [`key`]: RRD key → file and update string (skip, pad, cut). Pure.
//! - [`schema`]: the data sources and archives of each kind of file. Pure.
//! - [`table`]: the in-memory table, its dump text, expiry and 2 s cache. Pure.
//! - [`files`]: creating and updating the files: rrdcached first, librrd directly otherwise.
//! - [`rrdcached`]: rrdcached's text protocol over its socket.
//! - `librrd`: the FFI to librrd and libc's local time (the daemon's only `unsafe`).
//!
//! [`Rrd`] is what the IPC server and the status group call.

pub mod files;
pub mod key;
// The FFI to librrd: the only unsafe code of the RRD side (see its module doc).
#[allow(unsafe_code)]
mod librrd;
pub mod rrdcached;
pub mod schema;
pub mod table;

use std::path::PathBuf;
use std::sync::Mutex;

pub use files::Outcome;
pub use table::Rejected;

/// Where C keeps the files (`RRDDIR`).
pub const DEFAULT_BASE_DIR: &str = "/var/lib/rrdcached/db";
/// The socket C sends updates to (`unix:/var/run/rrdcached.sock`).
pub const DEFAULT_RRDCACHED_SOCKET: &str = "/var/run/rrdcached.sock";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrdConfig {
    /// The directory holding `pve-{node,vm,storage}-9.0/`.
    pub base_dir: PathBuf,
    /// rrdcached's socket; `None` writes every update with librrd directly.
    pub rrdcached: Option<PathBuf>,
}

impl Default for RrdConfig {
    fn default() -> RrdConfig {
        RrdConfig {
            base_dir: PathBuf::from(DEFAULT_BASE_DIR),
            rrdcached: Some(PathBuf::from(DEFAULT_RRDCACHED_SOCKET)),
        }
    }
}

/// The RRD table and files of one daemon. Every method takes `&self`; the table and the
/// files have a lock each, so a slow disk or rrdcached never holds up a dump.
pub struct Rrd {
    table: Mutex<table::Table>,
    files: Mutex<files::Files>,
}

impl Rrd {
    pub fn new(cfg: RrdConfig) -> Rrd {
        Rrd {
            table: Mutex::new(table::Table::new()),
            files: Mutex::new(files::Files::new(cfg.base_dir, cfg.rrdcached)),
        }
    }

    /// One update: `key` is the status key without its `rrd/` prefix (e.g.
    /// `pve2-node/node1`), `value` the bytes as sent (text + NUL), `now` the arrival time in
    /// seconds since the epoch.
    ///
    /// As C's `rrdentry_hash_set`: a value that is empty, 4096 bytes or longer, or not
    /// NUL-terminated is refused (SET_STATUS answers ENOMEM) and nothing is written. Otherwise
    /// the table keeps it and the file is written at once, in the caller's thread; a key C
    /// does not know, or a failed write, is logged (once, until it works again) and is still
    /// `Ok` — C's caller never sees those either.
    pub fn update(&self, key: &str, value: &[u8], now: u64) -> Result<Outcome, Rejected> {
        lock(&self.table).set(key, value, now)?;
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        Ok(lock(&self.files).write(key, value, now))
    }

    /// The dump text for GET_RRD_DUMP and `.rrd`: `<key>:<value>\n` for every key received in
    /// the last 300 s, sorted by key; rebuilt at most every 2 s.
    ///
    /// C's IPC reply is this text plus one NUL when freshly built, the text alone when served
    /// from its cache (so an empty table can answer with nothing at all); the NUL is only
    /// there so that the reply is never empty.
    pub fn dump(&self, now: u64) -> String {
        lock(&self.table).dump(now).0
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The key/value status hands `rrd/…` updates here, and asks for the dump here.
impl crate::kvstatus::RrdSink for Rrd {
    fn update(&self, key: &[u8], value: &[u8]) -> bool {
        let Ok(key) = std::str::from_utf8(crate::jsontext::c_str(key)) else {
            tracing::debug!("rrd key is not UTF-8: {:?}", String::from_utf8_lossy(key));
            return crate::kvstatus::rrd_value_ok(value);
        };
        Rrd::update(self, key, value, unix_now()).is_ok()
    }

    /// The text and one NUL, always (C adds the NUL only when the dump was rebuilt, so a
    /// cached empty dump could answer with nothing at all).
    fn dump(&self) -> Vec<u8> {
        let mut out = Rrd::dump(self, unix_now()).into_bytes();
        out.push(0);
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPC server calls it from many threads.
    #[test]
    fn rrd_is_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Rrd>();
    }

    /// Without rrdcached: the value reaches the table and a file of the 9.0 layout; a refused
    /// value reaches neither; a wrong key only the table.
    #[test]
    fn update_reaches_table_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let rrd = Rrd::new(RrdConfig {
            base_dir: dir.path().join("db"),
            rrdcached: Some(dir.path().join("no-such.sock")),
        });
        let now = 1_795_693_658;
        let v = b"1795693658:100:50\0";
        assert_eq!(
            rrd.update("pve2-storage/node1/local", v, now),
            Ok(Outcome::Direct)
        );
        assert!(dir.path().join("db/pve-storage-9.0/node1/local").is_file());
        assert_eq!(
            rrd.update("pve2-storage/node1/local", b"x", now),
            Err(Rejected { len: 1 })
        );
        assert_eq!(
            rrd.update("pve2-vm/100", b"1:2\0", now),
            Ok(Outcome::BadKey)
        );
        assert_eq!(
            rrd.dump(now),
            "pve2-storage/node1/local:1795693658:100:50\npve2-vm/100:1:2\n"
        );
        // The same timestamp again: librrd refuses, the table still takes it.
        assert!(matches!(
            rrd.update("pve2-storage/node1/local", v, now + 1),
            Ok(Outcome::Failed(_))
        ));
        // The key, the file, and the missing rrdcached.
        assert_eq!(lock(&rrd.files).failing(), 3);
        assert_eq!(
            rrd.update("pve2-storage/node1/local", b"1795693718:100:60\0", now + 60),
            Ok(Outcome::Direct)
        );
        assert_eq!(lock(&rrd.files).failing(), 2);
    }
}
