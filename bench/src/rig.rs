//! A real Corosync cluster on this machine: N nodes, each a network namespace with its own
//! Corosync and its own daemon, each node's database directory on its own loop-mounted ext4
//! image, so that what every node writes to its disk is measured as the single-daemon bench
//! measures it. The cluster workloads (`cluster`) and the compat-tests' cluster tier use it.
//!
//! Layout (all names carry a per-rig id, so rigs never meet each other or the host):
//! - a hub namespace holding a bridge; node `i` is a namespace joined to it by a veth pair,
//!   with address `10.99.0.i/24` (nothing is added to the host's own namespace);
//! - Corosync of node `i` runs in that namespace and a private mount namespace with its own
//!   `/etc/corosync`, `/run` and `/var/lib/corosync`;
//! - node `i` is a [`Sandbox`] whose anchor joined that network namespace: hostname `node<i>`,
//!   an `/etc/hosts` that resolves node1..nodeN, `/etc/corosync` (the same directory its
//!   Corosync reads), `/run`, `/etc/pve`, and `/var/lib/pve-cluster` on the node's loop
//!   device. The daemon (lwcfs by default, or any pmxcfs binary) runs in the anchor's
//!   namespaces; so does everything the bench runs "on" the node.
//!
//! Everything started is stopped by PID, and the namespaces removed, when the [`Rig`] is
//! dropped, panicking or not. Methods named `try_*` report failures as `Err`; the others panic
//! with the node's log (the tests' style).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::runner::interrupted;
use crate::sandbox::{self, Daemon, Identity, Sandbox, Stopped, DB_DIR, MOUNT_POINT};

static RIGS: AtomicU32 = AtomicU32::new(0);

/// How long Corosync may take to form a quorate cluster, and a daemon to sync.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(40);

/// How long a daemon may take to serve its mount after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How a rig is built.
#[derive(Debug, Clone)]
pub struct Config {
    /// The lwcfs binary: every node's daemon unless [`Rig::start_daemon_bin`] names another,
    /// and the `lwcfs stats` / `lwcfs flush` client.
    pub lwcfs: PathBuf,
    /// Where the rig's directory goes and the size of each node's image.
    pub sandbox: sandbox::Config,
}

/// The tools the rig needs: `Err` says which one is missing.
pub fn check_tools() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the cluster rig needs root (namespaces, mounts, loop devices)".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing: install fuse3 and load the module".into());
    }
    for tool in [
        "ip",
        "corosync",
        "corosync-quorumtool",
        "unshare",
        "nsenter",
        "hostname",
        "umount",
        "mkfs.ext4",
        "losetup",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!(
                "the cluster rig needs '{tool}' (apt-get install corosync iproute2 util-linux \
                 e2fsprogs hostname)"
            ));
        }
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args))
}

/// Polls `cond` every 20 ms until it holds (true) or `timeout` passes or the bench is
/// interrupted (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline || interrupted() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Corosync started by the rig; stopped by PID.
struct Proc {
    child: Child,
    done: bool,
}

impl Proc {
    fn signal(&self, s: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), s);
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

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(&mut self, grace: Duration) {
        if self.done {
            return;
        }
        self.signal(Signal::SIGTERM);
        if self.wait_exit(grace) {
            return;
        }
        self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
        self.done = true;
    }
}

struct Node {
    sb: Sandbox,
    corosync: Option<Proc>,
    daemon: Option<Daemon>,
}

pub struct Rig {
    id: String,
    dir: PathBuf,
    n: usize,
    nodes: Vec<Node>,
    lwcfs: PathBuf,
}

const COROSYNC_SCRIPT: &str = r#"set -eu
D="$1"
mount --bind "$D/corosync" /etc/corosync
mount --bind "$D/crun" /run
mount --bind "$D/clib" /var/lib/corosync
exec corosync -f
"#;

