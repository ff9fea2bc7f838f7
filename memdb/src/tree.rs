//! The `Memdb` arena and its read-only queries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::Error;
use crate::locks::Locks;
use crate::path::TreePath;
use crate::types::{Inode, Kind, Mtime, NodeId, BLOCK_SIZE, MAX_BLOCKS, MAX_INODES, NAME_MAX};
use crate::vmlist::VmList;

/// File content. Shared so that a snapshot for the backend costs a reference count; a write
/// copies it only while a snapshot is still held.
pub type Data = Arc<Vec<u8>>;

#[derive(Clone, Debug)]
pub(crate) enum Body {
    File(Data),
    Dir(BTreeMap<String, Inode>),
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub parent: Inode,
    pub version: u64,
    pub writer: NodeId,
    pub mtime: Mtime,
    pub name: String,
    pub body: Body,
}

impl Entry {
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
        }
    }

    pub fn size(&self) -> u64 {
        match &self.body {
            Body::File(d) => d.len() as u64,
            Body::Dir(_) => 0,
        }
    }

    pub fn children(&self) -> Option<&BTreeMap<String, Inode>> {
        match &self.body {
            Body::Dir(c) => Some(c),
            Body::File(_) => None,
        }
    }
}

/// One row of the `tree` table (every entry but the root), as the backend stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub inode: Inode,
    pub parent: Inode,
    pub version: u64,
    pub writer: NodeId,
    pub mtime: Mtime,
    pub kind: Kind,
    pub name: String,
    /// File content; empty for directories and empty files (stored as SQL NULL).
    pub data: Data,
}

/// What getattr needs of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub inode: Inode,
    pub kind: Kind,
    pub size: u64,
    pub mtime: Mtime,
    pub version: u64,
    pub writer: NodeId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub inode: Inode,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub bsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub namemax: u64,
}

/// The whole tree, the global version and the side tables C keeps with it.
#[derive(Clone, Debug)]
pub struct Memdb {
    pub(crate) entries: HashMap<Inode, Entry>,
    /// The global version: bumped by exactly one per successful mutation.
    pub(crate) version: u64,
    pub(crate) root_writer: NodeId,
    pub(crate) root_mtime: Mtime,
    pub(crate) locks: Locks,
    pub(crate) vmlist: VmList,
    /// Sum of all file sizes, kept for statfs.
    pub(crate) total_size: u64,
}

impl Default for Memdb {
    fn default() -> Self {
        Self::new()
    }
}

impl Memdb {
    /// An empty tree: just the root, version 0.
    pub fn new() -> Memdb {
        let mut entries = HashMap::new();
        entries.insert(Inode::ROOT, root_entry(0, NodeId(0), Mtime(0)));
        Memdb {
            entries,
            version: 0,
            root_writer: NodeId(0),
            root_mtime: Mtime(0),
            locks: Locks::default(),
            vmlist: VmList::default(),
            total_size: 0,
        }
    }

    /// The global version (the `__version__` row).
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn root_writer(&self) -> NodeId {
        self.root_writer
    }

    pub fn root_mtime(&self) -> Mtime {
        self.root_mtime
    }

    /// Number of entries, the root included (what statfs counts).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() == 1
    }

    /// Resolve a path to an inode.
    pub fn resolve(&self, path: &TreePath) -> Option<Inode> {
        let mut cur = Inode::ROOT;
        for name in path.components() {
            cur = *self.entries.get(&cur)?.children()?.get(name)?;
        }
        Some(cur)
    }

    /// The path of an inode, or `None` if it does not exist.
    pub fn path_of(&self, inode: Inode) -> Option<TreePath> {
        let mut names = Vec::new();
        let mut cur = inode;
        while cur != Inode::ROOT {
            let e = self.entries.get(&cur)?;
            names.push(e.name.as_str());
            cur = e.parent;
        }
        names.reverse();
        Some(TreePath::parse(&names.join("/")))
    }

    /// Look a name up in a directory.
    pub fn lookup(&self, parent: Inode, name: &str) -> Result<Inode, Error> {
        let dir = self.entries.get(&parent).ok_or(Error::NotFound)?;
        let children = dir.children().ok_or(Error::NotDir)?;
        children.get(name).copied().ok_or(Error::NotFound)
    }

    pub fn getattr(&self, inode: Inode) -> Result<Attr, Error> {
        let e = self.entries.get(&inode).ok_or(Error::NotFound)?;
        Ok(Attr {
            inode,
            kind: e.kind(),
            size: e.size(),
            mtime: e.mtime,
            version: e.version,
            writer: e.writer,
        })
    }

    /// The parent of an entry (the root is its own parent).
    pub fn parent_of(&self, inode: Inode) -> Result<Inode, Error> {
        Ok(self.entries.get(&inode).ok_or(Error::NotFound)?.parent)
    }

    /// The whole content of a file (C reads whole files too); directories give `NotFound` as
    /// in C's `memdb_read`.
    pub fn read(&self, inode: Inode) -> Result<Data, Error> {
        match &self.entries.get(&inode).ok_or(Error::NotFound)?.body {
            Body::File(d) => Ok(d.clone()),
            Body::Dir(_) => Err(Error::NotFound),
        }
    }

    /// Read a file by path.
    pub fn read_path(&self, path: &TreePath) -> Result<Data, Error> {
        self.read(self.resolve(path).ok_or(Error::NotFound)?)
    }

    /// Children of a directory, in name order.
    pub fn readdir(&self, inode: Inode) -> Result<Vec<DirEntry>, Error> {
        let e = self.entries.get(&inode).ok_or(Error::NotFound)?;
        let children = e.children().ok_or(Error::NotDir)?;
        Ok(children
            .iter()
            .map(|(name, ino)| DirEntry {
                name: name.clone(),
                inode: *ino,
                kind: self.entries[ino].kind(),
            })
            .collect())
    }

    /// statfs as C reports it, except that the free counts stop at 0 instead of wrapping.
    pub fn statfs(&self) -> StatFs {
        let used_blocks = self.total_size.div_ceil(BLOCK_SIZE);
        StatFs {
            bsize: BLOCK_SIZE,
            blocks: MAX_BLOCKS,
            bfree: MAX_BLOCKS.saturating_sub(used_blocks),
            files: MAX_INODES,
            ffree: MAX_INODES.saturating_sub(self.entries.len() as u64),
            namemax: NAME_MAX,
        }
    }

    /// The stored row of an entry (`None` for the root and for missing inodes).
    pub fn record(&self, inode: Inode) -> Option<NodeRecord> {
        if inode == Inode::ROOT {
            return None;
        }
        let e = self.entries.get(&inode)?;
        Some(NodeRecord {
            inode,
            parent: e.parent,
            version: e.version,
            writer: e.writer,
            mtime: e.mtime,
            kind: e.kind(),
            name: e.name.clone(),
            data: match &e.body {
                Body::File(d) => d.clone(),
                Body::Dir(_) => Data::default(),
            },
        })
    }

    /// Every stored row, in inode order.
    pub fn records(&self) -> Vec<NodeRecord> {
        let mut inodes: Vec<Inode> = self.entries.keys().copied().collect();
        inodes.sort();
        inodes.into_iter().filter_map(|i| self.record(i)).collect()
    }

    /// The guest list.
    pub fn vmlist(&self) -> &VmList {
        &self.vmlist
    }
}

pub(crate) fn root_entry(version: u64, writer: NodeId, mtime: Mtime) -> Entry {
    Entry {
        parent: Inode::ROOT,
        version,
        writer,
        mtime,
        name: String::new(),
        body: Body::Dir(BTreeMap::new()),
    }
}
