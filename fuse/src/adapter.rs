//! `impl fuser::Filesystem` over any [`FsService`]: decode, one service call, reply.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::attr;
use crate::inodes::KIno;
use crate::service::{FsService, NodeAttr, NodeKind, SetAttr};

pub struct Adapter<S: FsService> {
    svc: S,
    gid: u32,
}

impl<S: FsService> Adapter<S> {
    /// `gid` is the group every node reports (www-data).
    pub fn new(svc: S, gid: u32) -> Self {
        Adapter { svc, gid }
    }

    fn attr(&self, a: &NodeAttr) -> FileAttr {
        let t = UNIX_EPOCH + Duration::from_secs(u64::from(a.mtime));
        FileAttr {
            ino: INodeNo(a.ino.0),
            size: a.size,
            blocks: attr::blocks(a.size),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: file_type(a.kind),
            perm: a.perm,
            nlink: if a.kind == NodeKind::Dir { 2 } else { 1 },
            uid: 0,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
    }
}

fn ttl(a: &NodeAttr) -> Duration {
    Duration::from_millis(u64::from(a.ttl_ms))
}

fn err(e: i32) -> Errno {
    Errno::from_i32(e)
}

/// The kernel's own limit without `FUSE_MAX_PAGES` (which raises it to 4095): names C nodes can
/// handle.
const NAME_MAX: usize = 1024;

/// Names reach the service as UTF-8 (the `name` column is TEXT); anything else is `EINVAL`.
fn name(n: &OsStr) -> Result<&str, Errno> {
    if n.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    n.to_str().ok_or(Errno::EINVAL)
}

fn secs(t: TimeOrNow) -> u32 {
    let t = match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    };
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

const DIRECT_IO: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

macro_rules! try_reply {
    ($reply:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $reply.error(e),
        }
    };
}

impl<S: FsService> fuser::Filesystem for Adapter<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // The biggest write request the kernel allows (it caps this at its max_pages).
        let _ = config
            .set_max_write(16 * 1024 * 1024)
            .or_else(|max| config.set_max_write(max));
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let n = try_reply!(reply, name(n));
        match self.svc.lookup(KIno(parent.0), n) {
            Ok(a) => reply.entry(&ttl(&a), &self.attr(&a), Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.svc.getattr(KIno(ino.0)) {
            Ok(a) => reply.attr(&ttl(&a), &self.attr(&a)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            mtime: mtime.map(secs),
            atime_only: atime.is_some() && mtime.is_none(),
            fh: fh.map(|f| f.0),
        };
        match self.svc.setattr(KIno(ino.0), set) {
            Ok(a) => reply.attr(&ttl(&a), &self.attr(&a)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.svc.readlink(KIno(ino.0)) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mkdir(&self, _req: &Request, p: INodeNo, n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        let n = try_reply!(reply, name(n));
        match self.svc.mkdir(KIno(p.0), n) {
            Ok(a) => reply.entry(&ttl(&a), &self.attr(&a), Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let n = try_reply!(reply, name(n));
        match self.svc.unlink(KIno(parent.0), n) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let n = try_reply!(reply, name(n));
        match self.svc.rmdir(KIno(parent.0), n) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (n, newname) = (try_reply!(reply, name(n)), try_reply!(reply, name(newname)));
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        match self
            .svc
            .rename(KIno(parent.0), n, KIno(newparent.0), newname, noreplace)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.svc.open(KIno(ino.0), flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), DIRECT_IO),
            Err(e) => reply.error(err(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.svc.read(KIno(ino.0), fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(err(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.svc.write(KIno(ino.0), fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.svc.release(KIno(ino.0), fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        match self.svc.fsync(KIno(ino.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _ds: bool,
        reply: ReplyEmpty,
    ) {
        match self.svc.fsync(KIno(ino.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let children = try_reply!(reply, self.svc.readdir(KIno(ino.0)).map_err(err));
        let dots = [
            (".".to_owned(), KIno(ino.0), NodeKind::Dir),
            ("..".to_owned(), KIno(ino.0), NodeKind::Dir),
        ];
        let all = dots.into_iter().chain(children);
        for (i, (n, child, kind)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child.0), i as u64 + 1, file_type(kind), n) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.svc.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namemax, s.bsize,
        );
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let n = try_reply!(reply, name(n));
        match self.svc.create(KIno(parent.0), n, flags) {
            Ok((a, fh)) => reply.created(
                &ttl(&a),
                &self.attr(&a),
                Generation(0),
                FileHandle(fh),
                DIRECT_IO,
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn symlink(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _t: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // As libfuse 2 does for C: a regular-file mknod is a create; anything else ENOSYS.
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::ENOSYS);
        }
        let n = try_reply!(reply, name(n));
        match self.svc.create(KIno(parent.0), n, libc::O_RDONLY) {
            Ok((a, fh)) => {
                self.svc.release(a.ino, fh);
                reply.entry(&ttl(&a), &self.attr(&a), Generation(0))
            }
            Err(e) => reply.error(err(e)),
        }
    }
}
