//! The cluster tier: lwcfs nodes on a real Corosync cluster in network namespaces
//! (`lwcfs_compat_tests::rig`). Needs root, /dev/fuse, iproute2 and corosync; run by
//! `compat-tests/run-all.sh` (feature `cluster`).
#![cfg(feature = "cluster")]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lwcfs_compat_tests::ipcc::req::{get_log, get_status, log_msg, set_status};
use lwcfs_compat_tests::ipcc::Client;
use lwcfs_compat_tests::ops;
use lwcfs_compat_tests::rig::{Rig, TestRig};
use lwcfs_compat_tests::sandbox::wait_until;
use nix::sys::signal::Signal;

/// Options every lwcfs node gets: short lock timeout and verify period for the tests.
const FAST: &[&str] = &["--lock-timeout", "3", "--verify-interval", "5"];

fn errno<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// A 3-node cluster of lwcfs nodes, synced.
fn cluster(n: usize, args: &[&str]) -> Rig {
    let mut rig = Rig::for_tests(n);
    rig.start_all_corosync();
    for i in 1..=n {
        rig.start_daemon(i, args);
    }
    rig.converge(&(1..=n).collect::<Vec<_>>());
    rig
}

/// Stop every node and require identical `tree` rows in every database.
fn stop_and_compare(mut rig: Rig, nodes: &[usize]) {
    for &i in nodes {
        rig.stop_daemon(i);
    }
    let first = rig.tree_rows(nodes[0]);
    for &i in &nodes[1..] {
        assert_eq!(
            rig.tree_rows(i),
            first,
            "database of node {i} differs from node {}",
            nodes[0]
        );
    }
}

fn same_everywhere(rig: &Rig, nodes: &[usize], rel: &str) -> (Vec<u8>, u32, i64) {
    let m = fs::metadata(rig.p(nodes[0], rel)).unwrap();
    let want = (
        fs::read(rig.p(nodes[0], rel)).unwrap(),
        m.permissions().mode(),
        m.mtime(),
    );
    for &i in &nodes[1..] {
        let m = fs::metadata(rig.p(i, rel)).unwrap_or_else(|e| panic!("node {i} {rel}: {e}"));
        let got = (
            fs::read(rig.p(i, rel)).unwrap(),
            m.permissions().mode(),
            m.mtime(),
        );
        assert_eq!(got, want, "{rel} on node {i}");
    }
    want
}

/// EEXIST, ENOENT, ENOTEMPTY and EFBIG on every node: `dir` exists, `full` is a non-empty
/// directory. Leaves a `big` file behind (the limit is checked at the write past 1 MiB).
fn same_errno_everywhere(rig: &Rig, nodes: &[usize], dir: &str, full: &str) {
    for &i in nodes {
        let e = |r| (errno(r), i);
        assert_eq!(e(fs::create_dir(rig.p(i, dir))), (libc::EEXIST, i));
        assert_eq!(e(fs::remove_file(rig.p(i, "missing"))), (libc::ENOENT, i));
        assert_eq!(e(fs::remove_dir(rig.p(i, full))), (libc::ENOTEMPTY, i));
        let big = vec![7u8; (1 << 20) + 1];
        assert_eq!(e(fs::write(rig.p(i, "big"), big)), (libc::EFBIG, i));
    }
}

