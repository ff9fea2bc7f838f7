//! The cluster log (status.md §4): the ring buffer of log entries every node keeps, its
//! duplicate filter, the merge of a sync round, and the JSON text of `.clusterlog` and IPC
//! GET_CLUSTER_LOG.
//!
//! - [`entry`]: one `clog_entry_t` (byte layout, C's `clog_pack` with its escaping).
//! - [`ring`]: the 128 KiB buffer in C's layout (= the state blob), the filter, merge and sort.
//! - [`ClusterLog`]: the daemon's log behind one mutex, with the per-process uid counter.
//!
//! Pure: no clock (times come in), no I/O. The status group (cluster mode) will feed received
//! entries to [`ClusterLog::insert`], send [`ClusterLog::state`] and call
//! [`ClusterLog::merge`]; the byte formats here are golden-tested against C's captured STATE
//! and LOG messages.
#![forbid(unsafe_code)]

pub mod entry;
pub mod ring;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};

pub use entry::{Entry, NewEntry};
pub use ring::{BadState, Dedup, Ring};

use crate::jsontext;

/// How many entries `.clusterlog` shows, and GET_CLUSTER_LOG when asked for 0.
pub const DEFAULT_MAX: u32 = 50;

struct Inner {
    ring: Ring,
    dedup: Dedup,
    /// C's `uid_counter`: one per daemon process, pre-incremented, shared by every entry this
    /// daemon creates.
    uid: u32,
}

/// The daemon's cluster log.
pub struct ClusterLog {
    inner: Mutex<Inner>,
}

impl Default for ClusterLog {
    fn default() -> Self {
        ClusterLog::new()
    }
}

impl ClusterLog {
    pub fn new() -> ClusterLog {
        ClusterLog {
            inner: Mutex::new(Inner {
                ring: Ring::new(),
                dedup: Dedup::default(),
                uid: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Log a message made on this node (C `clog_pack` + `clusterlog_insert`): the next uid,
    /// escaping, then the duplicate filter. Returns the entry as built (also when the filter
    /// dropped it locally: C multicasts it anyway), or `None` for a priority of 8 or more
    /// (nothing logged, no uid used).
    pub fn log(&self, new: NewEntry<'_>) -> Option<Entry> {
        let mut g = self.lock();
        if new.priority >= 8 {
            return None;
        }
        g.uid = g.uid.wrapping_add(1);
        let e = Entry::pack(new, g.uid)?;
        insert_locked(&mut g, &e);
        Some(e)
    }

    /// Insert an entry as it is (one received from a peer): kept only if it is newer in
    /// (time, uid) than every entry accepted before from its node. True if kept.
    pub fn insert(&self, e: &Entry) -> bool {
        insert_locked(&mut self.lock(), e)
    }

    /// The state blob this node sends in a sync round (C `clusterlog_get_state`): the log
    /// sorted, which also becomes the local log.
    pub fn state(&self) -> Vec<u8> {
        let mut g = self.lock();
        g.ring = g.ring.sorted();
        g.ring.bytes().to_vec()
    }

    /// Merge the states of a sync round (member order). The slot `local` stands for this
    /// node and uses the live log, not what it sent; a state C would refuse is skipped and
    /// returned as an error for the caller to log.
    pub fn merge(&self, states: &[&[u8]], local: usize) -> Vec<(usize, BadState)> {
        let mut bad = Vec::new();
        let peers: Vec<Option<Ring>> = states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == local {
                    return None;
                }
                Ring::from_state(s).map_err(|e| bad.push((i, e))).ok()
            })
            .collect();
        let mut g = self.lock();
        let logs: Vec<Option<&Ring>> = peers
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if i == local {
                    Some(&g.ring)
                } else {
                    r.as_ref()
                }
            })
            .collect();
        let (ring, dedup) = ring::merge(&logs);
        g.ring = ring;
        g.dedup = dedup;
        bad
    }

    /// The JSON text of GET_CLUSTER_LOG and `.clusterlog` (status.md §4.5): newest first, at
    /// most `max` entries, only those whose ident is `user` when `user` is not empty.
    pub fn dump_json(&self, user: &[u8], max: u32) -> String {
        dump_json(&self.lock().ring, user, max)
    }

    /// Every entry, newest first (tests, debugging).
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().ring.walk().map(|(_, e)| e).collect()
    }
}

fn insert_locked(g: &mut Inner, e: &Entry) -> bool {
    if g.dedup.accept(e) {
        g.ring.push(e);
        true
    } else {
        tracing::info!("ignore insert of duplicate cluster log");
        false
    }
}

/// C `clog_dump_json`, with two fixes (SEMANTICS.md): node, ident, tag and message are made
/// valid JSON string bodies ([`jsontext::push_body`]: unchanged when C's text already is one),
/// and the oldest reachable entry is included when the walk ends at a wrap.
pub fn dump_json(ring: &Ring, user: &[u8], max: u32) -> String {
    let user = jsontext::c_str(user);
    let filter = (!user.is_empty()).then(|| entry::digest_of_str(user));
    let mut s = String::from("{\n\"data\": [\n");
    let mut count = 0u32;
    for (_, e) in ring.walk() {
        if count >= max {
            break;
        }
        if filter.is_some_and(|d| d != e.ident_digest) {
            continue;
        }
        if count > 0 {
            s.push_str(",\n");
        }
        let _ = write!(
            s,
            "{{\"uid\": {}, \"time\": {}, \"pri\": {}, \"tag\": ",
            e.uid, e.time, e.priority
        );
        jsontext::push_quoted(&mut s, jsontext::c_str(&e.tag));
        let _ = write!(s, ", \"pid\": {}, \"node\": ", e.pid);
        jsontext::push_quoted(&mut s, jsontext::c_str(&e.node));
        s.push_str(", \"user\": ");
        jsontext::push_quoted(&mut s, jsontext::c_str(&e.ident));
        s.push_str(", \"msg\": ");
        jsontext::push_quoted(&mut s, jsontext::c_str(&e.msg));
        s.push('}');
        count += 1;
    }
    if count > 0 {
        s.push('\n');
    }
    s.push_str("]\n}\n");
    s
}
