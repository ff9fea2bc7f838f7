//! Startup and shutdown, in C's order: checks, daemonize, lock file, database, writer, mount,
//! control socket, pid file; then wait for a signal and stop in reverse order.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lwcfs_backend::WriterConfig;
use lwcfs_memdb::{Ctx, Mtime, NodeId, Op, TreePath};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{self, SigSet, Signal};
use nix::unistd::Pid;

use crate::cli::DaemonArgs;
use crate::cluster::{Cluster, ClusterOptions};
use crate::control::ControlServer;
use crate::corosync_conf;
use crate::kcache::KernelCache;
use crate::service::{Service, ServiceConfig, Shared, Tree};
use crate::status::Status;

/// A startup failure, said plainly.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, StartError> {
    Err(StartError(msg.into()))
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// uname nodename up to the first dot.
pub fn nodename() -> String {
    let h = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    h.split('.').next().unwrap_or("").to_owned()
}

/// C refuses to start unless the node name resolves to a non-loopback address.
fn resolves_to_non_loopback(name: &str) -> bool {
    (name, 0)
        .to_socket_addrs()
        .map(|mut it| it.any(|a| !a.ip().is_loopback()))
        .unwrap_or(false)
}

/// Run the daemon. Returns the process exit code.
pub fn run(args: DaemonArgs) -> Result<(), StartError> {
    let nodename = nodename();
    if nodename.is_empty() {
        return fail("unable to read the node name (uname)");
    }
    if !resolves_to_non_loopback(&nodename) {
        tracing::warn!(
            "unable to resolve node name '{nodename}' to a non-loopback IP address - missing \
             entry in '/etc/hosts' or DNS? (ignored in local mode)"
        );
    }
    let gid = match nix::unistd::Group::from_name("www-data") {
        Ok(Some(g)) => g.gid.as_raw(),
        _ => return fail("unable to get gid of group 'www-data'"),
    };
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));

    if !args.foreground {
        daemonize()?;
    }
    if std::env::var_os(READY_ENV).is_some() {
        let _ = nix::unistd::setsid();
    }

    // Every thread started from here on inherits this mask; the main thread waits for them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| StartError(format!("cannot block signals: {e}")))?;
    // A write to a closed socket returns EPIPE instead of killing us.
    let mut pipe = SigSet::empty();
    pipe.add(Signal::SIGPIPE);
    let _ = pipe.thread_block();

    let db_dir = args.paths.db_dir();
    if let Err(e) = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&db_dir)
    {
        return fail(format!(
            "cannot create database directory {}: {e}",
            db_dir.display()
        ));
    }
    let _ = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&args.pve_run_dir);
    let _ = nix::unistd::chown(&args.pve_run_dir, Some(0.into()), Some(gid.into()));

    let _lock = take_lock(&db_dir.join(".pmxcfs.lockfile"), &args.paths.db)?;

    let start = unix_now();
    let opened = lwcfs_backend::open(&args.paths.db, Mtime(start)).map_err(|e| {
        StartError(format!(
            "unable to open database '{}': {e}",
            args.paths.db.display()
        ))
    })?;
    if opened.created {
        tracing::info!("created a new database {}", args.paths.db.display());
    }
    let db = opened.memdb;
    tracing::info!(
        "memdb open '{}' (version {})",
        args.paths.db.display(),
        db.version()
    );

    let status = Arc::new(Status::new(
        nodename.clone(),
        start,
        std::process::id(),
        args.debug,
    ));
    let tree = Tree::new(db);
    let wcfg = WriterConfig {
        commit_delay: args.commit_delay,
        hold_bound: args.hold_bound,
    };
    let writer = Arc::new(
        lwcfs_backend::spawn(&args.paths.db, tree.clone(), wcfg)
            .map_err(|e| StartError(format!("unable to open database for writing: {e}")))?,
    );

    // RRD updates (SET_STATUS `rrd/…`, here or from other nodes) reach the RRD files.
    status
        .kv()
        .set_rrd(Arc::new(crate::rrd::Rrd::new(args.rrd_config())));
    let kcache = Arc::new(KernelCache::new());
    let shared = Shared::new(
        tree.clone(),
        writer.clone(),
        status.clone(),
        kcache.clone(),
        args.defer_bound,
    );
    if opened.created && !args.local {
        import_corosync_conf(&shared, start);
    }
    // C: cluster mode exactly when the tree has corosync.conf and -l was not given; the host
    // file is refreshed from the tree first.
    let conf = tree
        .lock()
        .read_path(&TreePath::parse(corosync_conf::NAME))
        .ok();
    prepare_mountpoint(&args.mount)?;
    let cluster = match conf {
        Some(conf) if !args.local => {
            corosync_conf::refresh_host(&conf, false);
            Some(Cluster::start(
                shared.clone(),
                ClusterOptions {
                    lock_timeout: args.lock_timeout,
                    verify_interval: args.verify_interval,
                },
                &nodename,
            ))
        }
        _ => None,
    };
    let mode = if cluster.is_some() {
        "cluster"
    } else {
        "local"
    };

    let svc = Service::new(
        shared,
        cluster.clone(),
        ServiceConfig {
            nodename,
            lock_timeout: args.lock_timeout,
            gid,
        },
    );
    let main_pid = Pid::this();
    let mounted = lwcfs_fuse::mount(svc, gid, &args.mount, args.threads, move || {
        // The session ended (unmounted from outside, or by us): make the main thread stop.
        let _ = signal::kill(main_pid, Signal::SIGTERM);
    })
    .map_err(|e| {
        if let Some(c) = &cluster {
            c.shutdown();
        }
        StartError(format!(
            "fuse mount of {} failed: {e}",
            args.mount.display()
        ))
    })?;

    if let Err(e) = kcache.attach(mounted.notifier()) {
        // Changes the kernel did not make itself then reach readers only when its TTLs end.
        tracing::error!("cannot start the kernel cache thread: {e}");
    }

    // The IPC service `pve2`, after the mount as in C; not starting it is fatal.
    let ipc = match crate::ipc::Ipc::start(tree.clone(), status, gid) {
        Ok(ipc) => ipc,
        Err(e) => {
            let _ = mounted.unmount(Duration::from_secs(1));
            if let Some(c) = &cluster {
                c.shutdown();
            }
            let _ = writer.shutdown();
            return fail(format!("unable to start the IPC service 'pve2': {e}"));
        }
    };

    let control = match ControlServer::start(
        &args.paths.control_socket(),
        writer.clone(),
        tree,
        kcache.clone(),
        cluster.clone(),
    ) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(
                "control socket {}: {e}",
                args.paths.control_socket().display()
            );
            None
        }
    };
    write_pid_file(&args.pid_file);
    let _ = fs::remove_file(args.pve_run_dir.join("cfs-restart-flag"));
    tracing::info!("lwcfs mounted at {} ({mode} mode)", args.mount.display());
    signal_ready();

    let sig = signals.wait();
    tracing::info!("received {sig:?}, shutting down");

    let flag = args.pve_run_dir.join("cfs-restart-flag");
    if File::create(&flag).is_ok() {
        let _ = fs::set_permissions(&flag, fs::Permissions::from_mode(0o440));
        let _ = nix::unistd::chown(&flag, Some(0.into()), Some(gid.into()));
    }
    drop(control);
    ipc.stop(); // before the unmount, as in C
    match mounted.unmount(Duration::from_secs(1)) {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "{} is still in use; detached it lazily",
            args.mount.display()
        ),
        Err(e) => tracing::warn!("unmount of {}: {e}", args.mount.display()),
    }
    if let Some(c) = &cluster {
        c.shutdown();
    }
    let result = writer
        .shutdown()
        .map_err(|e| StartError(format!("final commit failed: {e}")));
    let _ = fs::remove_file(&args.pid_file);
    tracing::info!(
        "exit proxmox configuration filesystem ({})",
        i32::from(result.is_err())
    );
    result
}

