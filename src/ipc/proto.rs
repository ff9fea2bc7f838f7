//! The `pve2` request and response format (local.md §10.2, §10.4; `server.c`), pure.
//!
//! A request is a 16-byte libqb header (`id` i32 @0, `size` i32 @8, little-endian) and a
//! payload laid out per operation. [`decode`] applies C's checks in C's order, read-only
//! refusals first where C puts them first, and returns the operation with borrowed fields or
//! the errno C answers. A response is a 24-byte header (`id` @0, `size` @8, `error` @16) and,
//! only on success, the payload.
//!
//! Where C reads past a short request (a fixed part longer than what was sent), lwcfs answers
//! `EINVAL` instead; where C forces a NUL over the last byte of a string, the string simply
//! ends there (same result, nothing is written into the request).

use crate::jsontext::c_str;

pub const REQUEST_HEADER: usize = 16;
pub const RESPONSE_HEADER: usize = 24;
/// The largest request lwcfs reads: the Perl client's buffer (`IPCC.xs`: 1 MiB). The server
/// gives every connection buffers at least this big, so a request header claiming up to this
/// size never makes it read outside the shared memory.
pub const MAX_REQUEST: usize = 1 << 20;

/// Operation numbers (`cfs-ipc-ops.h`).
pub mod op {
    pub const GET_FS_VERSION: i32 = 1;
    pub const GET_CLUSTER_INFO: i32 = 2;
    pub const GET_GUEST_LIST: i32 = 3;
    pub const SET_STATUS: i32 = 4;
    pub const GET_STATUS: i32 = 5;
    pub const GET_CONFIG: i32 = 6;
    pub const LOG_CLUSTER_MSG: i32 = 7;
    pub const GET_CLUSTER_LOG: i32 = 8;
    pub const GET_RRD_DUMP: i32 = 10;
    pub const GET_GUEST_CONFIG_PROPERTY: i32 = 11;
    pub const VERIFY_TOKEN: i32 = 12;
    pub const GET_GUEST_CONFIG_PROPERTIES: i32 = 13;
}

/// A decoded request. Strings are C strings (bytes before the first NUL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    FsVersion,
    ClusterInfo,
    GuestList,
    SetStatus {
        key: &'a [u8],
        value: &'a [u8],
    },
    GetStatus {
        key: &'a [u8],
        node: &'a [u8],
    },
    GetConfig {
        path: &'a [u8],
    },
    LogClusterMsg {
        priority: u8,
        ident: &'a [u8],
        tag: &'a [u8],
        msg: &'a [u8],
    },
    GetClusterLog {
        max: u32,
        user: &'a [u8],
    },
    RrdDump,
    /// Ops 11 and 13: `vmid` 0 = every guest.
    GuestProperties {
        vmid: u32,
        props: Vec<&'a [u8]>,
    },
    VerifyToken {
        token: &'a [u8],
    },
}

/// The `id` field of a request (0 if it is shorter than 4 bytes).
pub fn request_id(msg: &[u8]) -> i32 {
    msg.get(..4)
        .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The `size` field of a request (0 if it is shorter than 12 bytes).
pub fn request_size(msg: &[u8]) -> i32 {
    msg.get(8..12)
        .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u32_at(msg: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]])
}

/// C `path_is_private`: `priv` or below, or `nodes/<x>/priv` or below (leading slashes
/// ignored). lwcfs also refuses what the tree would resolve to a private path through doubled
/// slashes (`nodes/n1//priv/x`, which C serves to read-only clients).
pub fn path_is_private(path: &[u8]) -> bool {
    let p = {
        let n = path.iter().take_while(|&&b| b == b'/').count();
        &path[n..]
    };
    let comp_is = |rest: &[u8], name: &[u8]| {
        rest.starts_with(name) && matches!(rest.get(name.len()), None | Some(b'/'))
    };
    if comp_is(p, b"priv") {
        return true;
    }
    if let Some(rest) = p.strip_prefix(b"nodes/") {
        if let Some(slash) = rest.iter().position(|&b| b == b'/') {
            if comp_is(&rest[slash..], b"/priv") {
                return true;
            }
        }
    }
    let comps: Vec<&[u8]> = p.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    matches!(comps.as_slice(), [first, ..] if *first == b"priv")
        || matches!(comps.as_slice(), [n, _, p, ..] if *n == b"nodes" && *p == b"priv")
}

