//! One lwcfs daemon per test, isolated.
//!
//! [`Sandbox`] owns a temporary directory. [`Sandbox::start`] runs the daemon (from `LWCFS_BIN`)
//! with C's default paths, in new mount, network and UTS namespaces (`unshare`), where
//! - `/etc` and `/var/lib` are overlays whose upper layers live on a tmpfs private to the
//!   namespaces, so `/etc/pve` and `/var/lib/pve-cluster` can be created without touching the
//!   host, whatever filesystem its /tmp is on;
//! - `/var/lib/pve-cluster` (the database), `/run`, `/etc/hosts` and `/etc/corosync` are
//!   bind mounts of sandbox directories;
//! - the host name is [`HOSTNAME`], resolving to [`NODE_IP`] through the sandbox's hosts file.
//!
//! The mount is reached from the test process as `/proc/<pid>/root/etc/pve`, and by other
//! users through `nsenter` + `setpriv`. The namespaces die with the daemon, mounts included.
//! [`Daemon`] is a guard: dropping it (also while unwinding from a failed assertion) stops the
//! daemon by pid, SIGTERM first and SIGKILL after a timeout, and prints its log on failure.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::ipcc;
use crate::probe::{self, Outcome};

/// The node name every sandboxed daemon runs under.
pub const HOSTNAME: &str = "node1";
/// What [`HOSTNAME`] resolves to inside the sandbox (a non-loopback address, as C requires).
pub const NODE_IP: &str = "10.99.0.1";

/// The names at the root of the mount that are not in the database.
pub const VIRTUAL_NAMES: [&str; 10] = [
    "local",
    "qemu-server",
    "openvz",
    "lxc",
    ".version",
    ".members",
    ".vmlist",
    ".rrd",
    ".clusterlog",
    ".debug",
];

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The daemon binary named by `LWCFS_BIN`. Panics with instructions when it is not set: the
/// FUSE tier never skips.
pub fn lwcfs_bin() -> PathBuf {
    let Some(p) = std::env::var_os("LWCFS_BIN") else {
        panic!(
            "LWCFS_BIN is not set. The FUSE tier tests the real daemon: build it with \
             `cargo build -p lwcfs`, then run (as root) \
             `LWCFS_BIN=$PWD/target/debug/lwcfs cargo test -p lwcfs-compat-tests --features fuse` \
             or simply `compat-tests/run-all.sh`."
        )
    };
    let p = PathBuf::from(p);
    assert!(p.is_file(), "LWCFS_BIN={} is not a file", p.display());
    fs::canonicalize(&p).unwrap_or(p)
}

/// Root, `/dev/fuse` and the util-linux tools: without them the tier fails, loudly.
pub fn check_privileges() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the FUSE tier must run as root (it mounts filesystems in new namespaces): \
         sudo compat-tests/run-all.sh"
    );
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: load the fuse module (modprobe fuse) and install fuse3"
    );
    for tool in ["unshare", "nsenter", "setpriv", "mount", "hostname"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "`{tool}` is not in PATH: install util-linux (and hostname)"
        );
    }
}

/// Options of one daemon start (unset: the daemon's default).
#[derive(Clone, Debug, Default)]
pub struct Opts {
    pub commit_delay: Option<&'static str>,
    pub lock_timeout: Option<u32>,
    pub hold_bound: Option<&'static str>,
    pub defer_bound: Option<&'static str>,
    pub debug: bool,
}

impl Opts {
    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if self.debug {
            a.push("-d".to_owned());
        }
        if let Some(d) = self.commit_delay {
            a.extend(["--commit-delay".to_owned(), d.to_owned()]);
        }
        if let Some(t) = self.lock_timeout {
            a.extend(["--lock-timeout".to_owned(), t.to_string()]);
        }
        if let Some(h) = self.hold_bound {
            a.extend(["--hold-bound".to_owned(), h.to_owned()]);
        }
        if let Some(b) = self.defer_bound {
            a.extend(["--defer-bound".to_owned(), b.to_owned()]);
        }
        a
    }
}

/// The shell that builds the namespaces' view and then becomes the daemon.
/// `$1` = sandbox directory, `$2` = daemon binary, the rest = daemon options.
const NS_SCRIPT: &str = r#"set -eu
T="$1"; BIN="$2"; shift 2
mount -t tmpfs -o mode=0755 lwcfs-overlays "$T/ov"
mkdir -p "$T/ov/etc/up" "$T/ov/etc/work" "$T/ov/varlib/up" "$T/ov/varlib/work"
mount -t overlay lwcfs-etc -o "lowerdir=/etc,upperdir=$T/ov/etc/up,workdir=$T/ov/etc/work" /etc
mount -t overlay lwcfs-varlib -o "lowerdir=/var/lib,upperdir=$T/ov/varlib/up,workdir=$T/ov/varlib/work" /var/lib
mkdir -p /etc/pve /etc/corosync /var/lib/pve-cluster
mount --bind "$T/hosts" /etc/hosts
mount --bind "$T/corosync" /etc/corosync
mount --bind "$T/db" /var/lib/pve-cluster
mount --bind "$T/run" /run
hostname "$HOSTNAME_IN_NS"
exec "$BIN" -f -l "$@"
"#;

