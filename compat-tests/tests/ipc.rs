//! The IPC service `pve2` (local.md §10, Appendix C; SEMANTICS.md §5) through Debian's libqb
//! client, against the real daemon: every operation with payloads and errno, malformed
//! requests, read-only and refused clients, clients that vanish, the startup error, and 8
//! clients at full speed for 30 s while FUSE writes run. Needs root: feature `fuse`.
//!
//! Root calls run in this process on a thread inside the daemon's network namespace; other
//! users run `lwcfs-ipcc` through `nsenter` + `setpriv`.
#![cfg(feature = "fuse")]

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libc::{EACCES, ECHRNG, EFBIG, EINVAL, ENOENT, ENOMEM, EPERM};
use lwcfs_compat_tests::ipcc::req::{get_log, get_status, log_msg, padded, set_status};
use lwcfs_compat_tests::ipcc::script::{self, Command as Cmd, Outcome};
use lwcfs_compat_tests::ipcc::{request, Client, Reply};
use lwcfs_compat_tests::sandbox::{wait_until, Daemon, IpcUser, Opts, Sandbox, HOSTNAME};

const IPCC: &str = env!("CARGO_BIN_EXE_lwcfs-ipcc");

const CONF100: &[u8] = b"name: test\nlock: backup\nmemory: 512\n\n[snap]\nlock: snapshot\n";
const TOKENS: &[u8] = b"root@pam!mytoken 01234567-89ab-cdef\nuser@pve!t2 feedbeef\n";

fn storage_cfg() -> Vec<u8> {
    let mut s = b"dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n".to_vec();
    while s.len() < 1024 {
        s.extend_from_slice(b"# padding to one KiB\n");
    }
    s.truncate(1024);
    s
}

/// A small Proxmox-like tree, written as root through the mount.
fn populate(d: &Daemon) {
    for dir in [
        "priv",
        "nodes",
        "nodes/node1",
        "nodes/node1/priv",
        "nodes/node1/qemu-server",
        "nodes/node1/lxc",
        "ha",
    ] {
        fs::create_dir(d.p(dir)).unwrap();
    }
    for (f, data) in [
        ("storage.cfg", &storage_cfg()[..]),
        ("priv/token.cfg", TOKENS),
        ("nodes/node1/priv/x.key", b"node secret\n"),
        ("nodes/node1/qemu-server/100.conf", CONF100),
        ("nodes/node1/lxc/101.conf", b"hostname: ct\n"),
        ("ha/crm_commands", b""),
    ] {
        fs::write(d.p(f), data).unwrap();
    }
}

/// The daemon's `@pve2` socket is listening (in its network namespace).
fn ipc_listening(d: &Daemon) -> bool {
    fs::read_to_string(format!("/proc/{}/net/unix", d.pid()))
        .map(|t| {
            t.lines()
                .any(|l| l.ends_with(" @pve2") || l.contains(" @pve2@"))
        })
        .unwrap_or(false)
}

/// Start a daemon and wait for its IPC socket (lwcfs listens before it reports ready, see
/// `read_operations_match_the_virtual_files`; the wait lets this file run against C too).
fn start(sb: &Sandbox) -> Daemon<'_> {
    let d = sb.start(&Opts::default());
    assert!(
        wait_until(Duration::from_secs(10), || ipc_listening(&d)),
        "no @pve2 socket in the daemon's network namespace"
    );
    d
}

/// Run `f` with a root client connected inside the daemon's network namespace.
fn root<T: Send>(d: &Daemon, f: impl FnOnce(&mut Client) -> T + Send) -> T {
    d.in_netns(|| {
        let mut c = Client::connect("pve2").expect("connect to @pve2 as root");
        f(&mut c)
    })
}

#[track_caller]
fn call(c: &mut Client, id: i32, payload: &[u8]) -> Result<Vec<u8>, i32> {
    let r = c.call(id, payload).expect("transport");
    assert_eq!(r.id, id, "the reply carries the request id");
    r.ok()
}

#[track_caller]
fn text(r: Result<Vec<u8>, i32>) -> String {
    String::from_utf8(r.expect("success")).expect("utf-8")
}

#[track_caller]
fn json(r: Result<Vec<u8>, i32>) -> serde_json::Value {
    let t = text(r);
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("invalid JSON ({e}): {t}"))
}

