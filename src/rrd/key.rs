//! From an RRD status key and its value to the file and the update string C writes
//! (status.md §3.1, §3.4; `status.c` `update_rrd_data`). Pure.
//!
//! Since PVE 9 every format goes into the `pve-*-9.0` files:
//!
//! | key prefix | file | skipped fields | adjustment |
//! |---|---|---|---|
//! | `pve2-node/`, `pve-node-*` | `pve-node-9.0/<node>` | 2 | `pve2-node/`: `:U` ×7; other than `pve-node-9.0/`: keep 19 |
//! | `pve2.3-vm/`, `pve-vm-*` | `pve-vm-9.0/<vmid>` | 4 | `pve2.3-vm/`: `:U` ×7; other than `pve-vm-9.0/`: keep 17 |
//! | `pve2-storage/`, `pve-storage-*` | `pve-storage-9.0/<node>/<storage>` | 0 | other than `pve-storage-9.0/`: keep 2 |

use std::path::PathBuf;

use super::schema::Kind;

/// Columns of the pre-9 formats, after the timestamp.
const NODE_COLUMNS_PVE2: usize = 12;
const VM_COLUMNS_PVE2: usize = 10;

/// How an update is fitted to the 9.0 layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `pve2-node`, `pve2.3-vm`: append this many `U` columns.
    Pad(usize),
    /// The 9.0 format itself, or `pve2-storage` (same columns): as is.
    Current,
    /// An unknown, presumably newer format: keep the timestamp and this many columns.
    Keep(usize),
}

/// Where an update goes and how it is fitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    /// The object: node name, VMID, or `<node>/<storage>`.
    pub id: String,
    pub format: Format,
}

/// A key C refuses ("RRD update error: unknown/wrong key").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown/wrong key {key}")]
pub struct KeyError {
    pub key: String,
}

impl Target {
    /// Parse an RRD key (the status key without its `rrd/` prefix).
    ///
    /// As C: the id is everything after the first `/`; node and VM ids must be non-empty and
    /// contain no `/`; storage ids are `<node>/<storage>` with a non-empty storage and no
    /// further `/`; `pve2-vm/` (without `.3`) is not a known prefix. Stricter than C (which
    /// would write outside the layout): empty node names in storage ids, `.` and `..` as a
    /// path component, and control characters are refused.
    pub fn parse(key: &str) -> Result<Target, KeyError> {
        let err = || KeyError {
            key: key.to_owned(),
        };
        let id = match key.split_once('/') {
            Some((_, id)) => id,
            None => "",
        };
        let (kind, format) = if key.starts_with("pve2-node/") || key.starts_with("pve-node-") {
            let format = if key.starts_with("pve2-node/") {
                Format::Pad(Kind::Node.columns() - NODE_COLUMNS_PVE2)
            } else if key.starts_with("pve-node-9.0/") {
                Format::Current
            } else {
                Format::Keep(Kind::Node.columns())
            };
            (Kind::Node, format)
        } else if key.starts_with("pve2.3-vm/") || key.starts_with("pve-vm-") {
            let format = if key.starts_with("pve2.3-vm/") {
                Format::Pad(Kind::Vm.columns() - VM_COLUMNS_PVE2)
            } else if key.starts_with("pve-vm-9.0/") {
                Format::Current
            } else {
                Format::Keep(Kind::Vm.columns())
            };
            (Kind::Vm, format)
        } else if key.starts_with("pve2-storage/") || key.starts_with("pve-storage-") {
            let format = if key.starts_with("pve-storage-") && !key.starts_with("pve-storage-9.0/")
            {
                Format::Keep(Kind::Storage.columns())
            } else {
                Format::Current
            };
            (Kind::Storage, format)
        } else {
            return Err(err());
        };
        let parts: Vec<&str> = id.split('/').collect();
        let want = if kind == Kind::Storage { 2 } else { 1 };
        if parts.len() != want
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == ".." || p.chars().any(char::is_control))
        {
            return Err(err());
        }
        Ok(Target {
            kind,
            id: id.to_owned(),
            format,
        })
    }

    /// The file, relative to the RRD base directory.
    pub fn rel_path(&self) -> PathBuf {
        PathBuf::from(self.kind.dir()).join(&self.id)
    }

    /// Leading fields that are live data, not archived (uptime, status, …): 2 for a node, 4
    /// for a guest, 0 for a storage. The update string starts at the timestamp after them.
    pub fn skip(&self) -> usize {
        match self.kind {
            Kind::Node => 2,
            Kind::Vm => 4,
            Kind::Storage => 0,
        }
    }

    /// The string handed to `rrd_update` / rrdcached for `value` (the value up to its first
    /// NUL): the skipped fields dropped, then padded with `:U` or cut to the known columns.
    ///
    /// Where C differs, on values with fewer columns than an unknown newer format keeps:
    /// C chops the last character of the value; here it is kept whole.
    pub fn update_string(&self, value: &[u8]) -> Vec<u8> {
        let value = match value.iter().position(|&b| b == 0) {
            Some(n) => &value[..n],
            None => value,
        };
        let data = skip_fields(value, self.skip());
        match self.format {
            Format::Current => data.to_vec(),
            Format::Pad(n) => {
                let mut s = data.to_vec();
                for _ in 0..n {
                    s.extend_from_slice(b":U");
                }
                s
            }
            // The timestamp plus `keep` columns: cut at the separator after them.
            Format::Keep(keep) => match data
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b':')
                .nth(keep)
            {
                Some((at, _)) => data[..at].to_vec(),
                None => data.to_vec(),
            },
        }
    }
}

