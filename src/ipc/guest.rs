//! GET_GUEST_CONFIG_PROPERTY/IES (ops 11, 13; `status.c:769-1055`): properties of the current
//! section of guest configs, as JSON. Pure over the tree.
//!
//! C's scan, kept as it is because clients see it: lines up to the first one starting with `[`
//! (snapshots, pending); `<prop>:` at the start of a line; the value trimmed of surrounding
//! whitespace, a whitespace-only value giving one space, an empty one nothing; lines whose
//! first byte lies outside the range of the properties' first bytes skipped; a property found
//! again replaces the earlier value, and the scan stops once as many repeats as properties
//! were seen. Values escape `\` and `"` as C does, and control characters and invalid UTF-8
//! too (C prints them raw, which is not JSON).

use std::fmt::Write as _;

use lwcfs_memdb::{Memdb, TreePath, VmType};

use crate::jsontext;

/// The JSON text, or the errno: `ENOENT` for a VMID (≥ 100) not in the guest list, `EIO` for
/// a guest whose config cannot be read or is empty.
pub fn properties_json(db: &Memdb, vmid: u32, props: &[&[u8]]) -> Result<String, i32> {
    let (min, max) = first_byte_range(props);
    let mut out = String::from("{\n");
    let list = db.vmlist();
    if vmid >= 100 {
        let e = list.get(vmid).ok_or(libc::ENOENT)?;
        let conf = read_conf(db, &e.node, e.kind, vmid).ok_or(libc::EIO)?;
        print_found(&mut out, &conf, props, vmid, min, max, true);
    } else {
        let mut first = true;
        for (id, e) in list.iter() {
            if let Some(conf) = read_conf(db, &e.node, e.kind, id) {
                first = print_found(&mut out, &conf, props, id, min, max, first);
            }
        }
    }
    out.push_str("\n}\n");
    Ok(out)
}

fn read_conf(db: &Memdb, node: &str, kind: VmType, vmid: u32) -> Option<Vec<u8>> {
    let dir = match kind {
        VmType::Qemu => "qemu-server",
        VmType::Lxc => "lxc",
        VmType::Openvz => "openvz",
    };
    let path = TreePath::parse(&format!("nodes/{node}/{dir}/{vmid}.conf"));
    let data = db.read_path(&path).ok()?;
    if data.is_empty() {
        return None;
    }
    let mut conf = data.to_vec();
    if conf.last() != Some(&b'\n') {
        conf.push(b'\n');
    }
    Some(conf)
}

/// The range of the properties' first bytes, compared as C's signed `char`, starting from
/// `min = 'z'`, `max = 'a'` as C does.
fn first_byte_range(props: &[&[u8]]) -> (i8, i8) {
    let mut min = b'z' as i8;
    let mut max = b'a' as i8;
    for p in props {
        let c = p.first().copied().unwrap_or(0) as i8;
        max = max.max(c);
        min = min.min(c);
    }
    (min, max)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C `_get_property_value_from_line`: the value of `prop` on this line, if the line sets it.
fn value_on_line<'a>(line: &'a [u8], prop: &[u8]) -> Option<&'a [u8]> {
    let n = prop.len();
    if line.len() <= n + 1 || line[n] != b':' || &line[..n] != prop {
        return None;
    }
    let mut start = n + 1;
    let mut end = line.len() - 1;
    while start < end && line[start] != 0 && is_space(line[start]) {
        start += 1;
    }
    if line[start] == 0 {
        return None;
    }
    while end > start && is_space(line[end]) {
        end -= 1;
    }
    Some(jsontext::c_str(&line[start..=end]))
}

/// C `_get_property_values` over a newline-terminated config.
fn scan<'a>(conf: &'a [u8], props: &[&[u8]], min: i8, max: i8) -> Vec<Option<&'a [u8]>> {
    let mut found: Vec<Option<&[u8]>> = vec![None; props.len()];
    let mut repeats: u8 = 0;
    let mut rest = conf;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        let Some(&first) = line.first() else { continue };
        if first == b'[' {
            break;
        }
        if (first as i8) < min || (first as i8) > max {
            continue;
        }
        for (i, p) in props.iter().enumerate() {
            if let Some(v) = value_on_line(line, p) {
                repeats = repeats.wrapping_add(u8::from(found[i].is_some()));
                found[i] = Some(v);
            }
        }
        if usize::from(repeats) == props.len() {
            break;
        }
    }
    found
}