/// `pack("VZ*", vmid, prop)`.
fn prop(vmid: u32, name: &[u8]) -> Vec<u8> {
    let mut p = vmid.to_le_bytes().to_vec();
    p.extend_from_slice(name);
    p.push(0);
    p
}

/// `pack("VC", vmid, n) . pack("Z*", p)...`.
fn props(vmid: u32, names: &[&[u8]]) -> Vec<u8> {
    let mut p = vmid.to_le_bytes().to_vec();
    p.push(names.len() as u8);
    for n in names {
        p.extend_from_slice(n);
        p.push(0);
    }
    p
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// local.md §10.4 and §8: the read operations, each equal to its virtual file where there
/// is one, in local mode.
#[test]
fn read_operations_match_the_virtual_files() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = sb.start(&Opts::default());
    assert!(ipc_listening(&d), "listening once the daemon is ready");
    populate(&d);
    root(&d, |c| {
        let version = text(call(c, 1, b""));
        assert_eq!(version.as_bytes(), fs::read(d.p(".version")).unwrap());
        let v: serde_json::Value = serde_json::from_str(&version).unwrap();
        assert!(v["starttime"].as_u64().unwrap() > 1_700_000_000);
        assert_eq!(v["clinfo"], 0);
        assert_eq!(
            v["storage.cfg"], 3,
            "1 at start, +1 for the create, +1 for the write"
        );
        assert_eq!(v["user.cfg"], 1);
        assert_eq!(v["kvstore"][HOSTNAME], serde_json::json!({}));

        let members = text(call(c, 2, b""));
        assert_eq!(
            members,
            format!("{{\n\"nodename\": \"{HOSTNAME}\",\n\"version\": 0\n}}\n")
        );
        assert_eq!(members.as_bytes(), fs::read(d.p(".members")).unwrap());

        let vmlist = text(call(c, 3, b""));
        assert_eq!(vmlist.as_bytes(), fs::read(d.p(".vmlist")).unwrap());
        let l: serde_json::Value = serde_json::from_str(&vmlist).unwrap();
        assert_eq!(l["ids"]["100"]["type"], "qemu");
        assert_eq!(l["ids"]["101"]["type"], "lxc");
        assert_eq!(l["ids"]["101"]["node"], HOSTNAME);

        // The start entry, as C logs it.
        let log = json(call(c, 8, &get_log(0, b"")));
        let first = &log["data"][0];
        assert_eq!(first["uid"], 1);
        assert_eq!(first["pid"], d.pid());
        assert_eq!(first["node"], HOSTNAME);
        assert_eq!(
            (&first["user"], &first["tag"], &first["pri"]),
            (&"root".into(), &"cluster".into(), &6.into())
        );
        assert_eq!(first["msg"], "starting cluster log");
        assert_eq!(
            text(call(c, 8, &get_log(50, b""))).as_bytes(),
            fs::read(d.p(".clusterlog")).unwrap()
        );

        // No RRD data yet: a dump of lines `key:value` and one NUL.
        let rrd = call(c, 10, b"").unwrap();
        assert_eq!(rrd.last(), Some(&0), "{rrd:?}");
    });
}

/// local.md §10.4 GET_CONFIG and Appendix C #4: looked up in the tree, not through the kernel.
#[test]
fn get_config_reads_the_tree() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = start(&sb);
    populate(&d);
    root(&d, |c| {
        let cfg = storage_cfg();
        for p in [
            "storage.cfg",
            "/storage.cfg",
            "//storage.cfg",
            "storage.cfg/",
        ] {
            assert_eq!(call(c, 6, &cstr(p)), Ok(cfg.clone()), "{p}");
        }
        assert_eq!(
            call(c, 6, &cstr("nodes/node1//qemu-server/100.conf")),
            Ok(CONF100.to_vec())
        );
        assert_eq!(
            call(c, 6, &cstr("priv/token.cfg")),
            Ok(TOKENS.to_vec()),
            "root reads priv"
        );
        assert_eq!(
            call(c, 6, &cstr("ha/crm_commands")),
            Ok(vec![]),
            "empty file"
        );
        for p in [
            "missing.cfg",
            "nodes",
            "",
            "/",
            ".",
            "nodes/../storage.cfg",
            "./storage.cfg",
            ".version",
            ".members",
            "local",
            "qemu-server/100.conf",
            "STORAGE.CFG",
        ] {
            assert_eq!(call(c, 6, &cstr(p)), Err(ENOENT), "{p:?}");
        }
        // Without its NUL the last byte is lost, as in C; bytes after a NUL are ignored.
        assert_eq!(call(c, 6, b"storage.cfgX"), Ok(cfg.clone()));
        assert_eq!(call(c, 6, b"storage.cfg\0junk\0"), Ok(cfg.clone()));
        assert_eq!(call(c, 6, b""), Err(EINVAL));
        // A change is visible at once.
        fs::write(d.p("storage.cfg"), b"changed\n").unwrap();
        assert_eq!(call(c, 6, &cstr("storage.cfg")), Ok(b"changed\n".to_vec()));
    });
}

