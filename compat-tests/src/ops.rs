//! System calls the standard library does not offer, returning `std::io::Result` so a test can
//! compare `raw_os_error()` with the exact errno of the spec.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::RenameFlags;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// The errno of a result that must be an error; panics with context on success.
#[track_caller]
pub fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("error without errno: {e}")),
    }
}

fn io(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

/// `utimensat(path, [atime, mtime])`, following symlinks.
pub fn utime(path: &Path, atime: i64, mtime: i64) -> io::Result<()> {
    let (a, m) = (TimeSpec::new(atime, 0), TimeSpec::new(mtime, 0));
    nix::sys::stat::utimensat(None, path, &a, &m, UtimensatFlags::FollowSymlink).map_err(io)
}

/// `utimensat(path, NULL)`: both times now (what `touch` does).
pub fn utime_now(path: &Path) -> io::Result<()> {
    let now = TimeSpec::UTIME_NOW;
    nix::sys::stat::utimensat(None, path, &now, &now, UtimensatFlags::FollowSymlink).map_err(io)
}

/// `utimensat` on the link itself.
pub fn lutime(path: &Path, secs: i64) -> io::Result<()> {
    let t = TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io)
}

/// `renameat2(from, to, RENAME_NOREPLACE)`.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    nix::fcntl::renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE).map_err(io)
}

/// `renameat2(from, to, RENAME_EXCHANGE)`.
pub fn rename_exchange(from: &Path, to: &Path) -> io::Result<()> {
    nix::fcntl::renameat2(None, from, None, to, RenameFlags::RENAME_EXCHANGE).map_err(io)
}

/// One `pwrite(2)` on an existing file opened for writing; the count it returned.
pub fn pwrite(path: &Path, data: &[u8], offset: u64) -> io::Result<usize> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_at(data, offset)
}

/// One `write(2)` of `data` on a file opened with `O_APPEND`.
pub fn append(path: &Path, data: &[u8]) -> io::Result<usize> {
    use std::io::Write;
    OpenOptions::new().append(true).open(path)?.write(data)
}

/// Read `len` bytes at `offset` with one `pread(2)`.
pub fn pread(path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut buf = vec![0u8; len];
    let n = f.read_at(&mut buf, offset)?;
    buf.truncate(n);
    Ok(buf)
}

/// Read the whole file through one open file description, from `offset`.
pub fn read_from(path: &Path, offset: u64) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// `truncate(2)`.
pub fn truncate(path: &Path, size: u64) -> io::Result<()> {
    nix::unistd::truncate(path, size as libc::off_t).map_err(io)
}

/// Every name `getdents64(2)` returns, `.` and `..` included, in the order returned. (Not
/// through libc's `readdir`, whose `d_name[256]` cannot carry the longer names FUSE allows.)
pub fn readdir_raw(path: &Path) -> io::Result<Vec<String>> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        // SAFETY: the fd is open for the whole call and `buf` is valid for `buf.len()` bytes.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(out);
        }
        let mut off = 0usize;
        while off < n as usize {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, char name[].
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            out.push(String::from_utf8_lossy(name).into_owned());
            off += reclen;
        }
    }
}

/// `statvfs(2)`: (bsize, frsize, blocks, bfree, bavail, files, ffree, namemax).
pub fn statvfs(path: &Path) -> io::Result<[u64; 8]> {
    let s = nix::sys::statvfs::statvfs(path).map_err(io)?;
    Ok([
        s.block_size(),
        s.fragment_size(),
        s.blocks(),
        s.blocks_free(),
        s.blocks_available(),
        s.files(),
        s.files_free(),
        s.name_max(),
    ])
}

/// `mknod(path, S_IFREG | 0640)`.
pub fn mknod_regular(path: &Path) -> io::Result<()> {
    nix::sys::stat::mknod(path, SFlag::S_IFREG, Mode::from_bits_truncate(0o640), 0).map_err(io)
}

/// `mkfifo(path, 0640)`.
pub fn mkfifo(path: &Path) -> io::Result<()> {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o640)).map_err(io)
}

/// `fallocate(fd, 0, 0, len)` on a file opened for writing.
pub fn fallocate(path: &Path, len: i64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    nix::fcntl::fallocate(f.as_raw_fd(), nix::fcntl::FallocateFlags::empty(), 0, len).map_err(io)
}

/// `flock(LOCK_EX)` then `flock(LOCK_UN)`.
pub fn flock_cycle(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    #[allow(deprecated)] // nix 0.29's replacement (Flock) owns the fd; this is one call.
    nix::fcntl::flock(f.as_raw_fd(), nix::fcntl::FlockArg::LockExclusive).map_err(io)?;
    #[allow(deprecated)]
    nix::fcntl::flock(f.as_raw_fd(), nix::fcntl::FlockArg::Unlock).map_err(io)
}

