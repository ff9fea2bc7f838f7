//! Which rewrites may stay off disk for a while (SEMANTICS.md §1.10): the HA local resource
//! manager's `nodes/<node>/lrm_status`, rewritten every 5–10 s on every node with nothing new
//! but its `timestamp` (workload.md §1.3, rule R4 of §5.1). The CRM reads only `mode` and
//! `results` of it; the timestamp is only displayed.
//!
//! The decision is the backend's, at commit time, against the content on disk: a rewrite whose
//! JSON equals the stored JSON once the top-level `timestamp` is removed from both is held back
//! (the tree, and every reader, has the new content), for at most the bound. Anything else about
//! the file is stored as usual.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use lwcfs_backend::Defer;
use lwcfs_memdb::{Op, TreePath};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// 5 minutes (workload.md §5.1's T_max). What a longer bound risks is the same as what a shorter
/// one does: after every node lost power, the stored timestamp is old, and `ha-manager status`
/// shows the LRM as "old timestamp - dead?" (its threshold is 30 s, shorter than any useful
/// bound) until the LRM's first write after the restart, its first action once quorate. No HA
/// decision reads it. A longer bound saves more: 36 rewrites a minute on a 3-node cluster become
/// one commit per file per bound.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(300);

/// The longest bound the command line accepts.
pub const MAX_BOUND: Duration = Duration::from_secs(3600);

/// Larger JSON is never compared (counts as changed).
const MAX_JSON: usize = 256 * 1024;

/// `nodes/<node>/lrm_status`, exactly.
pub fn is_lrm_status(path: &TreePath) -> bool {
    matches!(path.components(), [n, _, f] if n == "nodes" && f == "lrm_status")
}

/// The rule for the changes of `op`, if they may be deferred: a rename onto, or a write to,
/// `nodes/<node>/lrm_status`. A zero `bound` defers nothing.
pub fn rule_for(op: &Op, bound: Duration) -> Option<Defer> {
    let target = match op {
        Op::Rename { to, .. } => to,
        Op::Write { path, .. } => path,
        _ => return None,
    };
    (!bound.is_zero() && is_lrm_status(target)).then_some(Defer {
        bound,
        same: same_except_timestamp,
    })
}

