//! Mounting: the fuser `Config` (fsname "pmxcfs", allow_other, default_permissions, several
//! worker threads), the session thread, and unmounting.

use std::io;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, SessionACL, SessionUnmounter};

use crate::adapter::Adapter;
use crate::notify::KernelNotifier;
use crate::service::FsService;

/// A mounted filesystem served by its own threads.
pub struct Mounted {
    unmounter: SessionUnmounter,
    thread: Option<JoinHandle<io::Result<()>>>,
    notifier: KernelNotifier,
}

/// Mount `svc` at `mountpoint` and serve it with `threads` worker threads. `on_exit` runs on
/// the session thread when the session ends (unmounted from outside, or by [`Mounted::unmount`]).
pub fn mount<S: FsService>(
    svc: S,
    gid: u32,
    mountpoint: &Path,
    threads: usize,
    on_exit: impl FnOnce() + Send + 'static,
) -> io::Result<Mounted> {
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName("pmxcfs".into()),
        MountOption::Subtype("pmxcfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::RW,
    ];
    cfg.acl = SessionACL::All;
    cfg.n_threads = Some(threads.max(1));
    let mut session = fuser::Session::new(Adapter::new(svc, gid), mountpoint, &cfg)?;
    let unmounter = session.unmount_callable();
    let notifier = KernelNotifier::new(session.notifier());
    let thread = std::thread::Builder::new()
        .name("fuse".into())
        .spawn(move || {
            let r = session.run();
            on_exit();
            r
        })?;
    Ok(Mounted {
        unmounter,
        thread: Some(thread),
        notifier,
    })
}

impl Mounted {
    /// The channel for cache invalidations (see [`KernelNotifier`]).
    pub fn notifier(&self) -> KernelNotifier {
        self.notifier.clone()
    }

    /// Unmount (lazily, so a busy mount does not block us) and wait up to `wait` for the
    /// session to end. Returns whether it ended: processes holding files open keep a lazily
    /// detached mount alive, and we do not wait for them.
    pub fn unmount(mut self, wait: Duration) -> io::Result<bool> {
        let r = self.unmounter.unmount();
        let deadline = Instant::now() + wait;
        let Some(t) = self.thread.take() else {
            return r.map(|()| true);
        };
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !t.is_finished() {
            return r.map(|()| false);
        }
        match t.join() {
            Ok(res) => res?,
            Err(_) => return Err(io::Error::other("fuse session thread panicked")),
        }
        r.map(|()| true)
    }
}