/// local.md §10.4 SET_STATUS / GET_STATUS, status.md §2, Appendix C #5.
#[test]
fn key_value_status() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = start(&sb);
    root(&d, |c| {
        assert_eq!(call(c, 4, &set_status(b"kv/foo", b"one\0")), Ok(vec![]));
        assert_eq!(
            call(c, 5, &get_status(b"kv/foo", b"")),
            Ok(b"one\0".to_vec())
        );
        assert_eq!(
            call(c, 5, &get_status(b"kv/foo", HOSTNAME.as_bytes())),
            Ok(b"one\0".to_vec())
        );
        assert_eq!(call(c, 5, &get_status(b"kv/foo", b"node2")), Err(ENOENT));
        assert_eq!(call(c, 5, &get_status(b"kv/none", b"")), Err(ENOENT));
        let v = json(call(c, 1, b""));
        assert_eq!(v["kvstore"][HOSTNAME]["kv/foo"], 0);
        call(c, 4, &set_status(b"kv/foo", b"two\0")).unwrap();
        call(c, 4, &set_status(b"kv/foo", b"two\0")).unwrap();
        assert_eq!(json(call(c, 1, b""))["kvstore"][HOSTNAME]["kv/foo"], 2);
        // Byte-exact values, inner NULs included; the empty key exists.
        call(c, 4, &set_status(b"bin", b"a\0b\xff")).unwrap();
        assert_eq!(
            call(c, 5, &get_status(b"bin", b"")),
            Ok(b"a\0b\xff".to_vec())
        );
        call(c, 4, &set_status(b"", b"empty key\0")).unwrap();
        assert_eq!(
            call(c, 5, &get_status(b"", b"")),
            Ok(b"empty key\0".to_vec())
        );
        // An empty value deletes.
        assert_eq!(call(c, 4, &set_status(b"kv/foo", b"")), Ok(vec![]));
        assert_eq!(call(c, 5, &get_status(b"kv/foo", b"")), Err(ENOENT));
        assert!(json(call(c, 1, b""))["kvstore"][HOSTNAME]
            .get("kv/foo")
            .is_none());
        // 32 KiB values; one byte more is EFBIG and leaves the old value.
        let big = vec![b'x'; 32768];
        call(c, 4, &set_status(b"kv/big", &big)).unwrap();
        assert_eq!(
            call(c, 4, &set_status(b"kv/big", &[b'y'; 32769])),
            Err(EFBIG)
        );
        assert_eq!(call(c, 5, &get_status(b"kv/big", b"")), Ok(big));
        // nodeip: not a kv key; each change moves the cluster-info version.
        assert_eq!(
            call(c, 4, &set_status(b"nodeip", b"10.99.0.1\0")),
            Ok(vec![])
        );
        assert_eq!(
            call(c, 4, &set_status(b"nodeip", b"10.99.0.1\0")),
            Ok(vec![])
        );
        assert_eq!(call(c, 4, &set_status(b"nodeip", b"")), Err(ENOMEM));
        assert_eq!(call(c, 4, &set_status(b"nodeip", b"no-nul")), Err(ENOMEM));
        assert_eq!(call(c, 5, &get_status(b"nodeip", b"")), Err(ENOENT));
        assert_eq!(json(call(c, 1, b""))["clinfo"], 1);
        assert_eq!(json(call(c, 2, b""))["version"], 1);
        // rrd/: checked as C checks it, never a kv key.
        assert_eq!(
            call(c, 4, &set_status(b"rrd/pve2-node/node1", b"1:2:3\0")),
            Ok(vec![])
        );
        assert_eq!(call(c, 4, &set_status(b"rrd/x", b"")), Err(ENOMEM));
        assert_eq!(call(c, 4, &set_status(b"rrd/x", b"no nul")), Err(ENOMEM));
        assert_eq!(
            call(c, 4, &set_status(b"rrd/x", &[b'1'; 4096])),
            Err(ENOMEM)
        );
        assert_eq!(
            call(c, 5, &get_status(b"rrd/pve2-node/node1", b"")),
            Err(ENOENT)
        );
        // A real update reaches the dump, `.rrd`, and the node's RRD file (librrd directly:
        // no rrdcached listens in the sandbox).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let v = format!(
            "{now}:0:1.5:4:0.25:16000000:8000000:2000000:1000000:100000000:50000000:1000:2000\0"
        );
        assert_eq!(
            call(c, 4, &set_status(b"rrd/pve2-node/node1", v.as_bytes())),
            Ok(vec![])
        );
        let dump = call(c, 10, b"").unwrap();
        let line = format!("pve2-node/node1:{}\n", v.trim_end_matches('\0'));
        assert!(
            String::from_utf8_lossy(&dump).contains(&line),
            "{:?}",
            String::from_utf8_lossy(&dump)
        );
        assert_eq!(fs::read(d.p(".rrd")).unwrap(), &dump[..dump.len() - 1]);
        let file = format!(
            "/proc/{}/root/var/lib/rrdcached/db/pve-node-9.0/node1",
            d.pid()
        );
        assert!(std::path::Path::new(&file).exists(), "{file} missing");
        // A key with a quote still gives valid JSON (C: invalid until removed).
        call(c, 4, &set_status(b"kv/\"quoted\"", b"q\0")).unwrap();
        assert_eq!(
            json(call(c, 1, b""))["kvstore"][HOSTNAME]["kv/\"quoted\""],
            0
        );
        // Short requests.
        assert_eq!(call(c, 4, &[0; 255]), Err(EINVAL));
        assert_eq!(call(c, 5, &[0; 511]), Err(EINVAL));
    });
}

