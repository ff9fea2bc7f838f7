//! A real Corosync cluster on this machine, for the cluster tier: N nodes, each a network
//! namespace with its own Corosync and its own daemon.
//!
//! Layout (all names carry a per-rig id, so rigs never meet each other or the host):
//! - a hub namespace holding a bridge; node `i` is a namespace joined to it by a veth pair,
//!   with address `10.99.0.i/24` (nothing is added to the host's own namespace);
//! - Corosync of node `i` runs in that namespace and a private mount namespace with its own
//!   `/etc/corosync`, `/run` and `/var/lib/corosync`;
//! - the daemon of node `i` (lwcfs by default, or any pmxcfs binary) runs in the same network
//!   namespace and its own mount and UTS namespaces: hostname `node<i>`, an `/etc/hosts` that
//!   resolves node1..nodeN, `/etc/corosync`, `/run`, `/var/lib/pve-cluster` and `/etc/pve`
//!   bound to the node's directories.
//!
//! Everything started is stopped by PID, and the namespaces removed, when the [`Rig`] is
//! dropped, panicking or not.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::sandbox::{lwcfs_bin, wait_until};

static RIGS: AtomicU32 = AtomicU32::new(0);

/// How long Corosync may take to form a quorate cluster, and a daemon to sync.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(40);