/// Who runs a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// `nobody`, no supplementary groups.
    Nobody,
    /// `nobody` with `www-data` as a supplementary group.
    WwwDataMember,
}

/// Who runs `lwcfs-ipcc` (the IPC service looks at uid and *primary* gid only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpcUser {
    /// uid 0, gid 0: read-write.
    Root,
    /// `nobody` with primary group `www-data`: read-only.
    WwwData,
    /// uid 0 with primary group `www-data`: read-only too.
    RootWwwData,
    /// `nobody`, group `nogroup`: refused.
    Nobody,
    /// `nobody` with `www-data` only as a supplementary group: refused.
    WwwDataSupplementary,
    /// uid 0 with primary group `nogroup`: refused.
    RootOtherGroup,
}

/// What one `lwcfs-ipcc script` run printed: the client's pid and one outcome per command.
#[derive(Debug)]
pub struct IpcRun {
    pub pid: u32,
    pub outcomes: Vec<ipcc::script::Outcome>,
}

pub struct Sandbox {
    dir: tempfile::TempDir,
    bin: PathBuf,
    probe: Option<PathBuf>,
    ipcc: Option<PathBuf>,
}

impl Sandbox {
    /// A fresh sandbox with an empty database directory. Checks the privileges first.
    pub fn new() -> Sandbox {
        check_privileges();
        let bin = lwcfs_bin();
        let dir = tempfile::Builder::new()
            .prefix("lwcfs-compat-")
            .tempdir()
            .expect("tempdir");
        let t = dir.path();
        for d in ["ov", "run", "corosync"] {
            fs::create_dir_all(t.join(d)).expect("sandbox dirs");
        }
        fs::create_dir(t.join("db")).expect("db dir");
        fs::set_permissions(t.join("db"), fs::Permissions::from_mode(0o700)).expect("chmod db");
        fs::set_permissions(t.join("run"), fs::Permissions::from_mode(0o755)).expect("chmod run");
        fs::write(
            t.join("hosts"),
            format!("127.0.0.1 localhost\n{NODE_IP} {HOSTNAME}.sandbox {HOSTNAME}\n"),
        )
        .expect("hosts");
        // Unprivileged probes must traverse to their binary.
        fs::set_permissions(t, fs::Permissions::from_mode(0o755)).expect("chmod sandbox");
        Sandbox {
            dir,
            bin,
            probe: None,
            ipcc: None,
        }
    }