/// status.md §4, §4.8; Appendix C #7: the cluster log over IPC.
#[test]
fn cluster_log() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = start(&sb);
    let me = std::process::id();
    root(&d, |c| {
        let before = Instant::now();
        assert_eq!(
            call(
                c,
                7,
                &log_msg(6, b"root@pam", b"capture", b"hello \"cluster\" log")
            ),
            Ok(vec![])
        );
        assert_eq!(
            call(
                c,
                7,
                &log_msg(3, b"alice@pve", b"t", "ä\ttab\\x".as_bytes())
            ),
            Ok(vec![])
        );
        assert_eq!(
            call(c, 7, &log_msg(8, b"root@pam", b"t", b"never logged")),
            Ok(vec![])
        );
        let log = json(call(c, 8, &get_log(0, b"")));
        let data = log["data"].as_array().unwrap();
        assert_eq!(data.len(), 3, "{log}");
        let (a, b) = (&data[1], &data[0]);
        assert_eq!((a["uid"].as_u64(), b["uid"].as_u64()), (Some(2), Some(3)));
        assert_eq!(a["pid"], me, "the client's pid");
        assert_eq!(a["node"], HOSTNAME);
        assert_eq!(a["user"], "root@pam");
        assert_eq!(a["tag"], "capture");
        assert_eq!(a["pri"], 6);
        assert_eq!(a["msg"], "hello \"cluster\" log");
        assert_eq!(b["msg"], "ä#009tab\\x", "C's escaping, a valid JSON string");
        let t = a["time"].as_u64().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(t <= now && t + before.elapsed().as_secs() + 2 >= now);
        // Exact text of one entry.
        let raw = text(call(c, 8, &get_log(1, b"root@pam")));
        assert_eq!(
            raw,
            format!(
                "{{\n\"data\": [\n{{\"uid\": 2, \"time\": {t}, \"pri\": 6, \"tag\": \"capture\", \
                 \"pid\": {me}, \"node\": \"{HOSTNAME}\", \"user\": \"root@pam\", \"msg\": \
                 \"hello \\\"cluster\\\" log\"}}\n]\n}}\n"
            )
        );
        // Filter by user (exact), limit.
        let alice = json(call(c, 8, &get_log(0, b"alice@pve")));
        assert_eq!(alice["data"].as_array().unwrap().len(), 1);
        let none = text(call(c, 8, &get_log(0, b"nobody")));
        assert_eq!(none, "{\n\"data\": [\n]\n}\n");
        assert_eq!(
            json(call(c, 8, &get_log(2, b"")))["data"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // An ident with a quote, a tag with a newline: still valid JSON.
        call(c, 7, &log_msg(5, b"we\"ird", b"ta\ng", b"m")).unwrap();
        let v = json(call(c, 8, &get_log(1, b"")));
        assert_eq!(v["data"][0]["user"], "we\"ird");
        assert_eq!(v["data"][0]["tag"], "ta\ng");
        // A long message is cut to fit the 4096-byte entry.
        call(c, 7, &log_msg(6, b"root", b"t", &[b'z'; 5000])).unwrap();
        let v = json(call(c, 8, &get_log(1, b"")));
        let m = v["data"][0]["msg"].as_str().unwrap().len();
        assert!((3900..4096).contains(&m), "{m}");
        // Malformed.
        assert_eq!(call(c, 7, &log_msg(6, b"", b"t", b"m")[..3]), Err(EINVAL));
        let mut bad = log_msg(6, b"root", b"t", b"m");
        bad[1] = 0;
        assert_eq!(call(c, 7, &bad), Err(EINVAL), "ident_len 0");
        let mut bad = log_msg(6, b"root", b"t", b"m");
        bad[1] = 3;
        assert_eq!(
            call(c, 7, &bad),
            Err(EINVAL),
            "ident not NUL-terminated there"
        );
        assert_eq!(call(c, 8, &[0; 16]), Err(EINVAL), "no user string");
        // `.clusterlog`: the 50 newest, no filter.
        assert_eq!(
            fs::read(d.p(".clusterlog")).unwrap(),
            call(c, 8, &get_log(50, b"")).unwrap()
        );
    });
}

/// local.md §10.4 ops 11, 12, 13; Appendix C #8.
#[test]
fn guest_properties_and_tokens() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = start(&sb);
    populate(&d);
    root(&d, |c| {
        assert_eq!(
            text(call(c, 11, &prop(100, b"lock"))),
            "{\n\"100\":{\"lock\": \"backup\"}\n}\n"
        );
        assert_eq!(
            text(call(c, 13, &props(0, &[b"name", b"lock", b"hostname"]))),
            "{\n\"100\":{\"name\": \"test\",\"lock\": \"backup\"},\n\"101\":{\"hostname\": \"ct\"}\n}\n"
        );
        assert_eq!(text(call(c, 11, &prop(0, b"cores"))), "{\n\n}\n");
        assert_eq!(call(c, 11, &prop(99, b"lock")), Err(EINVAL));
        assert_eq!(call(c, 11, &prop(102, b"lock")), Err(ENOENT));
        assert_eq!(call(c, 11, &prop(4294967295, b"lock")), Err(ENOENT));
        assert_eq!(
            call(c, 11, &100u32.to_le_bytes()),
            Err(EINVAL),
            "no property"
        );
        assert_eq!(call(c, 13, &props(0, &[b"Lock"])), Err(EINVAL));
        assert_eq!(call(c, 13, &props(0, &[b""])), Err(EINVAL));
        assert_eq!(
            call(c, 13, &[props(0, &[b"lock"]), b"x".to_vec()].concat()),
            Err(EINVAL)
        );
        assert_eq!(call(c, 13, &props(0, &[])), Err(EINVAL));
        // An empty config of one guest: EIO.
        fs::write(d.p("nodes/node1/qemu-server/102.conf"), b"").unwrap();
        assert_eq!(call(c, 11, &prop(102, b"lock")), Err(libc::EIO));

        assert_eq!(
            call(c, 12, &cstr("root@pam!mytoken 01234567-89ab-cdef")),
            Ok(vec![])
        );
        assert_eq!(call(c, 12, &cstr("user@pve!t2 feedbeef")), Ok(vec![]));
        assert_eq!(call(c, 12, &cstr("user@pve!t2 feedbee")), Err(ENOENT));
        assert_eq!(call(c, 12, &cstr("a\nb")), Err(EINVAL));
        assert_eq!(call(c, 12, b"no-nul"), Err(EINVAL));
        assert_eq!(call(c, 12, b"\0"), Err(EINVAL));
        fs::remove_file(d.p("priv/token.cfg")).unwrap();
        assert_eq!(call(c, 12, &cstr("user@pve!t2 feedbeef")), Err(ENOENT));
    });
}