/// The tools the rig needs, checked once with a clear message.
pub fn check_tools() {
    crate::sandbox::check_privileges();
    for tool in ["ip", "corosync", "corosync-quorumtool"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the cluster tier needs '{tool}' (apt-get install corosync iproute2)"
        );
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// A process started by the rig; stopped by PID.
struct Proc {
    child: Child,
    done: bool,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, s: Signal) {
        let _ = kill(Pid::from_raw(self.pid()), s);
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.done = true;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGTERM, then SIGKILL after `grace`. Whether it exited by itself.
    fn stop(&mut self, grace: Duration) -> bool {
        if self.done {
            return true;
        }
        self.signal(Signal::SIGTERM);
        if self.wait_exit(grace) {
            return true;
        }
        self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
        self.done = true;
        false
    }
}

struct Node {
    corosync: Option<Proc>,
    daemon: Option<Proc>,
}

pub struct Rig {
    id: String,
    dir: tempfile::TempDir,
    n: usize,
    nodes: Vec<Node>,
    bin: PathBuf,
}

/// The shell that becomes the daemon of a node: `$1` node dir, `$2` hostname, `$3` binary.
const DAEMON_SCRIPT: &str = r#"set -eu
D="$1"; H="$2"; BIN="$3"; shift 3
mount -t tmpfs -o mode=0755 lwcfs-rig-ov "$D/ov"
mkdir -p "$D/ov/etc/up" "$D/ov/etc/work" "$D/ov/varlib/up" "$D/ov/varlib/work"
mount -t overlay lwcfs-etc -o "lowerdir=/etc,upperdir=$D/ov/etc/up,workdir=$D/ov/etc/work" /etc
mount -t overlay lwcfs-varlib -o "lowerdir=/var/lib,upperdir=$D/ov/varlib/up,workdir=$D/ov/varlib/work" /var/lib
mkdir -p /etc/pve /etc/corosync /var/lib/pve-cluster
mount --bind "$D/hosts" /etc/hosts
mount --bind "$D/etc" /etc/corosync
mount --bind "$D/db" /var/lib/pve-cluster
mount --bind "$D/run" /run
hostname "$H"
exec "$BIN" -f "$@"
"#;

const COROSYNC_SCRIPT: &str = r#"set -eu
D="$1"
mount --bind "$D/etc" /etc/corosync
mount --bind "$D/crun" /run
mount --bind "$D/clib" /var/lib/corosync
exec corosync -f
"#;

impl Rig {
    /// Namespaces, links and configuration for `n` nodes (nothing started yet).
    pub fn new(n: usize) -> Rig {
        check_tools();
        assert!((1..=9).contains(&n));
        let k = RIGS.fetch_add(1, Ordering::SeqCst);
        // Short: interface names are at most 15 bytes.
        let id = format!("{}{k}", std::process::id() % 100_000);
        let dir = tempfile::Builder::new()
            .prefix("lwcfs-rig-")
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut rig = Rig {
            id,
            dir,
            n,
            nodes: (0..n)
                .map(|_| Node {
                    corosync: None,
                    daemon: None,
                })
                .collect(),
            bin: lwcfs_bin(),
        };
        rig.setup();
        rig
    }

    fn hub(&self) -> String {
        format!("lwh{}", self.id)
    }

    /// The network namespace of node `i` (1-based).
    pub fn ns(&self, i: usize) -> String {
        format!("lwn{}n{i}", self.id)
    }

    fn veth(&self, i: usize) -> String {
        format!("v{i}")
    }

    /// Node `i`'s directory: `etc` (its corosync.conf), `db`, `run`, daemon log.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    pub fn db_path(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("db/config.db")
    }

    fn setup(&mut self) {
        let hub = self.hub();
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        let mut nodelist = String::new();
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for i in 1..=self.n {
            let _ = std::fmt::Write::write_fmt(
                &mut nodelist,
                format_args!(
                    "  node {{\n    ring0_addr: 10.99.0.{i}\n    name: node{i}\n    nodeid: {i}\n    quorum_votes: 1\n  }}\n"
                ),
            );
            hosts.push_str(&format!("10.99.0.{i} node{i}.rig node{i}\n"));
        }
        let key: Vec<u8> = (0..256u32).map(|i| (i * 7 + 13) as u8).collect();
        for i in 1..=self.n {
            let ns = self.ns(i);
            let v = self.veth(i);
            ip(&["netns", "add", &ns]);
            ip(&[
                "-n", &hub, "link", "add", &v, "type", "veth", "peer", "name", "e0", "netns", &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &v, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &v, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.99.0.{i}/24"),
                "dev",
                "e0",
            ]);
            ip(&["-n", &ns, "link", "set", "e0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let d = self.node_dir(i);
            for sub in ["etc", "db", "run", "crun", "clib", "ov"] {
                fs::create_dir_all(d.join(sub)).expect("node dirs");
            }
            fs::set_permissions(d.join("db"), fs::Permissions::from_mode(0o700)).expect("chmod");
            fs::write(d.join("hosts"), &hosts).expect("hosts");
            fs::write(d.join("etc/authkey"), &key).expect("authkey");
            fs::set_permissions(d.join("etc/authkey"), fs::Permissions::from_mode(0o400))
                .expect("chmod authkey");
            fs::write(
                d.join("etc/corosync.conf"),
                format!(
                    "totem {{\n  version: 2\n  cluster_name: rig\n  config_version: 1\n  transport: knet\n  crypto_cipher: none\n  crypto_hash: none\n  token: 3000\n}}\nnodelist {{\n{nodelist}}}\nquorum {{\n  provider: corosync_votequorum\n}}\nlogging {{\n  to_stderr: yes\n  to_syslog: no\n}}\n"
                ),
            )
            .expect("corosync.conf");
        }
    }

    fn log(&self, i: usize, what: &str) -> std::fs::File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_dir(i).join(format!("{what}.log")))
            .expect("log file")
    }

    /// A node's daemon log.
    pub fn daemon_log(&self, i: usize) -> String {
        fs::read_to_string(self.node_dir(i).join("daemon.log")).unwrap_or_default()
    }

    pub fn start_corosync(&mut self, i: usize) {
        let log = self.log(i, "corosync");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(i)])
            .args(["unshare", "--mount", "--propagation", "private", "--"])
            .args(["sh", "-c", COROSYNC_SCRIPT, "sh"])
            .arg(self.node_dir(i))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn corosync");
        self.nodes[i - 1].corosync = Some(Proc { child, done: false });
    }

    /// Stop node `i`'s Corosync with SIGTERM (SIGKILL after 10 s).
    pub fn stop_corosync(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i - 1].corosync.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Send a signal to node `i`'s Corosync (SIGSTOP, SIGKILL, ...).
    pub fn signal_corosync(&mut self, i: usize, s: Signal) {
        if let Some(p) = &mut self.nodes[i - 1].corosync {
            p.signal(s);
            if s == Signal::SIGKILL {
                let _ = p.child.wait();
                p.done = true;
            }
        }
    }

    /// Corosync on every node; waits until node 1 sees all of them quorate.
    pub fn start_all_corosync(&mut self) {
        for i in 1..=self.n {
            self.start_corosync(i);
        }
        let n = self.n;
        let ok = wait_until(FORM_TIMEOUT, || {
            (1..=n).all(|i| self.quorum_nodes(i) == Some(n))
        });
        assert!(ok, "corosync did not form a quorate {n}-node cluster");
    }

    /// What `corosync-quorumtool` on node `i` says: the number of nodes if quorate.
    pub fn quorum_nodes(&self, i: usize) -> Option<usize> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), "corosync-quorumtool", "-s"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let quorate = text
            .lines()
            .any(|l| l.starts_with("Quorate:") && l.contains("Yes"));
        let nodes = text
            .lines()
            .find_map(|l| l.strip_prefix("Nodes:"))
            .and_then(|v| v.trim().parse().ok());
        if quorate {
            nodes
        } else {
            None
        }
    }

    /// Start node `i`'s lwcfs (`-f` plus `args`) and wait until its mount serves.
    pub fn start_daemon(&mut self, i: usize, args: &[&str]) {
        let bin = self.bin.clone();
        self.start_daemon_bin(i, &bin, args);
    }

    /// Start any pmxcfs binary as node `i`'s daemon (`-f` plus `args`; C's fixed paths are
    /// bound to the node's directories) and wait until its mount serves.
    pub fn start_daemon_bin(&mut self, i: usize, bin: &Path, args: &[&str]) {
        let log = self.log(i, "daemon");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(i)])
            .args([
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
            ])
            .args(["sh", "-c", DAEMON_SCRIPT, "sh"])
            .arg(self.node_dir(i))
            .arg(format!("node{i}"))
            .arg(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        let pid = child.id();
        self.nodes[i - 1].daemon = Some(Proc { child, done: false });
        let version = PathBuf::from(format!("/proc/{pid}/root/etc/pve/.version"));
        let up = wait_until(Duration::from_secs(20), || {
            let exited = self.nodes[i - 1]
                .daemon
                .as_mut()
                .is_none_or(|p| matches!(p.child.try_wait(), Ok(Some(_))));
            exited || version.exists()
        });
        let running = self.nodes[i - 1]
            .daemon
            .as_mut()
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)));
        assert!(
            up && running,
            "daemon of node {i} did not come up; its log:\n{}",
            self.daemon_log(i)
        );
    }

    /// Stop node `i`'s daemon with SIGTERM; panics if it needs SIGKILL.
    pub fn stop_daemon(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i - 1].daemon.take() {
            assert!(
                p.stop(Duration::from_secs(20)),
                "daemon of node {i} ignored SIGTERM; its log:\n{}",
                self.daemon_log(i)
            );
        }
    }

    /// `kill -9` node `i`'s daemon (its mount goes away with its namespace).
    pub fn kill_daemon(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i - 1].daemon.take() {
            p.signal(Signal::SIGKILL);
            let _ = p.child.wait();
        }
    }

    pub fn daemon_pid(&self, i: usize) -> i32 {
        self.nodes[i - 1]
            .daemon
            .as_ref()
            .map(Proc::pid)
            .expect("daemon running")
    }

    /// `/etc/pve` of node `i`, as this process reaches it.
    pub fn mnt(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/etc/pve", self.daemon_pid(i)))
    }

    /// A path under node `i`'s `/etc/pve`.
    pub fn p(&self, i: usize, rel: &str) -> PathBuf {
        self.mnt(i).join(rel)
    }

    /// Run a shell command as root in node `i`'s daemon namespaces (cwd `/etc/pve`).
    pub fn sh(&self, i: usize, script: &str) -> std::process::Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.daemon_pid(i).to_string(),
                "-m",
                "-u",
                "-n",
                "--",
            ])
            .args(["sh", "-c", &format!("cd /etc/pve && {script}")])
            .output()
            .expect("nsenter")
    }

    /// Take node `i`'s link down or up (a partition).
    pub fn link(&self, i: usize, up: bool) {
        ip(&[
            "-n",
            &self.hub(),
            "link",
            "set",
            &self.veth(i),
            if up { "up" } else { "down" },
        ]);
    }

    /// `lwcfs stats --json` of node `i` (lwcfs nodes only).
    pub fn stats(&self, i: usize) -> serde_json::Value {
        let out = Command::new(&self.bin)
            .args(["stats", "--json", "--db"])
            .arg(self.db_path(i))
            .output()
            .expect("lwcfs stats");
        assert!(
            out.status.success(),
            "lwcfs stats on node {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stats json")
    }

    /// `lwcfs flush` on node `i`.
    pub fn flush(&self, i: usize) {
        let out = Command::new(&self.bin)
            .args(["flush", "--db"])
            .arg(self.db_path(i))
            .output()
            .expect("lwcfs flush");
        assert!(out.status.success(), "lwcfs flush on node {i}");
    }

    /// Node `i` is quorate, joined and in sync (SYNCED mode) with `members` group members.
    pub fn synced(&self, i: usize, members: usize) -> bool {
        let c = &self.stats(i)["cluster"];
        c["quorate"] == true
            && c["mode"] == "Synced"
            && c["members"].as_array().is_some_and(|m| m.len() == members)
    }

    /// Wait until each of `nodes` is synced with `nodes.len()` members and all show the same
    /// checksum; returns it.
    pub fn converge(&self, nodes: &[usize]) -> String {
        let mut last = Vec::new();
        let ok = wait_until(FORM_TIMEOUT, || {
            if !nodes.iter().all(|&i| self.synced(i, nodes.len())) {
                return false;
            }
            last = nodes
                .iter()
                .map(|&i| self.stats(i)["checksum"].as_str().unwrap_or("").to_owned())
                .collect();
            last.windows(2).all(|w| w[0] == w[1])
        });
        if !ok {
            let logs: String = nodes
                .iter()
                .map(|&i| format!("---- node {i}: {}\n{}", self.stats(i), self.daemon_log(i)))
                .collect();
            panic!("nodes {nodes:?} did not converge (checksums {last:?})\n{logs}");
        }
        last[0].clone()
    }

    /// The `tree` rows of node `i`'s database (NULL data read as empty, as C stores empty
    /// files), for comparing nodes after a stop.
    pub fn tree_rows(&self, i: usize) -> Vec<crate::db::Row> {
        crate::db::read_rows(&self.db_path(i))
            .into_iter()
            .map(|mut r| {
                r.data = Some(r.data.unwrap_or_default());
                r
            })
            .collect()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for i in 1..=self.n {
            if let Some(mut p) = self.nodes[i - 1].daemon.take() {
                p.stop(Duration::from_secs(10));
            }
        }
        for i in 1..=self.n {
            if let Some(mut p) = self.nodes[i - 1].corosync.take() {
                p.stop(Duration::from_secs(10));
            }
        }
        for i in 1..=self.n {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub()])
            .status();
        if panicking {
            for i in 1..=self.n {
                eprintln!("---- node {i} daemon log ----\n{}", self.daemon_log(i));
            }
        }
    }
}