/// `copy_file_range` of the whole of `from` into the new file `to`; the bytes copied.
pub fn copy_file_range(from: &Path, to: &Path) -> io::Result<usize> {
    let src = File::open(from)?;
    let len = src.metadata()?.len() as usize;
    let dst = OpenOptions::new().write(true).create_new(true).open(to)?;
    let mut done = 0;
    while done < len {
        let n = nix::fcntl::copy_file_range(&src, None, &dst, None, len - done).map_err(io)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// `getxattr(path, "user.test")`.
pub fn getxattr(path: &Path) -> io::Result<usize> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = [0u8; 64];
    // SAFETY: both strings are NUL-terminated and outlive the call; the buffer is valid for
    // `buf.len()` bytes.
    let r = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"user.test".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `mmap(MAP_SHARED, PROT_READ|PROT_WRITE)` of a file opened read-write; unmapped again.
pub fn mmap_shared(path: &Path) -> io::Result<()> {
    mmap(path, true).map(|_| ())
}

/// The first `len` bytes through a private read-only mapping.
pub fn mmap_private_read(path: &Path) -> io::Result<Vec<u8>> {
    mmap(path, false)
}

fn mmap(path: &Path, shared: bool) -> io::Result<Vec<u8>> {
    use nix::sys::mman::{MapFlags, ProtFlags};
    let f = OpenOptions::new().read(true).write(shared).open(path)?;
    let len = f.metadata()?.len() as usize;
    let nz = std::num::NonZeroUsize::new(len.max(1)).expect("non-zero");
    let (prot, flags) = if shared {
        (
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )
    } else {
        (ProtFlags::PROT_READ, MapFlags::MAP_PRIVATE)
    };
    // SAFETY: a fresh mapping chosen by the kernel (no fixed address), of a file we keep open
    // for the mapping's whole life; it is read within `len` and unmapped before returning.
    let ptr = unsafe { nix::sys::mman::mmap(None, nz, prot, flags, &f, 0) }.map_err(io)?;
    // SAFETY: the mapping is `nz` bytes long and readable; `len <= nz`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr().cast::<u8>(), len) }.to_vec();
    // SAFETY: `ptr`/`nz` are exactly the mapping made above, unmapped once, and `bytes` is a copy.
    unsafe { nix::sys::mman::munmap(ptr, nz.get()) }.map_err(io)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn wrappers_behave_on_a_local_filesystem() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(pwrite(&f, b"X", 3).unwrap(), 1);
        assert_eq!(append(&f, b"!").unwrap(), 1);
        assert_eq!(std::fs::read(&f).unwrap(), b"012X456789!");
        assert_eq!(pread(&f, 9, 10).unwrap(), b"9!");
        assert_eq!(read_from(&f, 8).unwrap(), b"89!");
        utime(&f, 1000, 2000).unwrap();
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.atime(), m.mtime()), (1000, 2000));
        utime_now(&f).unwrap();
        assert!(std::fs::metadata(&f).unwrap().mtime() > 2000);
        truncate(&f, 4).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"012X");
        let g = d.path().join("g");
        assert_eq!(copy_file_range(&f, &g).unwrap(), 4);
        assert_eq!(errno(rename_noreplace(&f, &g)), libc::EEXIST);
        rename_exchange(&f, &g).unwrap();
        let mut names = readdir_raw(d.path()).unwrap();
        names.sort();
        assert_eq!(names, [".", "..", "f", "g"]);
        assert_eq!(statvfs(d.path()).unwrap()[7], 255);
        mknod_regular(&d.path().join("n")).unwrap();
        mkfifo(&d.path().join("p")).unwrap();
        flock_cycle(&f).unwrap();
        assert_eq!(mmap_private_read(&f).unwrap(), b"012X");
        mmap_shared(&f).unwrap();
        let link = d.path().join("l");
        std::os::unix::fs::symlink("f", &link).unwrap();
        lutime(&link, 5).unwrap();
        assert_eq!(std::fs::symlink_metadata(&link).unwrap().mtime(), 5);
        assert!(matches!(
            getxattr(&f).map_err(|e| e.raw_os_error()),
            Err(Some(_))
        ));
        fallocate(&f, 100).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().len(), 100);
    }

    #[test]
    fn errno_reads_the_os_error() {
        let e = std::fs::read("/nonexistent/lwcfs-compat");
        assert_eq!(errno(e), libc::ENOENT);
    }
}