/// Malformed requests: wrong sizes, lying headers, unknown operations. The daemon answers
/// each with an errno and keeps serving the same connection.
#[test]
fn malformed_requests() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = start(&sb);
    populate(&d);
    root(&d, |c| {
        for id in [1, 2, 3, 10] {
            assert_eq!(call(c, id, b"\0"), Err(EINVAL), "op {id} with a payload");
        }
        for id in [0, 9, 14, 1000, -1, i32::MAX] {
            assert_eq!(call(c, id, b""), Err(ECHRNG), "op {id}");
        }
        // Headers claiming less than 16 bytes, or more than 1 MiB.
        let mut m = request(1, b"");
        m[8..12].copy_from_slice(&8i32.to_le_bytes());
        assert_eq!(c.call_raw(&m).unwrap().error, -EINVAL);
        m[8..12].copy_from_slice(&(2_i32 << 20).to_le_bytes());
        assert_eq!(c.call_raw(&m).unwrap().error, -EINVAL);
        m[8..12].copy_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(c.call_raw(&m).unwrap().error, -EINVAL);
        // A header claiming more than was sent: judged by its claim, never a crash.
        let mut m = request(6, b"storage.cfg\0");
        m[8..12].copy_from_slice(&4000i32.to_le_bytes());
        let r = c.call_raw(&m).unwrap();
        assert!(r.error == 0 || r.error == -ENOENT, "{r:?}");
        // Every operation with every short payload.
        for id in 1..=13 {
            for len in 0..40 {
                let r = c.call(id, &vec![0xffu8; len]).expect("transport");
                assert!(r.error <= 0, "{r:?}");
            }
        }
        assert!(json(call(c, 1, b""))["starttime"].as_u64().is_some());
    });
}