impl Rig {
    /// Namespaces, links, node sandboxes (each with a fresh image) and configuration for `n`
    /// nodes; nothing started yet.
    pub fn new(n: usize, cfg: &Config) -> Result<Rig, String> {
        check_tools()?;
        if !(1..=9).contains(&n) {
            return Err(format!("a rig has 1 to 9 nodes, not {n}"));
        }
        let k = RIGS.fetch_add(1, Ordering::SeqCst);
        // Short: interface names are at most 15 bytes.
        let id = format!("{}{k}", std::process::id() % 100_000);
        let dir = cfg.sandbox.scratch_parent.join(format!("lwcfs-rig.{id}"));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        let mut rig = Rig {
            id,
            dir,
            n,
            nodes: Vec::new(),
            lwcfs: cfg.lwcfs.clone(),
        };
        // On an error, dropping the half-built rig removes what was made.
        rig.setup(cfg)?;
        Ok(rig)
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

    /// The number of nodes.
    pub fn nodes(&self) -> usize {
        self.n
    }

    /// Node `i`'s sandbox: its loop device, its namespaces, `sync_and_read`.
    pub fn sandbox(&self, i: usize) -> &Sandbox {
        &self.nodes[i - 1].sb
    }

    /// Node `i`'s directory: `corosync` (its corosync.conf), `run`, the logs, the image.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.sandbox(i).scratch().to_path_buf()
    }

    /// Node `i`'s `config.db`, as this process reaches it (for `lwcfs stats --db`; SQLite must
    /// open it from inside: [`Sandbox::in_mount_ns`]).
    pub fn db_path(&self, i: usize) -> PathBuf {
        self.sandbox(i).inside(&format!("{DB_DIR}/config.db"))
    }

    fn setup(&mut self, cfg: &Config) -> Result<(), String> {
        let hub = self.hub();
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        let mut nodelist = String::new();
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for i in 1..=self.n {
            nodelist.push_str(&format!(
                "  node {{\n    ring0_addr: 10.99.0.{i}\n    name: node{i}\n    nodeid: {i}\n    quorum_votes: 1\n  }}\n"
            ));
            hosts.push_str(&format!("10.99.0.{i} node{i}.rig node{i}\n"));
        }
        let key: Vec<u8> = (0..256u32).map(|i| (i * 7 + 13) as u8).collect();
        let node_cfg = sandbox::Config {
            scratch_parent: self.dir.clone(),
            image_mib: cfg.sandbox.image_mib,
        };
        for i in 1..=self.n {
            let ns = self.ns(i);
            let v = self.veth(i);
            ip(&["netns", "add", &ns])?;
            ip(&[
                "-n", &hub, "link", "add", &v, "type", "veth", "peer", "name", "e0", "netns", &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &v, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &v, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.99.0.{i}/24"),
                "dev",
                "e0",
            ])?;
            ip(&["-n", &ns, "link", "set", "e0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let who = Identity {
                hostname: format!("node{i}"),
                hosts: hosts.clone(),
                netns: Some(ns),
            };
            let sb = Sandbox::create_as(&node_cfg, &format!("node{i}"), &who)
                .map_err(|e| format!("node {i}: {e}"))?;
            let d = sb.scratch().to_path_buf();
            self.nodes.push(Node {
                sb,
                corosync: None,
                daemon: None,
            });
            let write = |rel: &str, data: &[u8], mode: u32| -> Result<(), String> {
                let p = d.join(rel);
                fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("chmod {}: {e}", p.display()))
            };
            for sub in ["crun", "clib"] {
                fs::create_dir_all(d.join(sub)).map_err(|e| format!("node dirs: {e}"))?;
            }
            write("corosync/authkey", &key, 0o400)?;
            write(
                "corosync/corosync.conf",
                format!(
                    "totem {{\n  version: 2\n  cluster_name: rig\n  config_version: 1\n  transport: knet\n  crypto_cipher: none\n  crypto_hash: none\n  token: 3000\n}}\nnodelist {{\n{nodelist}}}\nquorum {{\n  provider: corosync_votequorum\n}}\nlogging {{\n  to_stderr: yes\n  to_syslog: no\n}}\n"
                )
                .as_bytes(),
                0o644,
            )?;
        }
        Ok(())
    }