/// Decode a request of exactly `msg.len()` bytes (its header's `size`), header included, for
/// a connection that is `read_only` or not. `vm_exists` answers whether a VMID is in the
/// guest list (ops 11 and 13 check it between their other checks). `Err` is a positive errno.
pub fn decode<'a>(
    msg: &'a [u8],
    read_only: bool,
    vm_exists: &dyn Fn(u32) -> bool,
) -> Result<Request<'a>, i32> {
    use libc::{ECHRNG, EINVAL, EPERM};
    let size = msg.len();
    if size < REQUEST_HEADER {
        return Err(EINVAL);
    }
    let bare = |r: Request<'a>| {
        if size == REQUEST_HEADER {
            Ok(r)
        } else {
            Err(EINVAL)
        }
    };
    match request_id(msg) {
        op::GET_FS_VERSION => bare(Request::FsVersion),
        op::GET_CLUSTER_INFO => bare(Request::ClusterInfo),
        op::GET_GUEST_LIST => bare(Request::GuestList),
        op::GET_RRD_DUMP => bare(Request::RrdDump),
        op::SET_STATUS => {
            // name[256] at 16, then the value.
            if read_only {
                return Err(EPERM);
            }
            if size < 16 + 256 {
                return Err(EINVAL);
            }
            Ok(Request::SetStatus {
                key: c_str(&msg[16..16 + 255]),
                value: &msg[16 + 256..],
            })
        }
        op::GET_STATUS => {
            // name[256] at 16, nodename[256] at 272.
            if size < 16 + 512 {
                return Err(EINVAL);
            }
            Ok(Request::GetStatus {
                key: c_str(&msg[16..16 + 255]),
                node: c_str(&msg[272..272 + 255]),
            })
        }
        op::GET_CONFIG => {
            if size <= 16 {
                return Err(EINVAL);
            }
            let path = c_str(&msg[16..size - 1]);
            if read_only && path_is_private(path) {
                return Err(EPERM);
            }
            Ok(Request::GetConfig { path })
        }
        op::LOG_CLUSTER_MSG => {
            // priority u8 @16, ident_len u8 @17, tag_len u8 @18 (both with their NUL), then
            // ident, tag and the message.
            if read_only {
                return Err(EPERM);
            }
            if size < 19 {
                return Err(EINVAL);
            }
            let (il, tl) = (usize::from(msg[17]), usize::from(msg[18]));
            let data = &msg[19..];
            if data.len() < il + tl + 1 || il == 0 || tl == 0 {
                return Err(EINVAL);
            }
            if data[il - 1] != 0 || data[il + tl - 1] != 0 {
                return Err(EINVAL);
            }
            // C checks the byte after the request instead of the last one (local.md
            // Appendix A #4), which normally passes: a message without its NUL is accepted.
            Ok(Request::LogClusterMsg {
                priority: msg[16],
                ident: c_str(&data[..il]),
                tag: c_str(&data[il..il + tl]),
                msg: c_str(&data[il + tl..]),
            })
        }
        op::GET_CLUSTER_LOG => {
            // max_entries u32 @16, 3 reserved u32, the user string @32.
            if size <= 32 {
                return Err(EINVAL);
            }
            let max = u32_at(msg, 16);
            Ok(Request::GetClusterLog {
                max: if max == 0 { 50 } else { max },
                user: c_str(&msg[32..size - 1]),
            })
        }
        op::GET_GUEST_CONFIG_PROPERTY => {
            // vmid u32 @16, the property @20.
            let vmid = guest_vmid(msg, 20, vm_exists)?;
            if size <= 20 {
                return Err(EINVAL);
            }
            Ok(Request::GuestProperties {
                vmid,
                props: vec![c_str(&msg[20..size - 1])],
            })
        }
        op::GET_GUEST_CONFIG_PROPERTIES => {
            // vmid u32 @16, num_props u8 @20, NUL-terminated properties @21.
            let vmid = guest_vmid(msg, 21, vm_exists)?;
            let n = msg[20];
            let mut rest = &msg[21..];
            if n == 0 || rest.len() <= 1 {
                return Err(EINVAL);
            }
            let mut props = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let Some(len) = rest.iter().position(|&b| b == 0) else {
                    return Err(EINVAL);
                };
                if len == 0 || !rest[0].is_ascii_lowercase() {
                    return Err(EINVAL);
                }
                props.push(&rest[..len]);
                rest = &rest[len + 1..];
            }
            if !rest.is_empty() {
                return Err(EINVAL);
            }
            Ok(Request::GuestProperties { vmid, props })
        }
        op::VERIFY_TOKEN => {
            // The token line and its NUL.
            if size < 18 {
                return Err(EINVAL);
            }
            let token = &msg[16..size - 1];
            if token.is_empty() || token.contains(&b'\n') {
                return Err(EINVAL);
            }
            if msg[size - 1] != 0 || token.contains(&0) {
                return Err(EINVAL);
            }
            Ok(Request::VerifyToken { token })
        }
        _ => Err(ECHRNG),
    }
}