/// A new database outside local mode starts with the host's corosync.conf, written with writer
/// 0 before any cluster service starts (C `pmxcfs.c`); the first sync reconciles it.
fn import_corosync_conf(shared: &Shared, now: u32) {
    let Ok(data) = fs::read(corosync_conf::HOST) else {
        return;
    };
    let path = TreePath::parse(corosync_conf::NAME);
    let ctx = Ctx {
        writer: NodeId(0),
        mtime: Mtime(now),
        now: Mtime(now),
    };
    let mut db = shared.tree.lock();
    let r = shared
        .apply(
            &mut db,
            &Op::Create { path: path.clone() },
            ctx,
            true,
            false,
        )
        .and_then(|_| {
            let op = Op::Write {
                path,
                offset: 0,
                data,
                truncate: false,
            };
            shared.apply(&mut db, &op, ctx, true, false)
        });
    match r {
        Ok(_) => tracing::info!("imported {} into the new database", corosync_conf::HOST),
        Err(e) => tracing::error!("unable to import {}: {e}", corosync_conf::HOST),
    }
}

/// C's single-instance lock: flock on `.pmxcfs.lockfile` beside the database, 11 tries 1 s
/// apart.
fn take_lock(path: &Path, db: &Path) -> Result<Flock<File>, StartError> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StartError(format!("unable to open lock file {}: {e}", path.display())))
    };
    let mut file = open()?;
    for attempt in 0..11 {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                file = f;
                if attempt == 0 {
                    tracing::warn!("unable to acquire pmxcfs lock - trying again");
                }
                if attempt < 10 {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            Err((_, e)) => return fail(format!("unable to lock {}: {e}", path.display())),
        }
    }
    fail(format!(
        "database {} is locked by another instance (lock file {})",
        db.display(),
        path.display()
    ))
}

