//! The only FFI of the daemon: a libqb IPC service (Debian's `libqb`, linked as `-lqb`) run by
//! a `qb_loop` on a thread of its own, as C pmxcfs runs its `pve2` service (`server.c`).
//!
//! What it exposes is safe: [`QbServer::start`] with a [`Handler`] that decides on each
//! connection (credentials) and answers each request (bytes in, bytes out), and
//! [`QbServer::stop`]. Every libqb call is made on the server thread; the handler is shared
//! with that thread only.
//!
//! Transport as in C: `qb_ipcs_create(name, 1, QB_IPC_SHM)`: clients connect through the
//! abstract unix socket `@<name>` (per network namespace) and exchange requests and responses
//! through shared-memory rings under `/dev/shm`.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

#[repr(C)]
struct QbLoop {
    _opaque: [u8; 0],
}
#[repr(C)]
struct QbService {
    _opaque: [u8; 0],
}
#[repr(C)]
struct QbConn {
    _opaque: [u8; 0],
}

type DispatchFn = extern "C" fn(fd: i32, revents: i32, data: *mut c_void) -> i32;
type JobFn = extern "C" fn(data: *mut c_void);

#[repr(C)]
struct ServiceHandlers {
    accept: extern "C" fn(*mut QbConn, libc::uid_t, libc::gid_t) -> i32,
    created: extern "C" fn(*mut QbConn),
    msg_process: extern "C" fn(*mut QbConn, *mut c_void, usize) -> i32,
    closed: extern "C" fn(*mut QbConn) -> i32,
    destroyed: extern "C" fn(*mut QbConn),
}

#[repr(C)]
struct PollHandlers {
    job_add: extern "C" fn(c_int, *mut c_void, JobFn) -> i32,
    dispatch_add: extern "C" fn(c_int, i32, i32, *mut c_void, DispatchFn) -> i32,
    dispatch_mod: extern "C" fn(c_int, i32, i32, *mut c_void, DispatchFn) -> i32,
    dispatch_del: extern "C" fn(i32) -> i32,
}

/// `struct qb_ipcs_connection_stats` (qbipcs.h).
#[repr(C)]
#[derive(Default)]
struct ConnStats {
    client_pid: i32,
    requests: u64,
    responses: u64,
    events: u64,
    send_retries: u64,
    recv_retries: u64,
    flow_control_state: i32,
    flow_control_count: u64,
}

const QB_IPC_SHM: c_int = 1;
const QB_LOOP_HIGH: c_int = 2;

#[link(name = "qb")]
extern "C" {
    fn qb_loop_create() -> *mut QbLoop;
    fn qb_loop_destroy(l: *mut QbLoop);
    fn qb_loop_run(l: *mut QbLoop);
    fn qb_loop_stop(l: *mut QbLoop);
    fn qb_loop_job_add(l: *mut QbLoop, p: c_int, data: *mut c_void, f: JobFn) -> i32;
    fn qb_loop_poll_add(
        l: *mut QbLoop,
        p: c_int,
        fd: i32,
        events: i32,
        data: *mut c_void,
        f: DispatchFn,
    ) -> i32;
    fn qb_loop_poll_mod(
        l: *mut QbLoop,
        p: c_int,
        fd: i32,
        events: i32,
        data: *mut c_void,
        f: DispatchFn,
    ) -> i32;
    fn qb_loop_poll_del(l: *mut QbLoop, fd: i32) -> i32;

    fn qb_ipcs_create(
        name: *const c_char,
        service_id: i32,
        kind: c_int,
        handlers: *mut ServiceHandlers,
    ) -> *mut QbService;
    fn qb_ipcs_poll_handlers_set(s: *mut QbService, handlers: *mut PollHandlers);
    fn qb_ipcs_service_context_set(s: *mut QbService, ctx: *mut c_void);
    fn qb_ipcs_enforce_buffer_size(s: *mut QbService, size: u32);
    fn qb_ipcs_run(s: *mut QbService) -> i32;
    fn qb_ipcs_destroy(s: *mut QbService);
    fn qb_ipcs_connection_service_context_get(c: *mut QbConn) -> *mut c_void;
    fn qb_ipcs_context_set(c: *mut QbConn, ctx: *mut c_void);
    fn qb_ipcs_context_get(c: *mut QbConn) -> *mut c_void;
    fn qb_ipcs_connection_stats_get(c: *mut QbConn, stats: *mut ConnStats, clear: i32) -> i32;
    fn qb_ipcs_response_sendv(c: *mut QbConn, iov: *const libc::iovec, n: usize) -> isize;
    fn qb_ipcs_disconnect(c: *mut QbConn);
}