#[test]
fn cluster_replicates_every_operation_with_the_same_errno() {
    let rig = cluster(3, FAST);
    let all = [1, 2, 3];
    // Write on 1, read everywhere: bytes, mode, mtime.
    fs::write(rig.p(1, "a.cfg"), b"hello cluster\n").unwrap();
    rig.converge(&all);
    same_everywhere(&rig, &all, "a.cfg");
    // Every node applies each change in the same order; the others may apply it a moment
    // after the writer's call returned, so compare after they converged.
    fs::create_dir(rig.p(2, "nodes")).unwrap();
    fs::create_dir(rig.p(2, "nodes/node1")).unwrap();
    fs::create_dir(rig.p(3, "nodes/node1/qemu-server")).unwrap();
    fs::write(
        rig.p(3, "nodes/node1/qemu-server/100.conf"),
        b"memory: 512\n",
    )
    .unwrap();
    fs::rename(rig.p(1, "a.cfg"), rig.p(1, "nodes/b.cfg")).unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(rig.p(2, "nodes/b.cfg"))
        .unwrap();
    f.set_len(5).unwrap();
    drop(f);
    ops::utime(&rig.p(3, "nodes/b.cfg"), 1_000_000, 1_234_567).unwrap();
    rig.converge(&all);
    let (data, _, mtime) = same_everywhere(&rig, &all, "nodes/b.cfg");
    assert_eq!(data, b"hello");
    assert_eq!(mtime, 1_234_567);
    same_everywhere(&rig, &all, "nodes/node1/qemu-server/100.conf");
    for i in all {
        assert!(!rig.p(i, "a.cfg").exists(), "a.cfg still on node {i}");
        let vmlist = fs::read_to_string(rig.p(i, ".vmlist")).unwrap();
        assert!(vmlist.contains("\"100\""), "node {i} .vmlist: {vmlist}");
    }
    // The same failing operation fails the same way on every node.
    same_errno_everywhere(&rig, &all, "nodes", "nodes/node1");
    fs::remove_file(rig.p(3, "big")).ok();
    fs::remove_file(rig.p(1, "nodes/node1/qemu-server/100.conf")).unwrap();
    fs::remove_dir(rig.p(2, "nodes/node1/qemu-server")).unwrap();
    let sum = rig.converge(&all);
    // .members: every node online, quorate.
    let members = fs::read_to_string(rig.p(2, ".members")).unwrap();
    assert!(members.contains("\"quorate\": 1"), "{members}");
    assert_eq!(members.matches("\"online\": 1").count(), 3, "{members}");
    // The hourly verify (every 5 s here) finds every node in agreement.
    assert!(
        wait_until(Duration::from_secs(20), || rig
            .daemon_log(1)
            .contains("data verification successful")),
        "no successful verify on node 1"
    );
    for i in all {
        assert!(
            !rig.daemon_log(i).contains("wrong checksum"),
            "node {i} log"
        );
    }
    assert_eq!(rig.stats(3)["checksum"], sum.as_str());
    stop_and_compare(rig, &all);
}

