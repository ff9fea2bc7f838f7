//! The sandbox: one loop-mounted ext4 database directory and private namespaces per daemon.
//!
//! Layout. A scratch directory on the host holds the ext4 image and the per-instance files. An
//! *anchor* process (a shell script started by util-linux `unshare`, so that any program can
//! build a sandbox, the compat-tests' test binaries too) makes new mount and UTS namespaces and
//! a new network namespace (or joins a named one: a node of the cluster rig), lays the
//! instance's paths over the fixed ones a pmxcfs daemon expects, and then only waits; daemons,
//! workloads and helpers join its namespaces with `setns`. The namespaces outlive the daemon,
//! so the database file system can be synced and read after the daemon has exited, and a
//! daemon can be restarted on the same database.
//!
//! Invariants:
//! - Nothing is mounted in the host's namespace, and every mount in the anchor's is private:
//!   the host's `/etc/pve`, `/var/lib/pve-cluster` and `/run` are never touched.
//! - Everything started is stopped by pid on every path out: [`Daemon`] and [`Sandbox`] kill
//!   what they own on drop, and every child also gets `PR_SET_PDEATHSIG`.

use crate::diskstat::DiskStat;
use crate::procio::ProcIo;
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Paths a pmxcfs daemon uses, fixed in the C daemon.
pub const DB_DIR: &str = "/var/lib/pve-cluster";
pub const MOUNT_POINT: &str = "/etc/pve";
/// The sandbox's hostname: the seed tree's first node.
pub const HOSTNAME: &str = "pve1";
/// The address the hostname resolves to in the sandbox's `/etc/hosts` (TEST-NET-1, RFC 5737).
/// Nothing listens or sends there: the network namespace has only its own loopback.
pub const HOST_ADDR: &str = "192.0.2.1";

/// An error with the context of where it happened.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn ctx<T, E: std::fmt::Display>(
    r: std::result::Result<T, E>,
    what: impl FnOnce() -> String,
) -> Result<T> {
    r.map_err(|e| Error(format!("{}: {e}", what())))
}