/// The VMID of ops 11/13 with C's checks: 1..99 → `EINVAL`, 100 or more and not a guest →
/// `ENOENT`. `fixed` is the length of the op's fixed part (a shorter request: `EINVAL`).
fn guest_vmid(msg: &[u8], fixed: usize, vm_exists: &dyn Fn(u32) -> bool) -> Result<u32, i32> {
    if msg.len() < fixed {
        return Err(libc::EINVAL);
    }
    let vmid = u32_at(msg, 16);
    if (1..100).contains(&vmid) {
        return Err(libc::EINVAL);
    }
    if vmid >= 100 && !vm_exists(vmid) {
        return Err(libc::ENOENT);
    }
    Ok(vmid)
}

/// The 24-byte response header: `id`, `size` = 24 + payload, `error` = 0 or −errno.
pub fn response_header(id: i32, error: i32, payload_len: usize) -> [u8; RESPONSE_HEADER] {
    let mut h = [0u8; RESPONSE_HEADER];
    h[0..4].copy_from_slice(&id.to_le_bytes());
    let size = (RESPONSE_HEADER + payload_len).min(i32::MAX as usize) as i32;
    h[8..12].copy_from_slice(&size.to_le_bytes());
    h[16..20].copy_from_slice(&error.to_le_bytes());
    h
}