fn calls(reqs: &[(i32, Vec<u8>)]) -> Vec<Cmd> {
    reqs.iter()
        .map(|(id, p)| Cmd::Call(request(*id, p)))
        .collect()
}

#[track_caller]
fn reply(o: &Outcome) -> Result<Vec<u8>, i32> {
    match o {
        Outcome::Reply(r) => r.clone().ok(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// local.md §10.3 and Appendix C #1-#2: primary group www-data connects read-only (root too);
/// the permission check comes before any validation.
#[test]
fn read_only_clients() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = start(&sb);
    populate(&d);
    root(&d, |c| call(c, 4, &set_status(b"kv/x", b"v\0")).unwrap());
    for who in [IpcUser::WwwData, IpcUser::RootWwwData] {
        let run = d.ipcc(
            who,
            &calls(&[
                (4, set_status(b"kv/x", b"w\0")),
                (4, b"short".to_vec()),
                (7, log_msg(6, b"u", b"t", b"m")),
                (7, vec![]),
                (6, cstr("priv/token.cfg")),
                (6, cstr("priv")),
                (6, cstr("priv/missing")),
                (6, cstr("/nodes/node1/priv/x.key")),
                (6, cstr("nodes/node1//priv/x.key")),
                (6, cstr("privx")),
                (6, cstr("storage.cfg")),
                (5, get_status(b"kv/x", b"")),
                (8, get_log(0, b"")),
                (10, vec![]),
                (11, prop(100, b"lock")),
                (12, cstr("user@pve!t2 feedbeef")),
                (1, vec![]),
            ]),
        );
        let o = &run.outcomes;
        assert_eq!(o.len(), 17, "{who:?}: {o:?}");
        for (i, what) in [
            (0, "set"),
            (1, "malformed set"),
            (2, "log"),
            (3, "malformed log"),
        ] {
            assert_eq!(reply(&o[i]), Err(EPERM), "{who:?} {what}");
        }
        for (i, o) in o.iter().enumerate().take(9).skip(4) {
            assert_eq!(reply(o), Err(EPERM), "{who:?} private read #{i}");
        }
        assert_eq!(reply(&o[9]), Err(ENOENT), "{who:?} privx");
        assert_eq!(reply(&o[10]), Ok(storage_cfg()));
        assert_eq!(
            reply(&o[11]),
            Ok(b"v\0".to_vec()),
            "the value root set stays"
        );
        for (i, o) in o.iter().enumerate().skip(12) {
            assert!(reply(o).is_ok(), "{who:?} #{i}: {o:?}");
        }
    }
}

/// Appendix C #1: anyone else is refused at connect time (lwcfs: `EACCES`) and logged.
#[test]
fn refused_clients() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = start(&sb);
    for who in [
        IpcUser::Nobody,
        IpcUser::WwwDataSupplementary,
        IpcUser::RootOtherGroup,
    ] {
        let run = d.ipcc(who, &calls(&[(1, vec![])]));
        assert_eq!(run.outcomes, [Outcome::ConnectFailed(EACCES)], "{who:?}");
    }
    assert!(wait_until(Duration::from_secs(5), || sb
        .log()
        .contains("connection from bad user 65534! - rejected")));
    let run = d.ipcc(IpcUser::Root, &calls(&[(2, vec![])]));
    assert!(reply(&run.outcomes[0]).is_ok());
}

fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Clients that go away mid-request, garbage on the setup socket, a reply too big for the
/// client: the daemon logs, drops that connection and keeps serving everyone else, without
/// leaking descriptors.
#[test]
fn vanishing_clients_leave_the_daemon_serving() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = start(&sb);
    populate(&d);
    fs::write(d.p("big.cfg"), vec![b'b'; 1 << 20]).unwrap();
    fs::write(d.p("fits.cfg"), vec![b'f'; (1 << 20) - 24 - 8]).unwrap();
    root(&d, |c| call(c, 1, b"").unwrap());
    let fds = open_fds(d.pid());

    // Sends a request and exits without reading the reply or disconnecting.
    for _ in 0..5 {
        let run = d.ipcc(
            IpcUser::Root,
            &[
                Cmd::Send(request(6, &cstr("big.cfg"))),
                Cmd::Send(request(1, b"")),
                Cmd::Exit,
            ],
        );
        assert_eq!(run.outcomes, [Outcome::Sent, Outcome::Sent]);
    }
    // A reply larger than the client's 1 MiB buffer: that call fails, the next connection
    // works; one that fits is served whole.
    let run = d.ipcc(
        IpcUser::Root,
        &[
            Cmd::Call(request(6, &cstr("fits.cfg"))),
            Cmd::Call(request(6, &cstr("big.cfg"))),
            Cmd::Reconnect,
            Cmd::Call(request(2, b"")),
        ],
    );
    assert_eq!(reply(&run.outcomes[0]).unwrap().len(), (1 << 20) - 32);
    assert!(
        matches!(run.outcomes[1], Outcome::Fail(_)),
        "{:?}",
        run.outcomes[1]
    );
    assert!(reply(&run.outcomes[3]).is_ok());
    // A client killed while connected.
    let mut child = Command::new("nsenter")
        .args(["-t", &d.pid().to_string(), "-n", "-m", "--"])
        .arg(sb.path().join("bin/lwcfs-ipcc"))
        .arg("script")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{}\n", Cmd::Call(request(1, b"")).line()).as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    // Garbage and half handshakes on the setup socket.
    d.in_netns(|| {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixStream};
        // libqb binds the whole sun_path: "pve2" and NULs up to its end.
        let addr = SocketAddr::from_abstract_name(padded(b"pve2", 107)).unwrap();
        for garbage in [&b""[..], b"x", &[0xff; 64], &[0; 4096]] {
            let mut s = UnixStream::connect_addr(&addr).expect("connect @pve2");
            let _ = s.write_all(garbage);
            drop(s);
        }
    });
    // Everyone else is still served, on new and old connections alike.
    root(&d, |c| {
        for _ in 0..50 {
            assert!(call(c, 1, b"").is_ok());
        }
    });
    for _ in 0..50 {
        root(&d, |c| assert!(call(c, 3, b"").is_ok()));
    }
    assert!(
        wait_until(Duration::from_secs(5), || open_fds(d.pid()) <= fds),
        "descriptors leak: {} before, {} after",
        fds,
        open_fds(d.pid())
    );
}