#[test]
fn cluster_concurrent_writers_on_all_nodes_converge() {
    let rig = Arc::new(cluster(3, FAST));
    let threads: Vec<_> = (1..=3)
        .map(|i| {
            let rig = rig.clone();
            std::thread::spawn(move || {
                for k in 0..40 {
                    fs::write(rig.p(i, &format!("n{i}-{k}")), format!("{i}:{k}\n")).unwrap();
                    // All nodes fight over the same file, too.
                    let mut f = fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(rig.p(i, "shared"))
                        .unwrap();
                    f.write_all(format!("{i}:{k};").as_bytes()).unwrap();
                    if k % 10 == 9 {
                        let _ = fs::remove_file(rig.p(i, &format!("n{i}-{}", k - 5)));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    rig.converge(&[1, 2, 3]);
    same_everywhere(&rig, &[1, 2, 3], "shared");
    let rig = Arc::into_inner(rig).expect("threads done");
    stop_and_compare(rig, &[1, 2, 3]);
}

#[test]
fn cluster_locks_expire_on_the_lowest_node_and_unlock_requests_remove_them() {
    let rig = cluster(3, FAST);
    for d in ["priv", "priv/lock"] {
        fs::create_dir(rig.p(1, d)).unwrap();
    }
    fs::create_dir(rig.p(2, "priv/lock/vm-100")).unwrap();
    assert_eq!(
        errno(fs::create_dir(rig.p(3, "priv/lock/vm-100"))),
        libc::EEXIST
    );
    // Not expired yet: the request is refused (the mtime of a lock may not go back).
    assert_eq!(
        errno(ops::utime(&rig.p(3, "priv/lock/vm-100"), 0, 0)),
        libc::EACCES
    );
    // The owner refreshes it: only the owner may.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    ops::utime(&rig.p(2, "priv/lock/vm-100"), now, now).unwrap();
    assert_eq!(
        errno(ops::utime(&rig.p(3, "priv/lock/vm-100"), now + 1, now + 1)),
        libc::EACCES
    );
    // Unchanged for longer than the timeout (3 s here): the next request removes it on
    // every node (decided by node 1, the lowest node id).
    std::thread::sleep(Duration::from_secs(5));
    let _ = ops::utime(&rig.p(3, "priv/lock/vm-100"), 0, 0);
    // The first request after expiry may only start node 1's timer; ask until it is gone.
    let gone = wait_until(Duration::from_secs(15), || {
        if rig.p(3, "priv/lock/vm-100").exists() {
            let _ = ops::utime(&rig.p(3, "priv/lock/vm-100"), 0, 0);
            std::thread::sleep(Duration::from_millis(500));
        }
        (1..=3).all(|i| !rig.p(i, "priv/lock/vm-100").exists())
    });
    assert!(gone, "expired lock not removed");
    fs::create_dir(rig.p(3, "priv/lock/vm-100")).unwrap();
    rig.converge(&[1, 2, 3]);
    stop_and_compare(rig, &[1, 2, 3]);
}

#[test]
fn cluster_stopped_and_killed_nodes_resync() {
    let mut rig = cluster(3, FAST);
    fs::write(rig.p(1, "before"), b"1").unwrap();
    rig.stop_daemon(3);
    for k in 0..20 {
        fs::write(rig.p(1 + k % 2, &format!("while-down-{k}")), b"x").unwrap();
    }
    fs::remove_file(rig.p(2, "before")).unwrap();
    rig.converge(&[1, 2]);
    rig.start_daemon(3, FAST);
    rig.converge(&[1, 2, 3]);
    assert!(rig.p(3, "while-down-19").exists());
    assert!(!rig.p(3, "before").exists());

    // A write storm on 1 and 3; node 3 killed in the middle of it, then restarted.
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        let m1 = rig.mnt(1);
        std::thread::spawn(move || {
            let mut k = 0u32;
            while !stop.load(Ordering::SeqCst) {
                fs::write(m1.join(format!("storm-{}", k % 50)), k.to_string()).unwrap();
                k += 1;
            }
            k
        })
    };
    let m3 = rig.mnt(3);
    let storm3 = std::thread::spawn(move || {
        // Ends with an error once the daemon is gone.
        for k in 0.. {
            if fs::write(m3.join(format!("s3-{}", k % 20)), b"y").is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    rig.kill_daemon(3);
    let _ = storm3.join();
    std::thread::sleep(Duration::from_millis(500));
    rig.start_daemon(3, FAST);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let written = storm.join().unwrap();
    assert!(written > 10, "the storm wrote only {written} files");
    rig.converge(&[1, 2, 3]);
    stop_and_compare(rig, &[1, 2, 3]);
}

#[test]
fn cluster_partition_denies_writes_without_quorum_and_heals() {
    let rig = Arc::new(cluster(3, FAST));
    fs::write(rig.p(3, "pre"), b"0").unwrap();
    rig.link(3, false);
    // Inside the window before Corosync sees the loss, a write on node 3 may still be sent: it
    // waits, then ends as §4.3 says (applied, EACCES, EPERM when it is delivered to a node
    // that has just lost quorum, or EBUSY when the group went away under it) — never hangs.
    let early = {
        let rig = rig.clone();
        std::thread::spawn(move || errno(fs::write(rig.p(3, "in-window"), b"1")))
    };
    // Corosync needs a few seconds to see the loss; then node 3 refuses at once.
    let lost = wait_until(Duration::from_secs(30), || {
        rig.stats(3)["cluster"]["quorate"] == false
    });
    assert!(lost, "node 3 never lost quorum");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(early.join().unwrap()));
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a write issued before the loss was seen still hangs");
    assert!(
        [0, libc::EACCES, libc::EPERM, libc::EBUSY].contains(&got),
        "write in the window: errno {got}"
    );
    assert_eq!(errno(fs::write(rig.p(3, "x"), b"1")), libc::EACCES);
    assert_eq!(errno(fs::create_dir(rig.p(3, "d"))), libc::EACCES);
    assert_eq!(errno(fs::remove_file(rig.p(3, "pre"))), libc::EACCES);
    // Files of an inquorate node show read-only modes, as C shows them.
    let mode = fs::metadata(rig.p(3, "pre")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o222, 0, "mode {mode:o} without quorum");
    // The majority keeps working.
    let ok = wait_until(Duration::from_secs(30), || {
        rig.synced(1, 2) && rig.synced(2, 2)
    });
    assert!(ok, "nodes 1 and 2 did not settle without node 3");
    fs::write(rig.p(1, "majority"), b"1").unwrap();
    fs::write(rig.p(2, "pre"), b"changed").unwrap();
    rig.link(3, true);
    rig.converge(&[1, 2, 3]);
    assert_eq!(fs::read(rig.p(3, "pre")).unwrap(), b"changed");
    assert!(rig.p(3, "majority").exists());
    let rig = Arc::into_inner(rig).expect("threads done");
    stop_and_compare(rig, &[1, 2, 3]);
}

#[test]
fn cluster_corosync_loss_releases_writers_with_ebusy_and_rejoins() {
    let mut rig = cluster(3, FAST);
    // Block node 3's corosync, start a write there (it waits for its own message), then
    // kill corosync: the writer is released with EBUSY.
    rig.signal_corosync(3, Signal::SIGSTOP);
    let m3 = rig.mnt(3);
    let writer = std::thread::spawn(move || errno(fs::create_dir(m3.join("blocked"))));
    std::thread::sleep(Duration::from_millis(500));
    rig.signal_corosync(3, Signal::SIGKILL);
    let got = writer.join().unwrap();
    assert_eq!(got, libc::EBUSY, "blocked writer");
    assert!(
        wait_until(Duration::from_secs(10), || rig.stats(3)["cluster"]
            ["quorate"]
            == false),
        "node 3 still quorate without corosync"
    );
    assert_eq!(errno(fs::write(rig.p(3, "new"), b"1")), libc::EACCES);
    // Meanwhile 1 and 2 go on.
    fs::write(rig.p(1, "while-gone"), b"1").unwrap();
    // Corosync back: lwcfs reconnects by itself and resyncs.
    rig.start_corosync(3);
    rig.converge(&[1, 2, 3]);
    assert!(rig.p(3, "while-gone").exists());
    fs::write(rig.p(3, "after"), b"1").unwrap();
    rig.converge(&[1, 2, 3]);
    stop_and_compare(rig, &[1, 2, 3]);
}

/// C's real lock timeout: a lock left alone is removable after 120 s, not before.
#[test]
fn cluster_lock_real_120s_expiry() {
    let rig = cluster(2, &[]);
    for d in ["priv", "priv/lock", "priv/lock/real"] {
        fs::create_dir(rig.p(1, d)).unwrap();
    }
    let lock = rig.p(2, "priv/lock/real");
    // The first request starts node 1's timer if it had none.
    let _ = ops::utime(&lock, 0, 0);
    std::thread::sleep(Duration::from_secs(100));
    assert_eq!(errno(ops::utime(&lock, 0, 0)), libc::EACCES);
    assert!(lock.exists(), "lock removed before 120 s");
    std::thread::sleep(Duration::from_secs(23));
    let gone = wait_until(Duration::from_secs(10), || {
        let _ = ops::utime(&lock, 0, 0);
        std::thread::sleep(Duration::from_millis(300));
        !rig.p(1, "priv/lock/real").exists() && !lock.exists()
    });
    assert!(gone, "lock not removed after 120 s");
    stop_and_compare(rig, &[1, 2]);
}

/// Mixed clusters with the C daemon (cluster.md §9 items 4, 6, 7, 8, 11): run by hand with
/// `PMXCFS_BIN=/path/to/pmxcfs cargo test -p lwcfs-compat-tests --features cluster --test
/// cluster_corosync -- --ignored` (the C daemon is not installable on the CI machine).
#[test]
#[ignore = "needs a C pmxcfs binary in PMXCFS_BIN"]
fn cluster_mixed_with_c_nodes() {
    let c_bin = std::path::PathBuf::from(
        std::env::var_os("PMXCFS_BIN").expect("set PMXCFS_BIN to a C pmxcfs binary"),
    );
    // lwcfs as the lowest node id (it sends SYNC_START and VERIFY_REQUEST), then C as it.
    for lw in [1, 3] {
        let mut rig = Rig::for_tests(3);
        rig.start_all_corosync();
        for i in 1..=3 {
            if i == lw {
                rig.start_daemon(i, FAST);
            } else {
                rig.start_daemon_bin(i, &c_bin, &[]);
            }
        }
        let ok = wait_until(Duration::from_secs(40), || rig.synced(lw, 3));
        assert!(ok, "lwcfs node {lw} not synced with the C nodes");
        let all = [1, 2, 3];
        let c = if lw == 1 { 2 } else { 1 };
        for i in all {
            fs::write(rig.p(i, &format!("from-{i}")), format!("written on {i}\n")).unwrap();
        }
        fs::create_dir(rig.p(1, "nodes")).unwrap();
        fs::create_dir(rig.p(2, "nodes/n")).unwrap();
        fs::write(rig.p(3, "nodes/n/f"), b"0123456789").unwrap();
        fs::rename(rig.p(lw, "from-2"), rig.p(lw, "nodes/moved")).unwrap();
        ops::truncate(&rig.p(2, "nodes/n/f"), 4).unwrap();
        ops::utime(&rig.p(3, "nodes/moved"), 5, 7_654_321).unwrap();
        same_errno_everywhere(&rig, &all, "nodes", "nodes/n");
        // Locks: made on a C node, refused to refresh from another node.
        for d in ["priv", "priv/lock", "priv/lock/mixed"] {
            fs::create_dir(rig.p(c, d)).unwrap();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(wait_until(Duration::from_secs(5), || rig
            .p(lw, "priv/lock/mixed")
            .exists()));
        assert_eq!(
            errno(ops::utime(&rig.p(lw, "priv/lock/mixed"), now, now)),
            libc::EACCES
        );
        std::thread::sleep(Duration::from_secs(6));
        for i in all {
            let _ = fs::remove_file(rig.p(i, "big"));
        }
        // Everyone has the same view, read through every mount.
        for rel in ["from-1", "from-3", "nodes/moved", "nodes/n/f"] {
            same_everywhere(&rig, &all, rel);
        }
        // The status group: C's `.members` shows the lwcfs node online with its address; kv
        // status and cluster-log messages cross in both directions.
        let lw_online = wait_until(Duration::from_secs(20), || {
            let m: serde_json::Value =
                serde_json::from_slice(&fs::read(rig.p(c, ".members")).unwrap()).unwrap();
            let e = &m["nodelist"][format!("node{lw}")];
            e["online"] == 1 && e["ip"] == format!("10.99.0.{lw}")
        });
        assert!(
            lw_online,
            "C node {c} does not see lwcfs node {lw} online with its ip"
        );
        ipc(&rig, lw, |cl| {
            call(cl, 4, &set_status(b"kv/mixed", b"from lwcfs\0")).unwrap()
        });
        ipc(&rig, c, |cl| {
            call(cl, 4, &set_status(b"kv/mixed", b"from C\0")).unwrap()
        });
        let crossed = wait_until(Duration::from_secs(10), || {
            let at_c = ipc(&rig, c, |cl| {
                call(
                    cl,
                    5,
                    &get_status(b"kv/mixed", format!("node{lw}").as_bytes()),
                )
            });
            let at_lw = ipc(&rig, lw, |cl| {
                call(
                    cl,
                    5,
                    &get_status(b"kv/mixed", format!("node{c}").as_bytes()),
                )
            });
            at_c == Ok(b"from lwcfs\0".to_vec()) && at_lw == Ok(b"from C\0".to_vec())
        });
        assert!(crossed, "kv status did not cross between C and lwcfs");
        for i in [lw, c] {
            let msg = format!("mixed log from node {i}");
            ipc(&rig, i, |cl| {
                call(cl, 7, &log_msg(5, b"root@pam", b"mixed", msg.as_bytes())).unwrap()
            });
        }
        let logs_crossed = wait_until(Duration::from_secs(10), || {
            [lw, c].iter().all(|&i| {
                let log = cluster_log(&rig, i);
                [lw, c].iter().all(|n| {
                    log.iter()
                        .any(|e| e.2 == format!("mixed log from node {n}"))
                })
            })
        });
        assert!(
            logs_crossed,
            "cluster log did not cross between C and lwcfs"
        );
        if lw == 1 {
            // lwcfs asks for a verify every 5 s: the C nodes agree.
            let ok = wait_until(Duration::from_secs(20), || {
                [2, 3]
                    .iter()
                    .all(|&i| rig.daemon_log(i).contains("data verification successful"))
            });
            assert!(ok, "C nodes did not verify successfully");
        }
        for i in all {
            let log = rig.daemon_log(i);
            for bad in [
                "wrong checksum",
                "leaving CPG group",
                "detected newer protocol",
            ] {
                assert!(!log.contains(bad), "node {i} logged {bad:?}:\n{log}");
            }
        }
        stop_and_compare(rig, &all);
    }
}

/// Node `i`'s tree version and whether its kernel has taken every invalidation.
fn applied_version(rig: &Rig, i: usize) -> (u64, bool) {
    let s = rig.stats(i);
    (
        s["version"].as_u64().unwrap_or(0),
        s["kernel_cache_pending"] == 0,
    )
}

/// Wait until node `i` has applied what node `from` has (same version) and its kernel has
/// taken the invalidations.
fn caught_up(rig: &Rig, i: usize, from: usize) {
    let want = applied_version(rig, from).0;
    let ok = wait_until(Duration::from_secs(10), || {
        let (v, idle) = applied_version(rig, i);
        v == want && idle
    });
    assert!(ok, "node {i} did not catch up with node {from}");
}

#[test]
fn cluster_remote_changes_reach_cached_readers_and_writers_never_deadlock() {
    let rig = Arc::new(cluster(3, FAST));
    fs::write(rig.p(1, "f"), b"first").unwrap();
    caught_up(&rig, 2, 1);
    // Node 2's kernel holds the file's pages and attributes; node 1 changes it, again and again.
    for k in 0..15u32 {
        assert!(!fs::read(rig.p(2, "f")).unwrap().is_empty());
        let content = format!("round {k}: {}", "x".repeat(k as usize * 37));
        fs::write(rig.p(1, "f"), &content).unwrap();
        caught_up(&rig, 2, 1);
        assert_eq!(
            fs::read(rig.p(2, "f")).unwrap(),
            content.as_bytes(),
            "round {k}"
        );
        assert_eq!(
            fs::metadata(rig.p(2, "f")).unwrap().len(),
            content.len() as u64
        );
    }
    // Names: a rename over, an unlink, a directory replaced.
    fs::write(rig.p(1, "g"), b"g").unwrap();
    caught_up(&rig, 2, 1);
    assert_eq!(fs::read(rig.p(2, "g")).unwrap(), b"g");
    fs::rename(rig.p(1, "f"), rig.p(1, "g")).unwrap();
    caught_up(&rig, 2, 1);
    assert!(!rig.p(2, "f").exists());
    assert_eq!(
        fs::read(rig.p(2, "g")).unwrap().len(),
        fs::read(rig.p(1, "g")).unwrap().len()
    );
    fs::remove_file(rig.p(1, "g")).unwrap();
    fs::create_dir(rig.p(1, "g")).unwrap();
    caught_up(&rig, 2, 1);
    assert!(fs::metadata(rig.p(2, "g")).unwrap().is_dir());

    // A local writer and a remote change on the same file at once, with readers, on every
    // node: nothing may hang (the kernel holds the inode while a local write waits for its own
    // message, and the remote change's invalidation must not wait for it).
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for i in 1..=3 {
        for role in ["writer", "reader"] {
            let rig = rig.clone();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    if role == "writer" {
                        fs::write(rig.p(i, "hot"), format!("{i}:{n}")).unwrap();
                    } else {
                        let _ = fs::read(rig.p(i, "hot"));
                    }
                    n += 1;
                }
                n
            }));
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let counts: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let _ = tx.send(counts);
    });
    let counts = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a writer or reader hangs");
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
    rig.converge(&[1, 2, 3]);
    for i in 1..=3 {
        caught_up(&rig, i, 1);
    }
    same_everywhere(&rig, &[1, 2, 3], "hot");
    let rig = Arc::into_inner(rig).expect("threads done");
    stop_and_compare(rig, &[1, 2, 3]);
}

/// cluster.md §4.9: a new corosync.conf written on one node replaces every node's host file
/// (unless the host's is newer); the writer asks corosync to reload it.
#[test]
fn cluster_corosync_conf_reaches_every_host() {
    let rig = cluster(3, FAST);
    let host = |i: usize| rig.node_dir(i).join("corosync/corosync.conf");
    let old = fs::read_to_string(host(1)).unwrap();
    // Every node imported its own host file at start, and the sync kept one of them.
    assert_eq!(fs::read_to_string(rig.p(2, "corosync.conf")).unwrap(), old);
    let new = old.replace("config_version: 1", "config_version: 2") + "# edited on node 1\n";
    // The Proxmox way: a temp file renamed over the real one.
    fs::write(rig.p(1, "corosync.conf.new"), &new).unwrap();
    fs::rename(rig.p(1, "corosync.conf.new"), rig.p(1, "corosync.conf")).unwrap();
    let ok = wait_until(Duration::from_secs(10), || {
        (1..=3).all(|i| fs::read_to_string(host(i)).is_ok_and(|t| t == new))
    });
    assert!(ok, "host corosync.conf not replaced everywhere");
    // An older one in the tree does not replace a newer host file.
    let older = new.replace("config_version: 2", "config_version: 1");
    fs::write(rig.p(2, "corosync.conf"), &older).unwrap();
    rig.converge(&[1, 2, 3]);
    std::thread::sleep(Duration::from_millis(300));
    for i in 1..=3 {
        assert_eq!(fs::read_to_string(host(i)).unwrap(), new, "node {i}");
    }
    // Corosync reloaded the new file on node 1 and the cluster still stands.
    assert!(
        wait_until(Duration::from_secs(10), || rig
            .daemon_log(1)
            .contains("wrote new corosync config")),
        "node 1 did not log the new config"
    );
    rig.converge(&[1, 2, 3]);
    stop_and_compare(rig, &[1, 2, 3]);
}

/// Run `f` with a root IPC client of node `i`'s daemon (`@pve2` lives in its network
/// namespace).
fn ipc<T: Send>(rig: &Rig, i: usize, f: impl FnOnce(&mut Client) -> T + Send) -> T {
    let ns = fs::File::open(format!("/proc/{}/ns/net", rig.daemon_pid(i))).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let mut c = Client::connect("pve2").expect("connect to @pve2");
            f(&mut c)
        })
        .join()
        .unwrap()
    })
}