/// A request as a client builds it: header + payload (tests and clients).
pub fn request(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; REQUEST_HEADER];
    m[0..4].copy_from_slice(&id.to_le_bytes());
    m[8..12].copy_from_slice(&((REQUEST_HEADER + payload.len()) as i32).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{ECHRNG, EINVAL, ENOENT, EPERM};

    fn dec(id: i32, payload: &[u8], ro: bool) -> Result<Request<'static>, i32> {
        let m: &'static [u8] = Box::leak(request(id, payload).into_boxed_slice());
        decode(m, ro, &|vmid| vmid == 100 || vmid == 4294967295)
    }

    fn name256(s: &[u8]) -> Vec<u8> {
        let mut v = s.to_vec();
        v.resize(256, 0);
        v
    }

    #[test]
    fn header_only_ops_want_exactly_16_bytes() {
        assert_eq!(dec(op::GET_FS_VERSION, b"", false), Ok(Request::FsVersion));
        assert_eq!(dec(op::GET_FS_VERSION, b"x", false), Err(EINVAL));
        assert_eq!(
            dec(op::GET_CLUSTER_INFO, b"", true),
            Ok(Request::ClusterInfo)
        );
        assert_eq!(dec(op::GET_GUEST_LIST, b"\0", false), Err(EINVAL));
        assert_eq!(dec(op::GET_RRD_DUMP, b"", true), Ok(Request::RrdDump));
        assert_eq!(dec(9, b"", false), Err(ECHRNG));
        assert_eq!(dec(0, b"", false), Err(ECHRNG));
        assert_eq!(dec(14, b"", false), Err(ECHRNG));
        assert_eq!(decode(&[1, 0, 0, 0], false, &|_| false), Err(EINVAL));
    }

    #[test]
    fn set_status_layout_and_checks() {
        let mut p = name256(b"kv/foo");
        p.extend_from_slice(b"val\0");
        assert_eq!(
            dec(op::SET_STATUS, &p, false),
            Ok(Request::SetStatus {
                key: b"kv/foo",
                value: b"val\0"
            })
        );
        assert_eq!(dec(op::SET_STATUS, &p, true), Err(EPERM));
        assert_eq!(dec(op::SET_STATUS, b"short", true), Err(EPERM), "ro first");
        assert_eq!(dec(op::SET_STATUS, &p[..255], false), Err(EINVAL));
        // Byte 255 of the name is forced to NUL; an empty value is a delete.
        let full = vec![b'k'; 256];
        assert_eq!(
            dec(op::SET_STATUS, &full, false),
            Ok(Request::SetStatus {
                key: &[b'k'; 255],
                value: b""
            })
        );
    }

    #[test]
    fn get_status_wants_two_names() {
        let mut p = name256(b"kv/foo");
        p.extend(name256(b"node2"));
        assert_eq!(
            dec(op::GET_STATUS, &p, true),
            Ok(Request::GetStatus {
                key: b"kv/foo",
                node: b"node2"
            })
        );
        assert_eq!(dec(op::GET_STATUS, &p[..511], false), Err(EINVAL));
    }

    #[test]
    fn get_config_paths() {
        assert_eq!(
            dec(op::GET_CONFIG, b"/storage.cfg\0", true),
            Ok(Request::GetConfig {
                path: b"/storage.cfg"
            })
        );
        // Without its NUL the last byte is lost (C overwrites it); bytes after a NUL ignored.
        assert_eq!(
            dec(op::GET_CONFIG, b"test.cfgX", false),
            Ok(Request::GetConfig { path: b"test.cfg" })
        );
        assert_eq!(
            dec(op::GET_CONFIG, b"a\0b\0", false),
            Ok(Request::GetConfig { path: b"a" })
        );
        assert_eq!(dec(op::GET_CONFIG, b"", false), Err(EINVAL));
        for p in [
            &b"priv\0"[..],
            b"priv/token.cfg\0",
            b"//priv/x\0",
            b"nodes/n1/priv/a\0",
            b"nodes/n1//priv/a\0",
            b"priv/missing\0",
        ] {
            assert_eq!(dec(op::GET_CONFIG, p, true), Err(EPERM), "{p:?}");
            assert!(dec(op::GET_CONFIG, p, false).is_ok());
        }
        for p in [&b"privx\0"[..], b"nodes/n1/privx\0", b"nodes/priv\0"] {
            assert!(dec(op::GET_CONFIG, p, true).is_ok(), "{p:?}");
        }
    }

    fn log_payload(prio: u8, ident: &[u8], tag: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut p = vec![prio, ident.len() as u8 + 1, tag.len() as u8 + 1];
        for s in [ident, tag, msg] {
            p.extend_from_slice(s);
            p.push(0);
        }
        p
    }

    #[test]
    fn log_cluster_msg_layout_and_checks() {
        let p = log_payload(6, b"root@pam", b"tag", b"hello");
        assert_eq!(
            dec(op::LOG_CLUSTER_MSG, &p, false),
            Ok(Request::LogClusterMsg {
                priority: 6,
                ident: b"root@pam",
                tag: b"tag",
                msg: b"hello"
            })
        );
        assert_eq!(dec(op::LOG_CLUSTER_MSG, &p, true), Err(EPERM));
        assert_eq!(dec(op::LOG_CLUSTER_MSG, b"", true), Err(EPERM));
        assert_eq!(dec(op::LOG_CLUSTER_MSG, b"", false), Err(EINVAL));
        // No message byte at all.
        let mut none = p.clone();
        none.truncate(3 + 9 + 4);
        assert_eq!(dec(op::LOG_CLUSTER_MSG, &none, false), Err(EINVAL));
        // ident not NUL-terminated where its length says.
        let mut bad = p.clone();
        bad[1] = 5;
        assert_eq!(dec(op::LOG_CLUSTER_MSG, &bad, false), Err(EINVAL));
        let mut zero = p.clone();
        zero[1] = 0;
        assert_eq!(dec(op::LOG_CLUSTER_MSG, &zero, false), Err(EINVAL));
        // A message without its NUL is accepted; an inner NUL cuts it.
        let mut open = p.clone();
        open.pop();
        assert!(matches!(
            dec(op::LOG_CLUSTER_MSG, &open, false),
            Ok(Request::LogClusterMsg { msg: b"hello", .. })
        ));
        let cut = log_payload(6, b"i", b"t", b"ab\0cd");
        assert!(matches!(
            dec(op::LOG_CLUSTER_MSG, &cut, false),
            Ok(Request::LogClusterMsg { msg: b"ab", .. })
        ));
    }

    #[test]
    fn get_cluster_log_layout() {
        let mut p = vec![0u8; 16];
        p[0] = 7;
        p.extend_from_slice(b"root@pam\0");
        assert_eq!(
            dec(op::GET_CLUSTER_LOG, &p, true),
            Ok(Request::GetClusterLog {
                max: 7,
                user: b"root@pam"
            })
        );
        p[0] = 0;
        p.truncate(17);
        assert_eq!(
            dec(op::GET_CLUSTER_LOG, &p, false),
            Ok(Request::GetClusterLog { max: 50, user: b"" })
        );
        assert_eq!(dec(op::GET_CLUSTER_LOG, &p[..16], false), Err(EINVAL));
    }

    #[test]
    fn guest_property_checks_in_cs_order() {
        let req = |vmid: u32, prop: &[u8]| {
            let mut p = vmid.to_le_bytes().to_vec();
            p.extend_from_slice(prop);
            dec(op::GET_GUEST_CONFIG_PROPERTY, &p, true)
        };
        assert_eq!(
            req(100, b"lock\0"),
            Ok(Request::GuestProperties {
                vmid: 100,
                props: vec![b"lock"]
            })
        );
        assert_eq!(req(99, b"lock\0"), Err(EINVAL));
        assert_eq!(req(1, b""), Err(EINVAL));
        assert_eq!(req(101, b"lock\0"), Err(ENOENT));
        assert_eq!(req(101, b""), Err(ENOENT), "existence before the length");
        assert_eq!(req(100, b""), Err(EINVAL));
        assert!(req(0, b"\0").is_ok(), "an empty name is accepted");
        assert!(req(4294967295, b"Lock\0").is_ok());
        assert_eq!(
            dec(op::GET_GUEST_CONFIG_PROPERTY, b"\0\0", false),
            Err(EINVAL)
        );
    }

    #[test]
    fn guest_properties_checks() {
        let req = |vmid: u32, n: u8, props: &[u8]| {
            let mut p = vmid.to_le_bytes().to_vec();
            p.push(n);
            p.extend_from_slice(props);
            dec(op::GET_GUEST_CONFIG_PROPERTIES, &p, true)
        };
        assert_eq!(
            req(0, 2, b"lock\0name\0"),
            Ok(Request::GuestProperties {
                vmid: 0,
                props: vec![b"lock", b"name"]
            })
        );
        assert_eq!(req(0, 0, b"lock\0"), Err(EINVAL));
        assert_eq!(req(0, 1, b"\0"), Err(EINVAL));
        assert_eq!(req(0, 1, b"a"), Err(EINVAL));
        assert_eq!(req(0, 2, b"lock\0\0"), Err(EINVAL));
        assert_eq!(req(0, 1, b"Lock\0"), Err(EINVAL));
        assert_eq!(req(0, 1, b"1x\0"), Err(EINVAL));
        assert_eq!(req(0, 1, b"lock\0name\0"), Err(EINVAL), "leftover");
        assert_eq!(req(0, 2, b"lock\0name"), Err(EINVAL), "unterminated");
        assert_eq!(req(50, 1, b"lock\0"), Err(EINVAL));
        assert_eq!(req(200, 1, b"lock\0"), Err(ENOENT));
        assert_eq!(
            dec(op::GET_GUEST_CONFIG_PROPERTIES, b"\0\0\0\0", false),
            Err(EINVAL)
        );
    }

    #[test]
    fn verify_token_checks() {
        assert_eq!(
            dec(op::VERIFY_TOKEN, b"root@pam!t 123\0", true),
            Ok(Request::VerifyToken {
                token: b"root@pam!t 123"
            })
        );
        assert_eq!(dec(op::VERIFY_TOKEN, b"\0", false), Err(EINVAL));
        assert_eq!(dec(op::VERIFY_TOKEN, b"", false), Err(EINVAL));
        assert_eq!(dec(op::VERIFY_TOKEN, b"a\nb\0", false), Err(EINVAL));
        assert_eq!(dec(op::VERIFY_TOKEN, b"ab", false), Err(EINVAL));
        assert_eq!(dec(op::VERIFY_TOKEN, b"a\0b\0", false), Err(EINVAL));
    }

    #[test]
    fn response_header_layout() {
        let h = response_header(6, -2, 0);
        assert_eq!(
            h,
            [6, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 254, 255, 255, 255, 0, 0, 0, 0]
        );
        assert_eq!(&response_header(1, 0, 100)[8..12], &124i32.to_le_bytes());
    }

    #[test]
    fn short_requests_of_every_op_never_panic() {
        for id in -1..16 {
            for len in 0..48 {
                for fill in [0u8, 1, 0xff] {
                    let mut m = request(id, &vec![fill; len]);
                    let _ = decode(&m, false, &|_| true);
                    let _ = decode(&m, true, &|_| false);
                    m.truncate(m.len().min(12));
                    let _ = decode(&m, false, &|_| true);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(
            id in 0i32..16,
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            ro: bool,
        ) {
            let m = request(id, &payload);
            let _ = decode(&m, ro, &|_| true);
            let _ = decode(&m, ro, &|_| false);
        }
    }
}