/// A failure to start the IPC service is a startup error (here: a second daemon in a network
/// namespace whose `@pve2` is taken); it leaves nothing mounted.
#[test]
fn ipc_start_failure_is_a_startup_error() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = start(&sb);
    let t = sb.path().join("second");
    for sub in ["db", "mnt", "run"] {
        fs::create_dir_all(t.join(sub)).unwrap();
    }
    let out = Command::new("nsenter")
        .args(["-t", &d.pid().to_string(), "-n", "-m", "-u", "--"])
        .arg(lwcfs_compat_tests::sandbox::lwcfs_bin())
        .args(["-f", "-l", "--db"])
        .arg(t.join("db/config.db"))
        .arg("--mount")
        .arg(t.join("mnt"))
        .arg("--pve-run-dir")
        .arg(t.join("run"))
        .arg("--pid-file")
        .arg(t.join("run/pid"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("unable to start the IPC service 'pve2'"),
        "{err}"
    );
    let mounts = fs::read_to_string(format!("/proc/{}/mountinfo", d.pid())).unwrap();
    assert!(
        !mounts.contains(t.join("mnt").to_str().unwrap()),
        "{mounts}"
    );
    root(&d, |c| assert!(call(c, 1, b"").is_ok()));
}

/// The load test of issue 5: 8 clients call at full speed for 30 s while FUSE writes run;
/// no call fails, and the daemon's RSS grows by less than 16 MiB between the 10th and the
/// 30th second.
#[test]
fn eight_clients_for_30_s_while_fuse_writes_run() {
    let sb = Sandbox::with_ipcc(IPCC);
    let d = start(&sb);
    populate(&d);
    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    let (mut rss10, mut rss30) = (0, 0);
    let start = Instant::now();
    let results: Vec<(u64, u64, Option<String>)> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    d.in_netns(|| {
                        let mut c = Client::connect("pve2").expect("connect");
                        let mix = script::hammer_mix("storage.cfg");
                        let (mut n, mut errors, mut first) = (0u64, 0u64, None);
                        while !stop.load(Ordering::Relaxed) {
                            for (msg, want_ok) in &mix {
                                n += 1;
                                match c.call_raw(msg) {
                                    Ok(Reply { error, .. }) if (error == 0) == *want_ok => {}
                                    other => {
                                        errors += 1;
                                        first.get_or_insert_with(|| format!("{other:?}"));
                                    }
                                }
                            }
                        }
                        (n, errors, first)
                    })
                })
            })
            .collect();
        s.spawn(|| {
            // Proxmox-style updates: temp file + rename, a guest config, a lock.
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tmp = d.p(&format!("nodes/node1/qemu-server/100.conf.tmp.{i}"));
                fs::write(
                    &tmp,
                    format!("{}memory: {}\n", "name: test\n", 512 + i % 64),
                )
                .unwrap();
                fs::rename(&tmp, d.p("nodes/node1/qemu-server/100.conf")).unwrap();
                fs::write(d.p("ha/manager_status"), format!("{{\"i\":{i}}}")).unwrap();
                let _ = fs::create_dir(d.p("priv/lock"));
                fs::create_dir(d.p("priv/lock/load")).unwrap();
                fs::remove_dir(d.p("priv/lock/load")).unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
        while start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        rss10 = d.rss_kib();
        while start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        rss30 = d.rss_kib();
        stop.store(true, Ordering::Relaxed);
        clients.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: u64 = results.iter().map(|r| r.0).sum();
    let errors: u64 = results.iter().map(|r| r.1).sum();
    let first = results.iter().find_map(|r| r.2.clone());
    eprintln!(
        "load: {total} calls ({:.0}/s) by 8 clients, {} FUSE update rounds, RSS {rss10} KiB at \
         10 s, {rss30} KiB at 30 s",
        total as f64 / 30.0,
        writes.load(Ordering::Relaxed)
    );
    assert_eq!(errors, 0, "first error: {first:?}");
    assert!(
        results.iter().all(|r| r.0 > 1000),
        "every client made progress: {results:?}"
    );
    assert!(writes.load(Ordering::Relaxed) > 100);
    assert!(
        rss30 < rss10 + 16 * 1024,
        "RSS grew from {rss10} KiB to {rss30} KiB"
    );
}