/// C `_print_found_properties`: `"<vmid>":{"p": "v",…}` if anything was found; returns the
/// new `first` flag.
fn print_found(
    out: &mut String,
    conf: &[u8],
    props: &[&[u8]],
    vmid: u32,
    min: i8,
    max: i8,
    mut first: bool,
) -> bool {
    let values = scan(conf, props, min, max);
    let mut any = false;
    for (p, v) in props.iter().zip(&values) {
        let Some(v) = v else { continue };
        if any {
            out.push(',');
        } else {
            if !first {
                out.push_str(",\n");
            }
            first = false;
            let _ = write!(out, "\"{vmid}\":{{");
            any = true;
        }
        jsontext::push_quoted(out, p);
        out.push_str(": \"");
        jsontext::push_escaped(out, v);
        out.push('"');
    }
    if any {
        out.push('}');
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwcfs_memdb::{Ctx, Mtime, NodeId, Op};

    fn db_with(confs: &[(&str, &[u8])]) -> Memdb {
        let mut db = Memdb::new();
        let ctx = Ctx {
            writer: NodeId(0),
            mtime: Mtime(1),
            now: Mtime(1),
        };
        for d in ["nodes", "nodes/vm", "nodes/vm/qemu-server", "nodes/vm/lxc"] {
            db.apply(
                &Op::Mkdir {
                    path: TreePath::parse(d),
                },
                ctx,
            )
            .unwrap();
        }
        for (p, data) in confs {
            let path = TreePath::parse(p);
            db.apply(&Op::Create { path: path.clone() }, ctx).unwrap();
            if !data.is_empty() {
                db.apply(
                    &Op::Write {
                        path,
                        offset: 0,
                        data: data.to_vec(),
                        truncate: false,
                    },
                    ctx,
                )
                .unwrap();
            }
        }
        db
    }

    const CONF100: &[u8] = b"name: test\nlock: backup\nmemory:  2048 \n\n[snap]\nlock: snapshot\n";

    #[test]
    fn cs_examples() {
        let db = db_with(&[
            ("nodes/vm/qemu-server/100.conf", CONF100),
            ("nodes/vm/lxc/101.conf", b"hostname: ct\nlock:\n"),
        ]);
        assert_eq!(
            properties_json(&db, 100, &[b"lock"]).unwrap(),
            "{\n\"100\":{\"lock\": \"backup\"}\n}\n"
        );
        assert_eq!(
            properties_json(&db, 0, &[b"name", b"lock", b"hostname"]).unwrap(),
            "{\n\"100\":{\"name\": \"test\",\"lock\": \"backup\"},\n\"101\":{\"hostname\": \"ct\"}\n}\n"
        );
        assert_eq!(
            properties_json(&db, 100, &[b"memory"]).unwrap(),
            "{\n\"100\":{\"memory\": \"2048\"}\n}\n"
        );
        assert_eq!(
            properties_json(&db, 0, &[b"cores"]).unwrap(),
            "{\n\n}\n",
            "nothing found"
        );
        assert_eq!(properties_json(&db, 102, &[b"lock"]), Err(libc::ENOENT));
    }

    #[test]
    fn value_rules() {
        let db = db_with(&[(
            "nodes/vm/qemu-server/100.conf",
            b"a: \t \nb:\nc:x\\y\"z\td\ne: v\0cut\nf:last-no-newline",
        )]);
        let j = properties_json(&db, 100, &[b"a", b"b", b"c", b"e", b"f"]).unwrap();
        assert_eq!(
            j,
            "{\n\"100\":{\"a\": \" \",\"c\": \"x\\\\y\\\"z\\u0009d\",\"e\": \"v\",\"f\": \
             \"last-no-newline\"}\n}\n"
        );
        serde_json::from_str::<serde_json::Value>(&j).unwrap();
    }

    #[test]
    fn repeats_end_the_scan_as_in_c() {
        let db = db_with(&[(
            "nodes/vm/qemu-server/100.conf",
            b"lock: one\nlock: two\nlock: three\n",
        )]);
        // The second match is a repeat of the only property: C stops there.
        assert_eq!(
            properties_json(&db, 100, &[b"lock"]).unwrap(),
            "{\n\"100\":{\"lock\": \"two\"}\n}\n"
        );
    }

    #[test]
    fn empty_config_is_eio_for_one_guest_and_skipped_for_all() {
        let db = db_with(&[
            ("nodes/vm/qemu-server/100.conf", b""),
            ("nodes/vm/qemu-server/102.conf", b"lock: x\n"),
        ]);
        assert_eq!(properties_json(&db, 100, &[b"lock"]), Err(libc::EIO));
        assert_eq!(
            properties_json(&db, 0, &[b"lock"]).unwrap(),
            "{\n\"102\":{\"lock\": \"x\"}\n}\n"
        );
    }

    #[test]
    fn single_op_names_outside_a_z() {
        let db = db_with(&[(
            "nodes/vm/qemu-server/100.conf",
            b"#comment: c\nLock: L\n1x: one\n: empty name\n",
        )]);
        for (p, v) in [
            (&b"#comment"[..], "c"),
            (b"Lock", "L"),
            (b"1x", "one"),
            (b"", "empty name"),
        ] {
            let j = properties_json(&db, 100, &[p]).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&j).unwrap();
            let name = String::from_utf8(p.to_vec()).unwrap();
            assert_eq!(parsed["100"][name.as_str()], v, "{j}");
        }
    }
}
