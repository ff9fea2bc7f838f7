//! The in-memory RRD table: the last value of every RRD key seen from any node, and its dump
//! text (status.md §3.2, §3.3; `status.c` `rrdentry_hash_set`, `cfs_rrd_dump`). Pure: the time
//! comes in as an argument.

use std::collections::BTreeMap;

/// Entries older than this (seconds since they arrived) leave the dump.
pub const EXPIRY: u64 = 300;
/// A dump is served from the cache if it was built less than this long ago.
pub const DUMP_CACHE: u64 = 2;
/// The largest value C stores, NUL included, is one byte less.
pub const MAX_VALUE_LEN: usize = 4096;

/// A value C refuses to store (SET_STATUS then answers ENOMEM): empty, 4096 bytes or more,
/// or not ending with NUL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("RRD value of {len} bytes refused: it must end with NUL and be shorter than 4096 bytes")]
pub struct Rejected {
    pub len: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// The value up to its first NUL (what C's dump prints).
    text: Vec<u8>,
    /// Arrival time, seconds.
    time: u64,
}

/// A built dump and when.
#[derive(Clone, Debug)]
struct Cached {
    built: u64,
    text: String,
}

#[derive(Debug, Default)]
pub struct Table {
    entries: BTreeMap<String, Entry>,
    cache: Option<Cached>,
    last_purge: u64,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// Store `value` under `key` (without `rrd/`), replacing what was there; `now` is the
    /// arrival time. Refused like C: empty, ≥ 4096 bytes, or no NUL at the end.
    pub fn set(&mut self, key: &str, value: &[u8], now: u64) -> Result<(), Rejected> {
        check_value(value)?;
        let text = match value.iter().position(|&b| b == 0) {
            Some(n) => value[..n].to_vec(),
            None => value.to_vec(),
        };
        self.entries
            .insert(key.to_owned(), Entry { text, time: now });
        // Expired entries never show in a dump, so dropping them here changes nothing visible;
        // it only bounds the memory of keys nobody sends any more when nobody dumps.
        if now.saturating_sub(self.last_purge) >= 60 {
            self.purge(now);
        }
        Ok(())
    }

    /// The dump: `<key>:<value>\n` per entry that arrived in the last 300 s, sorted by key.
    /// Built at most every 2 s; in between the same text is returned even if entries changed
    /// (C's cache). The second value is true when the text was built by this call.
    ///
    /// Differences from C: entries are sorted (C: hash order); a clock that went backwards
    /// rebuilds the dump (C would serve the old one until the clock caught up); invalid UTF-8
    /// in values is replaced by U+FFFD.
    pub fn dump(&mut self, now: u64) -> (String, bool) {
        if let Some(c) = &self.cache {
            if now >= c.built && now - c.built < DUMP_CACHE {
                return (c.text.clone(), false);
            }
        }
        self.purge(now);
        let mut text = String::new();
        for (k, e) in &self.entries {
            text.push_str(k);
            text.push(':');
            text.push_str(&String::from_utf8_lossy(&e.text));
            text.push('\n');
        }
        self.cache = Some(Cached {
            built: now,
            text: text.clone(),
        });
        (text, true)
    }

    /// Number of stored entries, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drop entries with `now - time > 300` (C: `rrd_entry_is_old`). A clock that went
    /// backwards expires nothing.
    fn purge(&mut self, now: u64) {
        self.entries
            .retain(|_, e| now.saturating_sub(e.time) <= EXPIRY);
        self.last_purge = now;
    }
}

/// C's acceptance test of an RRD value (`rrdentry_hash_set`): 0 < len < 4096, last byte NUL.
pub fn check_value(value: &[u8]) -> Result<(), Rejected> {
    match value.last() {
        Some(0) if value.len() < MAX_VALUE_LEN => Ok(()),
        _ => Err(Rejected { len: value.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_text_is_key_colon_value_lines() {
        let mut t = Table::new();
        assert_eq!(t.dump(1000), (String::new(), true));
        t.set("pve2-node/b", b"1:2:3\0", 1000).unwrap();
        t.set("pve2-storage/a/local", b"4:5\0", 1000).unwrap();
        // Cached for 2 s: the new entries are not in it yet.
        assert_eq!(t.dump(1001), (String::new(), false));
        assert_eq!(
            t.dump(1002),
            (
                "pve2-node/b:1:2:3\npve2-storage/a/local:4:5\n".to_owned(),
                true
            )
        );
    }

    #[test]
    fn same_key_overwrites_and_only_the_text_before_nul_counts() {
        let mut t = Table::new();
        t.set("k", b"old\0", 10).unwrap();
        t.set("k", b"new\0tail\0", 11).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.dump(11).0, "k:new\n");
    }

    #[test]
    fn values_c_refuses() {
        let mut t = Table::new();
        assert_eq!(t.set("k", b"", 1), Err(Rejected { len: 0 }));
        assert_eq!(t.set("k", b"x", 1), Err(Rejected { len: 1 }));
        let mut big = vec![b'1'; 4095];
        big.push(0);
        assert_eq!(t.set("k", &big, 1), Err(Rejected { len: 4096 }));
        big.truncate(4094);
        big.push(0);
        assert!(t.set("k", &big, 1).is_ok());
        assert!(t.set("k", b"\0", 1).is_ok());
    }

    /// status.md §3.3: an entry leaves the dump once it is more than 300 s old.
    #[test]
    fn entries_expire_after_300_seconds() {
        let mut t = Table::new();
        t.set("old", b"1\0", 1000).unwrap();
        t.set("new", b"2\0", 1100).unwrap();
        assert_eq!(t.dump(1300).0, "new:2\nold:1\n");
        assert_eq!(t.dump(1302).0, "new:2\n"); // 302 s old
        assert_eq!(t.len(), 1);
        assert_eq!(t.dump(1400).0, "new:2\n"); // exactly 300 s: kept
        assert_eq!(t.dump(1402).0, "");
        assert!(t.is_empty());
    }

    #[test]
    fn clock_going_back_rebuilds_and_expires_nothing() {
        let mut t = Table::new();
        t.set("k", b"1\0", 1000).unwrap();
        assert_eq!(t.dump(1000).0, "k:1\n");
        t.set("j", b"2\0", 1000).unwrap();
        assert_eq!(t.dump(500), ("j:2\nk:1\n".to_owned(), true));
    }

    #[test]
    fn updates_purge_expired_entries() {
        let mut t = Table::new();
        t.set("a", b"1\0", 1000).unwrap();
        t.set("b", b"1\0", 1400).unwrap();
        assert_eq!(t.len(), 1);
    }
}