/// Both are JSON objects (no duplicate key, at most 256 KiB) equal once their top-level
/// `timestamp` is removed. Objects compare as unordered maps (Perl writes keys in any order),
/// arrays in order, scalars strictly with their type (`0` is not `"0"`, `1` is not `1.0`).
/// Anything that does not parse is different.
pub fn same_except_timestamp(stored: &[u8], current: &[u8]) -> bool {
    match (without_timestamp(stored), without_timestamp(current)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn without_timestamp(b: &[u8]) -> Option<Map<String, Value>> {
    if b.len() > MAX_JSON {
        return None;
    }
    let Strict(v) = serde_json::from_slice(b).ok()?;
    match v {
        Value::Object(mut m) => {
            m.remove("timestamp");
            Some(m)
        }
        _ => None,
    }
}

/// A JSON value whose objects have no duplicate key (serde_json's `Value` keeps the last one).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Number::from_f64(v)
            .map(|n| Strict(Value::Number(n)))
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(e)) = seq.next_element()? {
            v.push(e);
        }
        Ok(Strict(Value::Array(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut m = BTreeMap::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if m.insert(k, v).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Strict(Value::Object(m.into_iter().collect())))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lwcfs_backend::WriterConfig;
    use lwcfs_fuse::{FsService, KIno};
    use lwcfs_memdb::Mtime;

    use super::*;
    use crate::kcache::KernelCache;
    use crate::service::{Service, ServiceConfig, Shared, Tree};
    use crate::status::Status;

    const IDLE: &str =
        r#"{"state":"wait_for_agent_lock","mode":"active","results":{},"timestamp":1700000000}"#;

    #[test]
    fn timestamp_and_key_order_do_not_count() {
        let later = r#"{"timestamp":1700000005,"results":{},"mode":"active","state":"wait_for_agent_lock"}"#;
        assert!(same_except_timestamp(IDLE.as_bytes(), later.as_bytes()));
        let no_ts = r#"{"mode":"active","results":{},"state":"wait_for_agent_lock"}"#;
        assert!(same_except_timestamp(IDLE.as_bytes(), no_ts.as_bytes()));
        let spaced = "{ \"mode\" : \"active\",\n \"results\" : {}, \"state\":\"wait_for_agent_lock\", \"timestamp\": 5 }\n";
        assert!(same_except_timestamp(IDLE.as_bytes(), spaced.as_bytes()));
    }

    #[test]
    fn any_other_difference_counts() {
        for other in [
            r#"{"state":"active","mode":"active","results":{},"timestamp":1}"#,
            r#"{"state":"wait_for_agent_lock","mode":"maintenance","results":{},"timestamp":1}"#,
            r#"{"state":"wait_for_agent_lock","mode":"active","results":{"x":{"exit_code":0}},"timestamp":1}"#,
            r#"{"state":"wait_for_agent_lock","mode":"active","timestamp":1}"#,
            r#"{"state":"wait_for_agent_lock","mode":"active","results":{},"extra":null}"#,
            r#"{"state":"wait_for_agent_lock","mode":"active","results":[],"timestamp":1}"#,
        ] {
            assert!(
                !same_except_timestamp(IDLE.as_bytes(), other.as_bytes()),
                "{other}"
            );
        }
    }

    #[test]
    fn scalars_compare_with_their_type_and_nested_timestamps_count() {
        let a = r#"{"results":{"u":{"exit_code":0,"timestamp":1}},"timestamp":1}"#;
        let b = r#"{"results":{"u":{"exit_code":"0","timestamp":1}},"timestamp":2}"#;
        let c = r#"{"results":{"u":{"exit_code":0,"timestamp":2}},"timestamp":2}"#;
        let d = r#"{"results":{"u":{"exit_code":0.0,"timestamp":1}},"timestamp":2}"#;
        assert!(
            !same_except_timestamp(a.as_bytes(), b.as_bytes()),
            "0 vs \"0\""
        );
        assert!(!same_except_timestamp(a.as_bytes(), c.as_bytes()), "nested");
        assert!(
            !same_except_timestamp(a.as_bytes(), d.as_bytes()),
            "0 vs 0.0"
        );
        let e = r#"{"list":[1,2],"timestamp":1}"#;
        let f = r#"{"list":[2,1],"timestamp":1}"#;
        assert!(
            !same_except_timestamp(e.as_bytes(), f.as_bytes()),
            "array order"
        );
    }

    #[test]
    fn what_does_not_parse_as_an_object_is_different() {
        let dup = r#"{"mode":"active","mode":"active","results":{},"state":"wait_for_agent_lock"}"#;
        for bad in [
            "",
            "not json",
            "[1,2]",
            "3",
            "null",
            dup,
            &IDLE[..IDLE.len() - 1],
        ] {
            assert!(
                !same_except_timestamp(IDLE.as_bytes(), bad.as_bytes()),
                "{bad:?}"
            );
            assert!(
                !same_except_timestamp(bad.as_bytes(), bad.as_bytes()),
                "{bad:?}"
            );
        }
        let big = format!(r#"{{"pad":"{}","timestamp":1}}"#, "x".repeat(MAX_JSON));
        assert!(!same_except_timestamp(big.as_bytes(), big.as_bytes()));
        assert!(!same_except_timestamp(&[0xff, 0xfe], &[0xff, 0xfe]));
    }

    #[test]
    fn only_lrm_status_renames_and_writes_get_the_rule() {
        let p = TreePath::parse;
        for (path, yes) in [
            ("nodes/pve1/lrm_status", true),
            ("nodes/pve1/lrm_status.tmp.123", false),
            ("nodes/lrm_status", false),
            ("nodes/pve1/x/lrm_status", false),
            ("ha/manager_status", false),
            ("lrm_status", false),
        ] {
            assert_eq!(is_lrm_status(&p(path)), yes, "{path}");
        }
        let bound = DEFAULT_BOUND;
        let rename = Op::Rename {
            from: p("nodes/pve1/lrm_status.tmp.9"),
            to: p("nodes/pve1/lrm_status"),
        };
        assert!(rule_for(&rename, bound).is_some_and(|r| r.bound == bound));
        assert!(
            rule_for(&rename, Duration::ZERO).is_none(),
            "0 turns it off"
        );
        let write = Op::Write {
            path: p("nodes/pve1/lrm_status"),
            offset: 0,
            data: vec![],
            truncate: true,
        };
        assert!(rule_for(&write, bound).is_some());
        let away = Op::Rename {
            from: p("nodes/pve1/lrm_status"),
            to: p("nodes/pve1/old"),
        };
        assert!(rule_for(&away, bound).is_none());
        for op in [
            Op::Create {
                path: p("nodes/pve1/lrm_status"),
            },
            Op::Delete {
                path: p("nodes/pve1/lrm_status"),
            },
            Op::Mtime {
                path: p("nodes/pve1/lrm_status"),
                mtime: lwcfs_memdb::Mtime(1),
            },
        ] {
            assert!(rule_for(&op, bound).is_none(), "{op:?}");
        }
    }

    /// The daemon's wiring: a `file_set_contents` of `nodes/<n>/lrm_status` through the
    /// service carries the rule, so timestamp-only rewrites commit nothing while the tree (and
    /// every read) has the newest content; a real change commits.
    #[test]
    fn service_defers_timestamp_only_lrm_status_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.db");
        let tree = Tree::new(lwcfs_backend::open(&path, Mtime(1)).unwrap().memdb);
        let wcfg = WriterConfig {
            commit_delay: Duration::from_millis(10),
            hold_bound: Duration::from_secs(5),
        };
        let writer = Arc::new(lwcfs_backend::spawn(&path, tree.clone(), wcfg).unwrap());
        let shared = Shared::new(
            tree,
            writer.clone(),
            Arc::new(Status::new("n1".into(), 1, 1, false)),
            Arc::new(KernelCache::new()),
            Duration::from_secs(60),
        );
        let svc = Service::new(
            shared,
            None,
            ServiceConfig {
                nodename: "n1".into(),
                lock_timeout: 120,
                gid: 0,
            },
        );
        let nodes = svc.mkdir(KIno::ROOT, "nodes").unwrap().ino;
        let n1 = svc.mkdir(nodes, "n1").unwrap().ino;
        let set = |json: &str| {
            let (a, fh) = svc.create(n1, "lrm_status.tmp.1", libc::O_WRONLY).unwrap();
            svc.write(a.ino, fh, 0, json.as_bytes()).unwrap();
            svc.release(a.ino, fh);
            svc.rename(n1, "lrm_status.tmp.1", n1, "lrm_status", false)
                .unwrap();
        };
        let status = |ts: u32, mode: &str| {
            format!(
                r#"{{"mode":"{mode}","results":{{}},"state":"wait_for_agent_lock","timestamp":{ts}}}"#
            )
        };
        set(&status(1, "active"));
        writer.flush().unwrap();
        let base = writer.stats();
        for ts in 2..5 {
            set(&status(ts, "active"));
            std::thread::sleep(Duration::from_millis(40));
        }
        let s = writer.stats();
        assert_eq!(s.transactions, base.transactions, "{s:?}");
        assert!(s.deferred_rewrites >= 1, "{s:?}");
        let ino = svc.lookup(n1, "lrm_status").unwrap().ino;
        let fh = svc.open(ino, libc::O_RDONLY).unwrap();
        assert_eq!(
            svc.read(ino, fh, 0, 4096).unwrap(),
            status(4, "active").as_bytes()
        );
        svc.release(ino, fh);

        set(&status(5, "maintenance"));
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while writer.stats().transactions == base.transactions {
            assert!(
                std::time::Instant::now() < end,
                "the real change is committed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        writer.shutdown().unwrap();
    }
}