    /// Copy a helper binary where unprivileged users can run it.
    fn install(&self, exe: &str) -> PathBuf {
        let bin = self.path().join("bin");
        fs::create_dir_all(&bin).expect("bin dir");
        let name = Path::new(exe).file_name().expect("helper name");
        let dst = bin.join(name);
        fs::copy(exe, &dst).unwrap_or_else(|e| panic!("copy {exe}: {e}"));
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod bin");
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).expect("chmod helper");
        dst
    }

    /// Like [`Sandbox::new`], with the `lwcfs-ipcc` client installed for [`Daemon::ipcc`].
    pub fn with_ipcc(ipcc_exe: &str) -> Sandbox {
        let mut sb = Sandbox::new();
        sb.ipcc = Some(sb.install(ipcc_exe));
        sb
    }

    /// Like [`Sandbox::new`], with the probe binary installed for [`Daemon::probe`].
    pub fn with_probe(probe_exe: &str) -> Sandbox {
        let mut sb = Sandbox::new();
        sb.probe = Some(sb.install(probe_exe));
        sb
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The database as the test process sees it.
    pub fn db_path(&self) -> PathBuf {
        self.path().join("db/config.db")
    }

    /// The sandbox's `/run`.
    pub fn run_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    pub fn log_path(&self) -> PathBuf {
        self.path().join("daemon.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Start the daemon and wait until it is mounted and serving; panics with its log if it
    /// does not come up.
    pub fn start(&self, opts: &Opts) -> Daemon<'_> {
        self.try_start(opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start the daemon; `Err` with its exit status and log if it exits before it is ready.
    pub fn try_start(&self, opts: &Opts) -> Result<Daemon<'_>, String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log");
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--uts",
                "--propagation",
                "private",
                "--",
            ])
            .args(["sh", "-c", NS_SCRIPT, "sh"])
            .arg(self.path())
            .arg(&self.bin)
            .args(opts.args())
            .env("HOSTNAME_IN_NS", HOSTNAME)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn unshare");
        let pid = child.id() as i32;
        let mut d = Daemon {
            sb: self,
            child,
            pid,
            done: false,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = d.child.try_wait().expect("try_wait") {
                d.done = true;
                return Err(format!(
                    "lwcfs exited before it was ready ({status}); its log:\n{}",
                    self.log()
                ));
            }
            if d.ready() {
                return Ok(d);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "lwcfs (pid {pid}) not ready after {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

/// A running daemon. Dropping it stops it.
pub struct Daemon<'a> {
    sb: &'a Sandbox,
    child: Child,
    pid: i32,
    done: bool,
}

impl<'a> Daemon<'a> {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn sandbox(&self) -> &'a Sandbox {
        self.sb
    }

    /// `/etc/pve` inside the daemon's namespaces.
    pub fn mnt(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/etc/pve", self.pid))
    }

    /// A path below the mount.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt().join(rel)
    }

    /// Mounted (a FUSE mount at /etc/pve in its namespace) and the pid file written (the last
    /// step of its startup).
    fn ready(&self) -> bool {
        let pidfile = fs::read_to_string(self.sb.run_dir().join("pve-cluster.pid"));
        if pidfile
            .map(|s| s.trim() != self.pid.to_string())
            .unwrap_or(true)
        {
            return false;
        }
        let info = fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).unwrap_or_default();
        info.lines().any(|l| {
            let mp = l.split(' ').nth(4);
            let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            mp == Some("/etc/pve") && fstype.is_some_and(|t| t.starts_with("fuse"))
        })
    }

    /// The daemon process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait until the writer has nothing pending (everything committable committed).
    pub fn wait_idle(&self, timeout: Duration) {
        let idle = wait_until(timeout, || self.stat("pending") == 0);
        assert!(idle, "still pending after {timeout:?}: {}", self.stats());
    }

    /// Send `sig`, unless the process has already been reaped (its pid may belong to another
    /// process by now).
    fn signal(&mut self, sig: Signal) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.pid), sig);
        }
    }

    /// Send SIGTERM without waiting (see [`Daemon::wait_exit`]).
    pub fn sigterm(&mut self) {
        self.signal(Signal::SIGTERM);
    }

    /// The exit status once the daemon has exited, or `None` after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status
    }

    /// SIGTERM and wait for the exit (clean shutdown).
    pub fn stop(mut self) -> ExitStatus {
        let status = self.terminate();
        self.done = true;
        status
    }

    /// SIGKILL: a crash.
    pub fn kill9(mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
        self.done = true;
    }

    fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        if let Some(s) = self.wait_exit(STOP_TIMEOUT) {
            return s;
        }
        self.signal(Signal::SIGKILL);
        let s = self.child.wait().expect("wait");
        panic!(
            "lwcfs (pid {}) ignored SIGTERM for {STOP_TIMEOUT:?} (killed: {s}); its log:\n{}",
            self.pid,
            self.sb.log()
        );
    }

    fn control(&self, cmd: &str) -> String {
        let out = Command::new(&self.sb.bin)
            .arg(cmd)
            .args(if cmd == "stats" {
                &["--json"][..]
            } else {
                &[][..]
            })
            .arg("--db")
            .arg(self.sb.db_path())
            .output()
            .expect("run lwcfs control command");
        assert!(
            out.status.success(),
            "`lwcfs {cmd}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `lwcfs stats --json`.
    pub fn stats(&self) -> serde_json::Value {
        let text = self.control("stats");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stats {text:?}: {e}"))
    }

    /// One counter of `lwcfs stats --json`.
    pub fn stat(&self, key: &str) -> u64 {
        let s = self.stats();
        s[key]
            .as_u64()
            .unwrap_or_else(|| panic!("stats has no counter {key:?}: {s}"))
    }

    /// `lwcfs flush`: everything committed and on disk when it returns.
    pub fn flush(&self) {
        self.control("flush");
    }

    /// Run `lwcfs-probe` as `who` inside the daemon's namespaces (see [`Sandbox::with_probe`]).
    pub fn probe(&self, who: Who, op: &str, path: &str, arg: Option<&str>) -> Outcome {
        let exe = self
            .sb
            .probe
            .as_ref()
            .expect("sandbox made without Sandbox::with_probe");
        let uid = nix::unistd::User::from_name("nobody")
            .ok()
            .flatten()
            .expect("user nobody")
            .uid;
        let gid = nix::unistd::Group::from_name("nogroup")
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
            .unwrap_or(65534);
        let groups = match who {
            Who::Nobody => "--clear-groups".to_owned(),
            Who::WwwDataMember => format!("--groups={}", www_data_gid()),
        };
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid.to_string(), "-m", "-u", "--", "setpriv"])
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg(groups)
            .arg("--")
            .arg(exe)
            .arg(op)
            .arg(Path::new("/etc/pve").join(path));
        if let Some(a) = arg {
            cmd.arg(OsStr::new(a));
        }
        let out = cmd.output().expect("run nsenter");
        assert!(
            out.status.success(),
            "probe {op} {path} as {who:?} did not run ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        probe::decode(&out.stdout).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Run `f` on a thread inside the daemon's network namespace (where its `@pve2` socket
    /// is), as this process: root, read-write for the IPC service.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = fs::File::open(format!("/proc/{}/ns/net", self.pid)).expect("open netns");
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns net");
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Run `lwcfs-ipcc script` as `who` inside the daemon's namespaces with these commands
    /// (see [`Sandbox::with_ipcc`]).
    pub fn ipcc(&self, who: IpcUser, cmds: &[ipcc::script::Command]) -> IpcRun {
        let exe = self
            .sb
            .ipcc
            .as_ref()
            .expect("sandbox made without Sandbox::with_ipcc");
        let nobody = nix::unistd::User::from_name("nobody")
            .ok()
            .flatten()
            .expect("user nobody")
            .uid
            .as_raw();
        let nogroup = nix::unistd::Group::from_name("nogroup")
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
            .unwrap_or(65534);
        let www = www_data_gid();
        let ids: Option<(u32, u32, String)> = match who {
            IpcUser::Root => None,
            IpcUser::WwwData => Some((nobody, www, "--clear-groups".into())),
            IpcUser::RootWwwData => Some((0, www, "--clear-groups".into())),
            IpcUser::Nobody => Some((nobody, nogroup, "--clear-groups".into())),
            IpcUser::WwwDataSupplementary => Some((nobody, nogroup, format!("--groups={www}"))),
            IpcUser::RootOtherGroup => Some((0, nogroup, "--clear-groups".into())),
        };
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid.to_string(), "-n", "-m", "-u", "--"]);
        if let Some((uid, gid, groups)) = ids {
            cmd.arg("setpriv")
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg(groups)
                .arg("--");
        }
        cmd.arg(exe)
            .arg("script")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run nsenter lwcfs-ipcc");
        let input: String = cmds.iter().map(|c| c.line() + "\n").collect();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            let _ = stdin.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().expect("wait lwcfs-ipcc");
        assert!(
            out.status.success(),
            "lwcfs-ipcc as {who:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8 output");
        let mut lines = text.lines();
        let pid = lines
            .next()
            .and_then(|l| l.strip_prefix("pid "))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("lwcfs-ipcc printed no pid: {text:?}"));
        let outcomes = lines
            .map(|l| ipcc::script::parse_result(l).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        IpcRun { pid, outcomes }
    }

    /// The daemon's resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Run a command as root inside the daemon's namespaces (cwd `/etc/pve`).
    pub fn sh(&self, script: &str) -> std::process::Output {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-u", "--", "sh", "-c"])
            .arg(format!("cd /etc/pve && {script}"))
            .output()
            .expect("run nsenter")
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.sigterm();
            if self.wait_exit(STOP_TIMEOUT).is_none() {
                self.signal(Signal::SIGKILL);
                let _ = self.child.wait();
            }
        }
        if std::thread::panicking() {
            let log = self.sb.log_path();
            eprintln!("---- lwcfs log ({}) ----\n{}", log.display(), self.sb.log());
        }
    }
}

/// The numeric gid of `www-data`, as the daemon looks it up.
pub fn www_data_gid() -> u32 {
    nix::unistd::Group::from_name("www-data")
        .ok()
        .flatten()
        .expect("group www-data (the daemon needs it too)")
        .gid
        .as_raw()
}

/// Wait until `cond` holds, polling; false after `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_options_become_flags() {
        let o = Opts {
            commit_delay: Some("1s"),
            lock_timeout: Some(2),
            hold_bound: Some("1s"),
            defer_bound: Some("60s"),
            debug: true,
        };
        assert_eq!(
            o.args(),
            [
                "-d",
                "--commit-delay",
                "1s",
                "--lock-timeout",
                "2",
                "--hold-bound",
                "1s",
                "--defer-bound",
                "60s"
            ]
        );
        assert!(Opts::default().args().is_empty());
    }

    #[test]
    fn wait_until_reports_timeouts() {
        assert!(wait_until(Duration::from_millis(10), || true));
        assert!(!wait_until(Duration::from_millis(30), || false));
    }
}