    fn log_path(&self, i: usize, what: &str) -> PathBuf {
        self.node_dir(i).join(format!("{what}.log"))
    }

    /// A node's daemon log (every start of it, appended).
    pub fn daemon_log(&self, i: usize) -> String {
        fs::read_to_string(self.log_path(i, "daemon")).unwrap_or_default()
    }

    pub fn start_corosync(&mut self, i: usize) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i, "corosync"))
            .expect("corosync log");
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

    /// Corosync on every node; waits until every node sees all of them quorate.
    pub fn try_start_all_corosync(&mut self) -> Result<(), String> {
        for i in 1..=self.n {
            self.start_corosync(i);
        }
        let n = self.n;
        let ok = wait_until(FORM_TIMEOUT, || {
            (1..=n).all(|i| self.quorum_nodes(i) == Some(n))
        });
        if ok {
            Ok(())
        } else {
            Err(format!("corosync did not form a quorate {n}-node cluster"))
        }
    }

    /// [`Rig::try_start_all_corosync`], panicking.
    pub fn start_all_corosync(&mut self) {
        self.try_start_all_corosync()
            .unwrap_or_else(|e| panic!("{e}"));
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
        let bin = self.lwcfs.clone();
        self.start_daemon_bin(i, &bin, args);
    }

    /// [`Rig::try_start_daemon_bin`], panicking with the node's log.
    pub fn start_daemon_bin(&mut self, i: usize, bin: &Path, args: &[&str]) {
        if let Err(e) = self.try_start_daemon_bin(i, bin, args) {
            panic!("{e}");
        }
    }

    /// Start any pmxcfs binary as node `i`'s daemon (`-f` plus `args`; C's fixed paths are the
    /// node's) and wait until its mount serves (`/etc/pve/.version` exists).
    pub fn try_start_daemon_bin(
        &mut self,
        i: usize,
        bin: &Path,
        args: &[&str],
    ) -> Result<(), String> {
        let sb = &self.nodes[i - 1].sb;
        sb.unmount_stale_fuse()
            .map_err(|e| format!("node {i}: {e}"))?;
        let mut argv = vec!["-f".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let daemon = Daemon::start(sb, bin, &argv, self.log_path(i, "daemon"))
            .map_err(|e| format!("node {i}: {e}"))?;
        let version = PathBuf::from(format!("/proc/{}/root{MOUNT_POINT}/.version", daemon.pid()));
        let up = wait_until(START_TIMEOUT, || daemon.has_exited() || version.exists());
        if up && !daemon.has_exited() {
            self.nodes[i - 1].daemon = Some(daemon);
            return Ok(());
        }
        drop(daemon);
        Err(format!(
            "daemon of node {i} did not come up; its log:\n{}",
            self.daemon_log(i)
        ))
    }

    /// Stop node `i`'s daemon with SIGTERM: how it ended (killed after `timeout`: `Hung`), and
    /// its `/proc/PID/io`. `None` if it was not running.
    pub fn try_stop_daemon(&mut self, i: usize, timeout: Duration) -> Option<Stopped> {
        let d = self.nodes[i - 1].daemon.take()?;
        let stopped = d.stop(timeout);
        let _ = self.nodes[i - 1].sb.unmount_stale_fuse();
        Some(stopped)
    }

    /// Stop node `i`'s daemon with SIGTERM; panics if it needs SIGKILL.
    pub fn stop_daemon(&mut self, i: usize) {
        if let Some(s) = self.try_stop_daemon(i, Duration::from_secs(20)) {
            assert!(
                s.exit != sandbox::Exit::Hung,
                "daemon of node {i} ignored SIGTERM; its log:\n{}",
                self.daemon_log(i)
            );
        }
    }

    /// `kill -9` node `i`'s daemon (its FUSE mount is then unmounted lazily).
    pub fn kill_daemon(&mut self, i: usize) {
        if let Some(d) = self.nodes[i - 1].daemon.take() {
            drop(d);
            let _ = self.nodes[i - 1].sb.unmount_stale_fuse();
        }
    }

    pub fn daemon_pid(&self, i: usize) -> i32 {
        self.nodes[i - 1]
            .daemon
            .as_ref()
            .map(Daemon::pid)
            .expect("daemon running")
    }

    /// `/etc/pve` of node `i`, as this process reaches it.
    pub fn mnt(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{MOUNT_POINT}", self.daemon_pid(i)))
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
            .args(["sh", "-c", &format!("cd {MOUNT_POINT} && {script}")])
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
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `lwcfs stats --json` of node `i` (lwcfs nodes only).
    pub fn try_stats(&self, i: usize) -> Result<serde_json::Value, String> {
        let out = Command::new(&self.lwcfs)
            .args(["stats", "--json", "--db"])
            .arg(self.db_path(i))
            .output()
            .map_err(|e| format!("lwcfs stats: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "lwcfs stats on node {i}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("stats json of node {i}: {e}"))
    }

    /// [`Rig::try_stats`], panicking.
    pub fn stats(&self, i: usize) -> serde_json::Value {
        self.try_stats(i).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `lwcfs flush` on node `i`: returns once everything the node applied is on its disk.
    pub fn try_flush(&self, i: usize) -> Result<(), String> {
        let out = Command::new(&self.lwcfs)
            .args(["flush", "--db"])
            .arg(self.db_path(i))
            .output()
            .map_err(|e| format!("lwcfs flush: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "lwcfs flush on node {i}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// [`Rig::try_flush`], panicking.
    pub fn flush(&self, i: usize) {
        self.try_flush(i).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Node `i` is quorate, joined and in sync (SYNCED mode) with `members` group members.
    pub fn synced(&self, i: usize, members: usize) -> bool {
        let Ok(s) = self.try_stats(i) else {
            return false;
        };
        let c = &s["cluster"];
        c["quorate"] == true
            && c["mode"] == "Synced"
            && c["members"].as_array().is_some_and(|m| m.len() == members)
    }

    /// Wait until each of `nodes` is synced with `nodes.len()` members and all show the same
    /// checksum; returns it, or the last checksums seen.
    pub fn try_converge(&self, nodes: &[usize], timeout: Duration) -> Result<String, String> {
        let mut last = Vec::new();
        let ok = wait_until(timeout, || {
            if !nodes.iter().all(|&i| self.synced(i, nodes.len())) {
                return false;
            }
            last = nodes
                .iter()
                .map(|&i| {
                    self.try_stats(i).map_or(String::new(), |s| {
                        s["checksum"].as_str().unwrap_or("").to_owned()
                    })
                })
                .collect();
            last.windows(2).all(|w| w[0] == w[1])
        });
        if ok {
            Ok(last[0].clone())
        } else {
            Err(format!(
                "nodes {nodes:?} did not converge (checksums {last:?})"
            ))
        }
    }

    /// [`Rig::try_converge`] within [`FORM_TIMEOUT`], panicking with every node's stats and
    /// log.
    pub fn converge(&self, nodes: &[usize]) -> String {
        self.try_converge(nodes, FORM_TIMEOUT).unwrap_or_else(|e| {
            let logs: String = nodes
                .iter()
                .map(|&i| {
                    format!(
                        "---- node {i}: {:?}\n{}",
                        self.try_stats(i),
                        self.daemon_log(i)
                    )
                })
                .collect();
            panic!("{e}\n{logs}")
        })
    }

    /// The rig's directory (one subdirectory per node).
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for node in &mut self.nodes {
            if let Some(d) = node.daemon.take() {
                d.stop(Duration::from_secs(10));
            }
        }
        for node in &mut self.nodes {
            if let Some(mut p) = node.corosync.take() {
                p.stop(Duration::from_secs(10));
            }
        }
        if panicking {
            for i in 1..=self.nodes.len() {
                eprintln!("---- node {i} daemon log ----\n{}", self.daemon_log(i));
            }
        }
        // The sandboxes: anchors killed, loop devices released, node directories removed.
        self.nodes.clear();
        for i in 1..=self.n {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub()])
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