/// The mount point must exist (C creates /etc/pve; so do we, if its parent exists) and not be
/// in use. A stale FUSE mount (its daemon gone) is cleared, as C does.
fn prepare_mountpoint(mp: &Path) -> Result<(), StartError> {
    match fs::metadata(mp) {
        Ok(m) if !m.is_dir() => {
            return fail(format!("mount point {} is not a directory", mp.display()))
        }
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!("clearing stale mount at {}", mp.display());
            let _ = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Err(e) = fs::DirBuilder::new().mode(0o750).create(mp) {
                return fail(format!(
                    "mount point {} is missing and cannot be created: {e}",
                    mp.display()
                ));
            }
        }
        Err(e) => return fail(format!("mount point {}: {e}", mp.display())),
    }
    if is_mountpoint(mp) {
        return fail(format!(
            "mount point {} is busy (a FUSE filesystem is already mounted there)",
            mp.display()
        ));
    }
    Ok(())
}

/// A FUSE filesystem is mounted on `mp` (a plain bind mount there is fine: that is how
/// sandboxes give each instance its own /etc/pve).
fn is_mountpoint(mp: &Path) -> bool {
    let Ok(canon) = fs::canonicalize(mp) else {
        return false;
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|l| {
        let at = l.split(' ').nth(4).map(unescape_mount_path);
        let fstype = l
            .split(" - ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or("");
        fstype.starts_with("fuse") && at.is_some_and(|p| Path::new(&p) == canon)
    })
}

fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn write_pid_file(path: &Path) {
    let tmp = path.with_extension("pid.tmp");
    let r = fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = r {
        tracing::warn!("unable to write pid file {}: {e}", path.display());
    }
}

/// Start the daemon again in the foreground, detached, and wait until it says it is ready
/// (a `1` on its stdout) or dies. The exit code tells the caller (systemd's Type=forking).
fn daemonize() -> Result<(), StartError> {
    let exe =
        std::env::current_exe().map_err(|e| StartError(format!("cannot find myself: {e}")))?;
    let mut child = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .arg("--foreground")
        .env(READY_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| StartError(format!("cannot start the daemon process: {e}")))?;
    let mut buf = [0u8; 1];
    let ok = child
        .stdout
        .take()
        .is_some_and(|mut o| o.read(&mut buf).is_ok_and(|n| n == 1));
    if ok && buf[0] == b'1' {
        std::process::exit(0);
    }
    let status = child.wait().map(|s| s.code().unwrap_or(255)).unwrap_or(255);
    std::process::exit(if status == 0 { 255 } else { status });
}

const READY_ENV: &str = "LWCFS_NOTIFY_READY";

/// Tell the waiting parent (see [`daemonize`]) that we are up, and detach from its terminal.
fn signal_ready() {
    if std::env::var_os(READY_ENV).is_none() {
        return;
    }
    let mut out = std::io::stdout();
    let _ = out.write_all(b"1").and_then(|()| out.flush());
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        for target in [0, 1, 2] {
            let _ = nix::unistd::dup2(null.as_raw_fd(), target);
        }
    }
}