/// The rest of `data` after `count` `:` separators (the empty rest if it has fewer), as C's
/// `rrd_skip_data`.
fn skip_fields(data: &[u8], count: usize) -> &[u8] {
    if count == 0 {
        return data;
    }
    match data
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b':')
        .nth(count - 1)
    {
        Some((at, _)) => &data[at + 1..],
        None => &data[data.len()..],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn target(key: &str) -> Target {
        Target::parse(key).unwrap_or_else(|e| panic!("{e}"))
    }

    #[track_caller]
    fn upd(key: &str, value: &str) -> String {
        String::from_utf8(target(key).update_string(value.as_bytes())).unwrap()
    }

    #[test]
    fn keys_and_files() {
        let t = target("pve2-node/node1");
        assert_eq!((t.kind, t.id.as_str()), (Kind::Node, "node1"));
        assert_eq!(t.rel_path(), PathBuf::from("pve-node-9.0/node1"));
        assert_eq!(t.format, Format::Pad(7));
        assert_eq!(target("pve-node-9.0/n").format, Format::Current);
        assert_eq!(target("pve-node-9.2/n").format, Format::Keep(19));
        assert_eq!(
            target("pve-node-10.0/n").rel_path(),
            PathBuf::from("pve-node-9.0/n")
        );

        let t = target("pve2.3-vm/100");
        assert_eq!((t.kind, t.format), (Kind::Vm, Format::Pad(7)));
        assert_eq!(t.rel_path(), PathBuf::from("pve-vm-9.0/100"));
        assert_eq!(target("pve-vm-9.0/100").format, Format::Current);
        assert_eq!(target("pve-vm-9.1/100").format, Format::Keep(17));

        let t = target("pve2-storage/node1/local");
        assert_eq!((t.kind, t.format), (Kind::Storage, Format::Current));
        assert_eq!(t.rel_path(), PathBuf::from("pve-storage-9.0/node1/local"));
        assert_eq!(target("pve-storage-9.0/n/s").format, Format::Current);
        assert_eq!(target("pve-storage-9.5/n/s").format, Format::Keep(2));
    }

    #[test]
    fn keys_c_refuses() {
        for k in [
            "pve2-vm/100", // C knows pve2.3-vm only
            "pve2-node/",
            "pve2-node/a/b",
            "pve-node-9.0",
            "pve-nodeX",
            "pve2.3-vm/",
            "pve2-storage/node1",
            "pve2-storage/node1/",
            "pve2-storage/a/b/c",
            "unknown/x",
            "",
        ] {
            assert!(Target::parse(k).is_err(), "{k}");
        }
    }

    /// Stricter than C: nothing that would leave the layout.
    #[test]
    fn keys_outside_the_layout_are_refused() {
        for k in [
            "pve2-node/..",
            "pve2-node/.",
            "pve2-storage/../x",
            "pve2-storage//local",
            "pve2.3-vm/1\n2",
        ] {
            assert!(Target::parse(k).is_err(), "{k:?}");
        }
    }

    /// status.md §3.1: the pve2 node example, 15 fields: uptime and subscription level
    /// skipped, 7 `U` added for the 9.0 columns.
    #[test]
    fn old_node_format_is_padded_like_c() {
        let v = "86400::1700000000:0.25:8:0.031:0.0012:16663535616:2146304000:0:0:\
                 100861726720:3013935104:123456:654321\0";
        assert_eq!(
            upd("pve2-node/pve1", v),
            "1700000000:0.25:8:0.031:0.0012:16663535616:2146304000:0:0:100861726720:\
             3013935104:123456:654321:U:U:U:U:U:U:U"
        );
        // 1 timestamp + 12 + 7 columns.
        assert_eq!(upd("pve2-node/pve1", v).split(':').count(), 20);
    }

    #[test]
    fn vm_formats() {
        let old = "3600:vm100:running:0:1700000000:2:0.5:1024:512:4096:0:10:20:30:40";
        assert_eq!(
            upd("pve2.3-vm/100", old),
            "1700000000:2:0.5:1024:512:4096:0:10:20:30:40:U:U:U:U:U:U:U"
        );
        let new = format!("{old}:100:1:2:3:4:5:6");
        assert_eq!(
            upd("pve-vm-9.0/100", &new),
            "1700000000:2:0.5:1024:512:4096:0:10:20:30:40:100:1:2:3:4:5:6"
        );
        // A newer format with two more columns: cut to the 17 known ones.
        assert_eq!(
            upd("pve-vm-9.3/100", &format!("{new}:7:8")),
            upd("pve-vm-9.0/100", &new)
        );
    }

    #[test]
    fn storage_and_newer_formats() {
        assert_eq!(
            upd("pve2-storage/n/s", "1700000000:100:50\0"),
            "1700000000:100:50"
        );
        assert_eq!(
            upd("pve-storage-9.0/n/s", "1700000000:100:50"),
            "1700000000:100:50"
        );
        assert_eq!(
            upd("pve-storage-10.0/n/s", "1700000000:100:50:7:8"),
            "1700000000:100:50"
        );
        // Fewer columns than kept: kept whole (C chops the last character).
        assert_eq!(
            upd("pve-storage-10.0/n/s", "1700000000:100"),
            "1700000000:100"
        );
        // Fewer fields than skipped: nothing left, librrd then refuses the update.
        assert_eq!(upd("pve-node-9.0/n", "1"), "");
        // Only the value up to its first NUL counts.
        assert_eq!(upd("pve2-storage/n/s", "1:2:3\0junk"), "1:2:3");
    }

    #[test]
    fn skip_is_rrd_skip_data() {
        assert_eq!(skip_fields(b"a:b:c", 0), b"a:b:c");
        assert_eq!(skip_fields(b"a:b:c", 1), b"b:c");
        assert_eq!(skip_fields(b"a:b:c", 2), b"c");
        assert_eq!(skip_fields(b"a:b:c", 3), b"");
        assert_eq!(skip_fields(b"::x", 2), b"x");
    }
}