fn call(c: &mut Client, id: i32, payload: &[u8]) -> Result<Vec<u8>, i32> {
    c.call(id, payload).expect("ipc transport").ok()
}

/// The cluster log of node `i` as (node, uid, msg), newest first.
fn cluster_log(rig: &Rig, i: usize) -> Vec<(String, u64, String)> {
    let text = ipc(rig, i, |c| call(c, 8, &get_log(200, b"")).unwrap());
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"].as_str().unwrap().to_owned(),
                e["uid"].as_u64().unwrap(),
                e["msg"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The status group (`pve_kvstore_v1`): key/value status, node IPs, RRD updates and the
/// cluster log reach every node; a restarted node catches up the log by the state merge.
#[test]
fn cluster_status_group_carries_status_logs_and_rrd() {
    let mut rig = cluster(3, FAST);
    // `.members`: every node online (members of the status group) with its announced IP.
    let members_ok = |rig: &Rig| {
        (1..=3).all(|i| {
            let m: serde_json::Value =
                serde_json::from_slice(&fs::read(rig.p(i, ".members")).unwrap()).unwrap();
            (1..=3).all(|n| {
                let e = &m["nodelist"][format!("node{n}")];
                e["online"] == 1 && e["ip"] == format!("10.99.0.{n}") && e["id"] == n
            }) && m["cluster"]["quorate"] == 1
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || members_ok(&rig)),
        "{}",
        String::from_utf8_lossy(&fs::read(rig.p(2, ".members")).unwrap())
    );
    // IPC op 2 answers the same text as `.members`.
    let op2 = ipc(&rig, 3, |c| call(c, 2, b"").unwrap());
    assert_eq!(op2, fs::read(rig.p(3, ".members")).unwrap());

    // set_status on node 1 is get_status on the others, under node 1's name.
    ipc(&rig, 1, |c| {
        call(c, 4, &set_status(b"kv/lwcfs-test", b"hello\0")).unwrap()
    });
    for i in [2, 3] {
        let ok = wait_until(Duration::from_secs(10), || {
            ipc(&rig, i, |c| {
                call(c, 5, &get_status(b"kv/lwcfs-test", b"node1"))
            }) == Ok(b"hello\0".to_vec())
        });
        assert!(ok, "node {i} did not get node 1's status");
    }
    // An RRD update on node 1 is written on every node.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let v = format!(
        "{now}:0:1.5:4:0.25:16000000:8000000:2000000:1000000:100000000:50000000:1000:2000\0"
    );
    ipc(&rig, 1, |c| {
        call(c, 4, &set_status(b"rrd/pve2-node/node1", v.as_bytes())).unwrap()
    });
    for i in 1..=3 {
        let file = format!(
            "/proc/{}/root/var/lib/rrdcached/db/pve-node-9.0/node1",
            rig.daemon_pid(i)
        );
        assert!(
            wait_until(Duration::from_secs(10), || std::path::Path::new(&file)
                .exists()),
            "node {i}: {file}"
        );
    }
    // Cluster-log messages from every node, on every node, in the same order.
    for i in 1..=3 {
        let msg = format!("hello from node {i}");
        ipc(&rig, i, |c| {
            call(
                c,
                7,
                &log_msg(5, b"root@pam", b"lwcfs-test", msg.as_bytes()),
            )
            .unwrap()
        });
    }
    let has_all = |log: &[(String, u64, String)]| {
        (1..=3).all(|i| log.iter().any(|e| e.2 == format!("hello from node {i}")))
    };
    assert!(
        wait_until(Duration::from_secs(10), || (1..=3)
            .all(|i| has_all(&cluster_log(&rig, i)))),
        "log messages missing"
    );
    let first = cluster_log(&rig, 1);
    let tests_only = |log: Vec<(String, u64, String)>| -> Vec<_> {
        log.into_iter()
            .filter(|e| e.2.starts_with("hello from"))
            .collect()
    };
    for i in [2, 3] {
        assert_eq!(
            tests_only(cluster_log(&rig, i)),
            tests_only(first.clone()),
            "node {i}"
        );
    }
    // Node 3 restarts: its fresh log catches up with the others' by the state merge.
    rig.stop_daemon(3);
    ipc(&rig, 2, |c| {
        call(
            c,
            7,
            &log_msg(5, b"root@pam", b"lwcfs-test", b"while node 3 was away"),
        )
        .unwrap()
    });
    rig.start_daemon(3, FAST);
    rig.converge(&[1, 2, 3]);
    let ok = wait_until(Duration::from_secs(20), || {
        let log = cluster_log(&rig, 3);
        has_all(&log) && log.iter().any(|e| e.2 == "while node 3 was away")
    });
    assert!(
        ok,
        "node 3 did not catch up the cluster log: {:?}",
        cluster_log(&rig, 3)
    );
    stop_and_compare(rig, &[1, 2, 3]);
}