/// Who is on the other end of a connection (`SO_PEERCRED` at connect time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// What the service does; called on the server thread only.
pub trait Handler: Send + Sync + 'static {
    /// Accept a new connection? (Refused: the client's connect fails with `EACCES`.)
    fn accept(&self, peer: &Peer) -> bool;
    /// Answer one request (`request` is exactly the size its header claims, header
    /// included, at most `max_request` bytes). Returns the response header and payload.
    fn process(&self, peer: &Peer, request: &[u8]) -> ([u8; 24], Vec<u8>);
    /// The reply to a request whose header claims a size outside 16..=`max_request` (its
    /// bytes are not read beyond the header).
    fn refuse(&self, header: &[u8; 16]) -> ([u8; 24], Vec<u8>);
}

struct Shared {
    handler: Arc<dyn Handler>,
    max_request: usize,
}

thread_local! {
    /// The loop of this thread's server (the poll handlers get no context pointer).
    static LOOP: Cell<*mut QbLoop> = const { Cell::new(ptr::null_mut()) };
    static SERVICE: Cell<*mut QbService> = const { Cell::new(ptr::null_mut()) };
}

/// A running IPC service. Dropping it stops it.
pub struct QbServer {
    wake: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl QbServer {
    /// Create the service `name` and run it on a new thread; returns once it is listening.
    ///
    /// # Errors
    /// libqb could not create its loop or service, or could not listen (for instance another
    /// daemon already serves `@name` in this network namespace).
    pub fn start(
        name: &str,
        handler: Arc<dyn Handler>,
        max_request: usize,
    ) -> io::Result<QbServer> {
        let cname =
            CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let shared = Box::new(Shared {
            handler,
            max_request,
        });
        let thread = std::thread::Builder::new()
            .name("ipc".into())
            .spawn(move || serve(&cname, shared, &wake_rx, &ready_tx))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(QbServer {
                wake: Some(wake_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("the IPC thread ended before it was ready"))
            }
        }
    }

    /// Stop serving: close every connection, remove the socket, end the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(mut w) = self.wake.take() {
            let _ = io::Write::write_all(&mut w, b"x");
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for QbServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn last_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The server thread: loop, service, run until woken, tear down.
fn serve(
    name: &CString,
    shared: Box<Shared>,
    wake: &UnixStream,
    ready: &mpsc::Sender<io::Result<()>>,
) {
    let mut handlers = ServiceHandlers {
        accept: on_accept,
        created: on_created,
        msg_process: on_msg,
        closed: on_closed,
        destroyed: on_destroyed,
    };
    let mut poll = PollHandlers {
        job_add: poll_job_add,
        dispatch_add: poll_dispatch_add,
        dispatch_mod: poll_dispatch_mod,
        dispatch_del: poll_dispatch_del,
    };
    let shared = Box::into_raw(shared);
    // SAFETY: plain constructor; a null result is handled.
    let l = unsafe { qb_loop_create() };
    if l.is_null() {
        let _ = ready.send(Err(last_error("qb_loop_create")));
        // SAFETY: `shared` came from Box::into_raw above and was given to nobody.
        drop(unsafe { Box::from_raw(shared) });
        return;
    }
    LOOP.with(|c| c.set(l));
    // SAFETY: `name` is a valid C string; libqb copies the handler pointers out of `handlers`
    // (ipcs.c) and the functions are 'static.
    let s = unsafe { qb_ipcs_create(name.as_ptr(), 1, QB_IPC_SHM, &mut handlers) };
    let started = if s.is_null() {
        Err(last_error("qb_ipcs_create"))
    } else {
        SERVICE.with(|c| c.set(s));
        // SAFETY: `s` is the live service; `shared` stays valid until after qb_ipcs_destroy
        // (freed at the end of this function); libqb copies the poll handler pointers.
        let rc = unsafe {
            qb_ipcs_service_context_set(s, shared.cast());
            qb_ipcs_poll_handlers_set(s, &mut poll);
            qb_ipcs_enforce_buffer_size(s, (*shared).max_request as u32);
            qb_ipcs_run(s)
        };
        if rc < 0 {
            // qb_ipcs_run destroys the service on failure.
            SERVICE.with(|c| c.set(ptr::null_mut()));
            Err(io::Error::from_raw_os_error(-rc))
        } else {
            // SAFETY: `l` is the live loop; the fd outlives the loop (it is `wake`, borrowed
            // for this whole function).
            let rc = unsafe {
                qb_loop_poll_add(
                    l,
                    QB_LOOP_HIGH,
                    wake.as_raw_fd(),
                    libc::POLLIN as i32,
                    ptr::null_mut(),
                    on_wake,
                )
            };
            if rc < 0 {
                Err(io::Error::from_raw_os_error(-rc))
            } else {
                Ok(())
            }
        }
    };
    let ok = started.is_ok();
    let _ = ready.send(started);
    if ok {
        // SAFETY: `l` is the live loop of this thread; returns after on_wake stops it.
        unsafe { qb_loop_run(l) };
    }
    let s = SERVICE.with(|c| c.replace(ptr::null_mut()));
    if !s.is_null() {
        // SAFETY: the service is live (on_wake clears SERVICE when it destroys it).
        unsafe { qb_ipcs_destroy(s) };
    }
    // SAFETY: no libqb object uses the loop any more; then nothing uses `shared`.
    unsafe {
        qb_loop_destroy(l);
        drop(Box::from_raw(shared));
    }
    LOOP.with(|c| c.set(ptr::null_mut()));
}

/// The wake-up socket became readable: [`QbServer::stop`] was called.
extern "C" fn on_wake(_fd: i32, _revents: i32, _data: *mut c_void) -> i32 {
    let s = SERVICE.with(|c| c.replace(ptr::null_mut()));
    if !s.is_null() {
        // SAFETY: the live service of this thread; destroyed once (SERVICE is cleared).
        unsafe { qb_ipcs_destroy(s) };
    }
    let l = LOOP.with(Cell::get);
    // SAFETY: the live loop of this thread.
    unsafe { qb_loop_stop(l) };
    -1 // remove this fd from the loop
}

/// # Safety
/// `c` is a connection libqb passed to a callback.
unsafe fn shared_of<'a>(c: *mut QbConn) -> Option<&'a Shared> {
    // SAFETY: the service context is the `Shared` set in `serve`, alive while the service is.
    unsafe {
        qb_ipcs_connection_service_context_get(c)
            .cast::<Shared>()
            .as_ref()
    }
}

extern "C" fn on_accept(c: *mut QbConn, uid: libc::uid_t, gid: libc::gid_t) -> i32 {
    let mut stats = ConnStats::default();
    // SAFETY: `c` is the connection being accepted; `stats` is a valid out-pointer of the
    // struct libqb fills (client_pid is set before this callback).
    unsafe { qb_ipcs_connection_stats_get(c, &mut stats, 0) };
    let peer = Peer {
        uid,
        gid,
        pid: stats.client_pid as u32,
    };
    // SAFETY: `c` comes from libqb.
    let Some(sh) = (unsafe { shared_of(c) }) else {
        return -libc::EACCES;
    };
    let ok = catch_unwind(AssertUnwindSafe(|| sh.handler.accept(&peer))).unwrap_or(false);
    if !ok {
        return -libc::EACCES;
    }
    let ctx = Box::into_raw(Box::new(peer));
    // SAFETY: the context is freed in on_destroyed, which libqb calls for every connection
    // it allocated, accepted or not.
    unsafe { qb_ipcs_context_set(c, ctx.cast()) };
    0
}

extern "C" fn on_created(_c: *mut QbConn) {}

extern "C" fn on_closed(_c: *mut QbConn) -> i32 {
    0
}

extern "C" fn on_destroyed(c: *mut QbConn) {
    // SAFETY: `c` comes from libqb; its context, if set, is the Box<Peer> of on_accept.
    unsafe {
        let ctx = qb_ipcs_context_get(c).cast::<Peer>();
        if !ctx.is_null() {
            qb_ipcs_context_set(c, ptr::null_mut());
            drop(Box::from_raw(ctx));
        }
    }
}

extern "C" fn on_msg(c: *mut QbConn, data: *mut c_void, size: usize) -> i32 {
    // SAFETY: `c` comes from libqb; the context was set by on_accept (or is null).
    let (sh, peer) = unsafe {
        match (shared_of(c), qb_ipcs_context_get(c).cast::<Peer>().as_ref()) {
            (Some(sh), Some(p)) => (sh, *p),
            _ => {
                qb_ipcs_disconnect(c);
                return 0;
            }
        }
    };
    let reply = catch_unwind(AssertUnwindSafe(|| {
        if (16..=sh.max_request).contains(&size) {
            // SAFETY: libqb hands us the request in the connection's request ring; every ring
            // is at least `max_request` bytes (qb_ipcs_enforce_buffer_size) and mapped twice
            // in a row, so `size` bytes from `data` are mapped and nobody writes them while
            // this callback runs.
            let req = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) };
            sh.handler.process(&peer, req)
        } else {
            let mut h = [0u8; 16];
            // SAFETY: as above; the 16 header bytes lie within the mapped ring.
            unsafe { ptr::copy_nonoverlapping(data.cast::<u8>(), h.as_mut_ptr(), 16) };
            sh.handler.refuse(&h)
        }
    }));
    let (head, payload) = match reply {
        Ok(r) => r,
        Err(_) => {
            tracing::error!("IPC request handler panicked; closing the connection");
            // SAFETY: `c` comes from libqb.
            unsafe { qb_ipcs_disconnect(c) };
            return 0;
        }
    };
    let iov = [
        libc::iovec {
            iov_base: head.as_ptr() as *mut c_void,
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: payload.as_ptr() as *mut c_void,
            iov_len: payload.len(),
        },
    ];
    // SAFETY: both buffers live until the call returns; libqb copies them into the ring.
    let sent = unsafe { qb_ipcs_response_sendv(c, iov.as_ptr(), iov.len()) };
    if sent < 0 {
        tracing::error!(
            "qb_ipcs_response_send: {} (client pid {})",
            io::Error::from_raw_os_error(-sent as i32),
            peer.pid
        );
        // SAFETY: `c` comes from libqb.
        unsafe { qb_ipcs_disconnect(c) };
    }
    0
}

extern "C" fn poll_job_add(p: c_int, data: *mut c_void, f: JobFn) -> i32 {
    // SAFETY: called by libqb on the server thread, whose loop is live.
    unsafe { qb_loop_job_add(LOOP.with(Cell::get), p, data, f) }
}

extern "C" fn poll_dispatch_add(
    p: c_int,
    fd: i32,
    evts: i32,
    data: *mut c_void,
    f: DispatchFn,
) -> i32 {
    // SAFETY: as in poll_job_add.
    unsafe { qb_loop_poll_add(LOOP.with(Cell::get), p, fd, evts, data, f) }
}

extern "C" fn poll_dispatch_mod(
    p: c_int,
    fd: i32,
    evts: i32,
    data: *mut c_void,
    f: DispatchFn,
) -> i32 {
    // SAFETY: as in poll_job_add.
    unsafe { qb_loop_poll_mod(LOOP.with(Cell::get), p, fd, evts, data, f) }
}

extern "C" fn poll_dispatch_del(fd: i32) -> i32 {
    // SAFETY: as in poll_job_add.
    unsafe { qb_loop_poll_del(LOOP.with(Cell::get), fd) }
}
