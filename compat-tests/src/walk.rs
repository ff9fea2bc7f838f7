//! A snapshot of a directory tree as the kernel shows it: kind, mode bits, owner, size, times,
//! inode number and file bytes, keyed by relative path.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    pub blocks: u64,
    pub mtime: i64,
    pub atime: i64,
    pub ctime: i64,
    pub ino: u64,
    /// File bytes, or the symlink target.
    pub content: Option<Vec<u8>>,
}

impl Node {
    pub fn of(path: &Path) -> std::io::Result<Node> {
        let m = fs::symlink_metadata(path)?;
        let ft = m.file_type();
        let (kind, content) = if ft.is_dir() {
            (Kind::Dir, None)
        } else if ft.is_symlink() {
            (
                Kind::Symlink,
                Some(fs::read_link(path)?.into_os_string().into_encoded_bytes()),
            )
        } else {
            (Kind::File, Some(fs::read(path)?))
        };
        Ok(Node {
            kind,
            perm: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            nlink: m.nlink(),
            blocks: m.blocks(),
            mtime: m.mtime(),
            atime: m.atime(),
            ctime: m.ctime(),
            ino: m.ino(),
            content,
        })
    }
}

/// Every entry below `root` (not `root` itself), with paths relative to it. Top-level names in
/// `skip` are left out (the virtual files at the root of `/etc/pve`).
pub fn walk(root: &Path, skip: &[&str]) -> std::io::Result<BTreeMap<String, Node>> {
    let mut out = BTreeMap::new();
    walk_into(root, "", skip, &mut out)?;
    Ok(out)
}

fn walk_into(
    dir: &Path,
    prefix: &str,
    skip: &[&str],
    out: &mut BTreeMap<String, Node>,
) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().into_string().map_err(|n| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("name {n:?}"))
        })?;
        if prefix.is_empty() && skip.contains(&name.as_str()) {
            continue;
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let node = Node::of(&e.path())?;
        if node.kind == Kind::Dir {
            walk_into(&e.path(), &rel, skip, out)?;
        }
        out.insert(rel, node);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_files_dirs_and_symlinks() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a/b")).unwrap();
        fs::write(d.path().join("a/b/f"), b"hello").unwrap();
        fs::write(d.path().join("skipme"), b"x").unwrap();
        std::os::unix::fs::symlink("a/b", d.path().join("l")).unwrap();
        let t = walk(d.path(), &["skipme"]).unwrap();
        assert_eq!(t.keys().collect::<Vec<_>>(), ["a", "a/b", "a/b/f", "l"]);
        assert_eq!(t["a/b/f"].content.as_deref(), Some(&b"hello"[..]));
        assert_eq!(t["a/b/f"].size, 5);
        assert_eq!(t["a"].kind, Kind::Dir);
        assert_eq!(t["l"].kind, Kind::Symlink);
        assert_eq!(t["l"].content.as_deref(), Some(&b"a/b"[..]));
    }
}