fn run_tool(cmd: &mut Command) -> Result<String> {
    let out = ctx(cmd.output(), || format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        return Err(Error(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// How the sandbox is built.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where scratch directories go (the ext4 image lives there too).
    pub scratch_parent: PathBuf,
    pub image_mib: u64,
}

/// Who the sandbox is on the network: its hostname, its `/etc/hosts`, and its network
/// namespace.
#[derive(Debug, Clone)]
pub struct Identity {
    pub hostname: String,
    /// The content of the sandbox's `/etc/hosts`.
    pub hosts: String,
    /// Join this named network namespace (`ip netns add`) instead of making a new one that
    /// holds nothing but its loopback.
    pub netns: Option<String>,
}

impl Identity {
    /// The single-daemon bench: [`HOSTNAME`] resolving to [`HOST_ADDR`], no network.
    pub fn standalone() -> Identity {
        Identity {
            hostname: HOSTNAME.into(),
            hosts: format!(
                "127.0.0.1\tlocalhost\n{HOST_ADDR}\t{HOSTNAME}.bench.invalid {HOSTNAME}\n\
                 ::1\tlocalhost ip6-localhost ip6-loopback\n"
            ),
            netns: None,
        }
    }
}

/// The anchor: run by `unshare` (after `nsenter --net` for a named network namespace) inside
/// new mount and UTS namespaces, mounts private. `$1` scratch directory, `$2` loop device,
/// `$3` hostname, `$4` 1 if the network namespace is new (its loopback is brought up). Prints
/// `ready`, then waits until its stdin closes.
const ANCHOR_SCRIPT: &str = r#"set -eu
S="$1"; DEV="$2"; H="$3"
if [ "$4" = 1 ]; then ip link set lo up 2>/dev/null || true; fi
hostname "$H"
# /etc and /var/lib become overlays whose upper layers live in the scratch directory, so mount
# points that do not exist on the host are made without touching the host.
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$S/etc.upper,workdir=$S/etc.work" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$S/varlib.upper,workdir=$S/varlib.work" /var/lib
mkdir -p /var/lib/pve-cluster /etc/pve /etc/corosync
mount -t ext4 "$DEV" /var/lib/pve-cluster
mount --bind "$S/mnt" /etc/pve
mount --bind "$S/corosync" /etc/corosync
mount --bind "$S/hosts" /etc/hosts
mount --bind "$S/run" /run
echo ready
exec cat >/dev/null
"#;

/// The namespaces of the anchor, opened once so that children can `setns` into them.
struct Namespaces {
    mnt: File,
    net: File,
    uts: File,
}

/// One sandbox: scratch directory, ext4 image on a loop device, anchor process.
pub struct Sandbox {
    scratch: PathBuf,
    loop_dev: Option<String>,
    anchor: Option<Child>,
    anchor_stdin: Option<ChildStdin>,
    ns: Option<Namespaces>,
}

impl Sandbox {
    /// Builds a fresh sandbox: new image, `mkfs.ext4` without lazy initialisation, a loop
    /// device, and an anchor with the database file system mounted at [`DB_DIR`].
    pub fn create(cfg: &Config, tag: &str) -> Result<Sandbox> {
        Sandbox::create_as(cfg, tag, &Identity::standalone())
    }

    /// [`Sandbox::create`] with another hostname, `/etc/hosts` and network namespace (a node
    /// of the cluster rig).
    pub fn create_as(cfg: &Config, tag: &str, who: &Identity) -> Result<Sandbox> {
        let scratch = cfg
            .scratch_parent
            .join(format!("lwcfs-bench.{}.{tag}", std::process::id()));
        if scratch.exists() {
            ctx(fs::remove_dir_all(&scratch), || {
                format!("cannot clear {}", scratch.display())
            })?;
        }
        ctx(fs::create_dir_all(&scratch), || {
            format!("cannot create {}", scratch.display())
        })?;
        let mut sb = Sandbox {
            scratch,
            loop_dev: None,
            anchor: None,
            anchor_stdin: None,
            ns: None,
        };
        sb.build(cfg, who)?;
        Ok(sb)
    }

    fn build(&mut self, cfg: &Config, who: &Identity) -> Result<()> {
        let image = self.scratch.join("db.ext4");
        let f = ctx(File::create(&image), || {
            format!("cannot create {}", image.display())
        })?;
        ctx(f.set_len(cfg.image_mib << 20), || {
            "cannot size the image".into()
        })?;
        drop(f);
        run_tool(
            Command::new("mkfs.ext4")
                .args([
                    "-q",
                    "-F",
                    "-E",
                    "lazy_itable_init=0,lazy_journal_init=0",
                    "-L",
                    "lwcfs-bench",
                ])
                .arg(&image),
        )?;
        let dev = run_tool(
            Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&image),
        )?;
        let name = dev
            .strip_prefix("/dev/")
            .filter(|n| n.starts_with("loop"))
            .ok_or_else(|| Error(format!("losetup printed {dev:?}")))?
            .to_string();
        self.loop_dev = Some(name);
        for d in [
            "run",
            "mnt",
            "corosync",
            "etc.upper",
            "etc.work",
            "varlib.upper",
            "varlib.work",
        ] {
            ctx(fs::create_dir_all(self.scratch.join(d)), || {
                format!("cannot create scratch dir {d}")
            })?;
        }
        ctx(fs::write(self.scratch.join("hosts"), &who.hosts), || {
            "cannot write hosts".into()
        })?;

        let mut anchor = match &who.netns {
            // Join the node's network namespace, then make the rest.
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .args(["--", "unshare", "--mount", "--uts"]);
                c
            }
            None => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--net", "--uts"]);
                c
            }
        };
        anchor
            .args([
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                ANCHOR_SCRIPT,
                "sh",
            ])
            .arg(&self.scratch)
            .arg(format!(
                "/dev/{}",
                self.loop_dev.as_deref().unwrap_or_default()
            ))
            .arg(&who.hostname)
            .arg(if who.netns.is_some() { "0" } else { "1" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only makes two
        // async-signal-safe syscalls (setpgid, prctl); it touches no memory of the parent.
        unsafe {
            anchor.pre_exec(|| {
                detach_from_terminal_and_die_with_parent()?;
                Ok(())
            });
        }
        let mut child = ctx(anchor.spawn(), || "cannot start the sandbox anchor".into())?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        let _ = BufReader::new(stdout).read_line(&mut line);
        self.anchor_stdin = child.stdin.take();
        let pid = child.id();
        let stderr = child.stderr.take();
        self.anchor = Some(child);
        if line.trim() != "ready" {
            let mut err = String::new();
            if let Some(mut s) = stderr {
                let _ = s.read_to_string(&mut err);
            }
            return Err(Error(format!("the sandbox anchor failed: {}", err.trim())));
        }
        let open = |kind: &str| {
            ctx(File::open(format!("/proc/{pid}/ns/{kind}")), || {
                format!("cannot open the anchor's {kind} namespace")
            })
        };
        self.ns = Some(Namespaces {
            mnt: open("mnt")?,
            net: open("net")?,
            uts: open("uts")?,
        });
        // The device is mounted now: detaching sets autoclear, so the kernel releases it when
        // the namespace and its mount go away, even if this process is killed.
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(format!("/dev/{}", self.loop_name()))
            .stderr(Stdio::null())
            .status();
        Ok(())
    }

    /// The loop device's name (`loopN`).
    pub fn loop_name(&self) -> &str {
        self.loop_dev.as_deref().unwrap_or_default()
    }

    /// The scratch directory (daemon logs go there).
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    fn anchor_pid(&self) -> u32 {
        self.anchor.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// A path inside the sandbox, seen from the host through the anchor's root (not for
    /// SQLite: see [`Sandbox::in_mount_ns`]).
    pub fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.anchor_pid()))
    }

    /// A command that runs inside the sandbox's namespaces, in its own process group, killed
    /// when this process dies.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let ns = self.ns.as_ref().expect("sandbox is built");
        let fds = [
            (ns.mnt.as_fd().try_clone_to_owned(), CloneFlags::CLONE_NEWNS),
            (
                ns.net.as_fd().try_clone_to_owned(),
                CloneFlags::CLONE_NEWNET,
            ),
            (
                ns.uts.as_fd().try_clone_to_owned(),
                CloneFlags::CLONE_NEWUTS,
            ),
        ];
        let fds: Vec<_> = fds
            .into_iter()
            .filter_map(|(fd, flag)| fd.ok().map(|fd| (fd, flag)))
            .collect();
        // SAFETY: the closure runs in the forked (single-threaded) child before exec. It only
        // calls setns, chdir, setpgid and prctl on file descriptors it owns, all
        // async-signal-safe, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for (fd, flag) in &fds {
                    setns(fd, *flag)?;
                }
                nix::unistd::chdir("/")?;
                detach_from_terminal_and_die_with_parent()?;
                Ok(())
            });
        }
        cmd
    }

    /// `syncfs` of the database file system, then the loop device's counters.
    pub fn sync_and_read(&self) -> Result<DiskStat> {
        let dir = self.inside(DB_DIR);
        let f = ctx(File::open(&dir), || {
            format!("cannot open {}", dir.display())
        })?;
        ctx(
            nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)),
            || "syncfs".into(),
        )?;
        ctx(
            DiskStat::read(Path::new("/sys/block"), self.loop_name()),
            || "cannot read the loop device's stat".into(),
        )
    }

    /// Runs `f` on a thread of its own that has joined the sandbox's mount namespace, so that
    /// the sandbox's paths ([`DB_DIR`], …) mean there what they mean to the daemon. For SQLite:
    /// it resolves symbolic links in a database's path, so a `/proc/PID/root/…` path
    /// ([`Sandbox::inside`]) would open the host's file. A panic in `f` is resumed here.
    pub fn in_mount_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let ns = self.ns.as_ref().expect("sandbox is built");
        std::thread::scope(|s| {
            let t = s.spawn(|| -> Result<T> {
                // A thread shares its root and cwd with the process until it unshares them;
                // only then may it change its mount namespace.
                ctx(nix::sched::unshare(CloneFlags::CLONE_FS), || {
                    "unshare(CLONE_FS)".into()
                })?;
                ctx(setns(&ns.mnt, CloneFlags::CLONE_NEWNS), || {
                    "setns into the sandbox's mount namespace".into()
                })?;
                Ok(f())
            });
            t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Lazily unmounts a FUSE mount left on [`MOUNT_POINT`] by a daemon that did not unmount
    /// it (killed, crashed), so that the next daemon mounts on the directory again.
    pub fn unmount_stale_fuse(&self) -> Result<()> {
        let info = fs::read_to_string(format!("/proc/{}/mountinfo", self.anchor_pid()))
            .unwrap_or_default();
        if fuse_mounted_at(&info, MOUNT_POINT) {
            run_tool(self.command("umount").args(["-l", MOUNT_POINT]))?;
        }
        Ok(())
    }

    /// Bytes of the database and its WAL.
    pub fn db_bytes(&self) -> u64 {
        ["config.db", "config.db-wal"]
            .iter()
            .filter_map(|f| fs::metadata(self.inside(&format!("{DB_DIR}/{f}"))).ok())
            .map(|m| m.len())
            .sum()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ns = None;
        self.anchor_stdin = None;
        if let Some(mut child) = self.anchor.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        if let Some(dev) = self.loop_dev.take() {
            // The file system went with the namespace; the device may take a moment to be
            // released. Detaching a busy device sets autoclear, which detaches it at release.
            for _ in 0..50 {
                let ok = Command::new("losetup")
                    .arg("-d")
                    .arg(format!("/dev/{dev}"))
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok || !backing_file_attached(&dev) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

fn backing_file_attached(dev: &str) -> bool {
    Path::new(&format!("/sys/block/{dev}/loop/backing_file")).exists()
}

fn detach_from_terminal_and_die_with_parent() -> io::Result<()> {
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    Ok(())
}

/// How a daemon ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Exit {
    /// Exited with status 0 after SIGTERM, within the timeout.
    Clean,
    Status(i32),
    Signal(String),
    /// Still running when the timeout expired; it was killed.
    Hung,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Clean => f.write_str("exited 0"),
            Exit::Status(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => write!(f, "killed by {s}"),
            Exit::Hung => f.write_str("still running at the stop timeout (hung; killed)"),
        }
    }
}

/// What stopping a daemon observed.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub exit: Exit,
    /// `/proc/<pid>/io`, read after exit and before reaping (so shutdown writes count).
    pub io: Option<ProcIo>,
    /// CPU time of the daemon (user + system, all its threads), read with `io`.
    pub cpu_ms: Option<f64>,
    pub stop_ms: f64,
}

/// A daemon running in a sandbox; killed on drop unless stopped.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    /// SIGTERM was sent already ([`Daemon::terminate`]).
    terminated: bool,
}

impl Daemon {
    /// Starts `binary args` in the sandbox's namespaces, its output appended to `log`.
    pub fn start(sb: &Sandbox, binary: &Path, args: &[String], log: PathBuf) -> Result<Daemon> {
        let out = ctx(File::options().create(true).append(true).open(&log), || {
            format!("cannot create {}", log.display())
        })?;
        let err = ctx(out.try_clone(), || "dup log".into())?;
        let mut cmd = sb.command(binary);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        let child = ctx(cmd.spawn(), || format!("cannot start {}", binary.display()))?;
        Ok(Daemon {
            child: Some(child),
            log,
            terminated: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// The last lines of the daemon's output, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }

    /// Whether the daemon has exited (it is not reaped yet).
    pub fn has_exited(&self) -> bool {
        self.exited().is_some()
    }

    fn exited(&self) -> Option<Exit> {
        let pid = Pid::from_raw(self.pid());
        match waitid(
            Id::Pid(pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Ok(WaitStatus::Exited(_, code)) => Some(if code == 0 {
                Exit::Clean
            } else {
                Exit::Status(code)
            }),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Signal(sig.as_str().to_string())),
            Ok(_) => None,
            Err(_) => Some(Exit::Signal("unknown (already reaped)".into())),
        }
    }

    /// Waits until a FUSE file system is mounted on [`MOUNT_POINT`] in the daemon's namespace.
    pub fn wait_mounted(&self, timeout: Duration, interrupted: &dyn Fn() -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            let info =
                fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).unwrap_or_default();
            if fuse_mounted_at(&info, MOUNT_POINT) {
                return Ok(());
            }
            if let Some(exit) = self.exited() {
                return Err(Error(format!(
                    "daemon exited before mounting ({exit}):\n{}",
                    self.log_tail()
                )));
            }
            if interrupted() {
                return Err(Error("interrupted".into()));
            }
            if start.elapsed() > timeout {
                return Err(Error(format!(
                    "no FUSE mount on {MOUNT_POINT} after {timeout:?}:\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM now, without waiting (so that several daemons stop at once); a later
    /// [`Daemon::stop`] does not send it again.
    pub fn terminate(&mut self) {
        if !self.terminated {
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
            self.terminated = true;
        }
    }

    /// SIGTERM (unless [`Daemon::terminate`] sent it), then wait up to `timeout` for the exit;
    /// `/proc/<pid>/io` is read before the zombie is reaped. A daemon still running at the
    /// timeout is killed and reported `Hung`.
    pub fn stop(mut self, timeout: Duration) -> Stopped {
        let pid = self.pid();
        let start = Instant::now();
        self.terminate();
        let mut exit = loop {
            if let Some(e) = self.exited() {
                break e;
            }
            if start.elapsed() > timeout {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = waitid(
                    Id::Pid(Pid::from_raw(pid)),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
                );
                break Exit::Hung;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stop_ms = start.elapsed().as_secs_f64() * 1000.0;
        let io = ProcIo::read(pid).ok();
        let cpu_ms = crate::procio::cpu_ms(pid);
        if let Some(mut child) = self.child.take() {
            if let Ok(status) = child.wait() {
                if exit == Exit::Clean && !status.success() {
                    exit = Exit::Status(status.code().unwrap_or(-1));
                }
            }
        }
        Stopped {
            exit,
            io,
            cpu_ms,
            stop_ms,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Whether `mountinfo` text lists a FUSE file system mounted at `point`.
pub fn fuse_mounted_at(mountinfo: &str, point: &str) -> bool {
    mountinfo.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (pre, post) = (halves.next().unwrap_or(""), halves.next().unwrap_or(""));
        let mount_point = pre.split(' ').nth(4).unwrap_or("");
        let fstype = post.split(' ').next().unwrap_or("");
        mount_point == point && (fstype == "fuse" || fstype.starts_with("fuse."))
    })
}

/// Runs a command to completion with a timeout, capturing its output; kills it on timeout.
pub fn output_with_timeout(
    mut cmd: Command,
    timeout: Duration,
    interrupted: &dyn Fn() -> bool,
) -> Result<std::process::Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ctx(cmd.spawn(), || format!("cannot start {cmd:?}"))?;
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = ctx(child.try_wait(), || "wait".into())? {
            break status;
        }
        if interrupted() || start.elapsed() > timeout {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            return Err(Error(if interrupted() {
                "interrupted".into()
            } else {
                format!("{cmd:?} timed out after {timeout:?}")
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fuse_mounts_in_mountinfo() {
        let info = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    40 22 7:3 / /var/lib/pve-cluster rw,relatime - ext4 /dev/loop3 rw\n\
                    41 22 254:0 /tmp/x/mnt /etc/pve rw,relatime - ext4 /dev/vda rw\n";
        assert!(!fuse_mounted_at(info, "/etc/pve"));
        let c = format!(
            "{info}50 41 0:55 / /etc/pve rw,nosuid,nodev,relatime - fuse /dev/fuse rw,user_id=0\n"
        );
        assert!(fuse_mounted_at(&c, "/etc/pve"));
        let rust = format!("{info}50 41 0:55 / /etc/pve rw - fuse.lwcfs lwcfs rw\n");
        assert!(fuse_mounted_at(&rust, "/etc/pve"));
        assert!(!fuse_mounted_at(&rust, "/etc"));
    }
}
