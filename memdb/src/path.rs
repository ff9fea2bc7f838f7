//! `TreePath`: a path inside the tree, relative to the root, parsed once.
//!
//! Parsing follows C's `memdb_lookup_path`: leading, trailing and doubled slashes are ignored;
//! `""`, `"/"` and `"."` name the root. Components are kept as given: a `.` or `..` component is
//! looked up literally (no entry can have such a name, so it is never found).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TreePath {
    comps: Vec<String>,
}

impl TreePath {
    pub fn root() -> TreePath {
        TreePath { comps: Vec::new() }
    }

    /// Parse a path; never fails: empty components are skipped, `"."` alone is the root.
    pub fn parse(s: &str) -> TreePath {
        if s == "." {
            return TreePath::root();
        }
        TreePath {
            comps: s
                .split('/')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.comps.is_empty()
    }

    pub fn components(&self) -> &[String] {
        &self.comps
    }

    /// The last component, or `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.comps.last().map(String::as_str)
    }

    /// The parent path; the root's parent is the root.
    pub fn parent(&self) -> TreePath {
        let mut comps = self.comps.clone();
        comps.pop();
        TreePath { comps }
    }

    pub fn join(&self, name: &str) -> TreePath {
        let mut comps = self.comps.clone();
        comps.push(name.to_owned());
        TreePath { comps }
    }

    /// True if `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &TreePath) -> bool {
        self.comps.len() >= other.comps.len() && self.comps[..other.comps.len()] == other.comps[..]
    }

    /// Private paths (C `path_is_private`): `priv` and below, `nodes/<n>/priv` and below.
    pub fn is_private(&self) -> bool {
        match self.comps.as_slice() {
            [first, ..] if first == "priv" => true,
            [nodes, _, p, ..] if nodes == "nodes" && p == "priv" => true,
            _ => false,
        }
    }

    /// A lock directory path: exactly `priv/lock/<name>` (the lock table's keys; C compares
    /// the parent with `priv/lock`).
    pub fn is_lock_dir(&self) -> bool {
        matches!(self.comps.as_slice(), [p, l, _] if p == "priv" && l == "lock")
    }

    /// Anything strictly below `priv/lock/` (C `path_is_lockdir`: rename refusal, unlock
    /// requests).
    pub fn is_below_lock(&self) -> bool {
        matches!(self.comps.as_slice(), [p, l, _, ..] if p == "priv" && l == "lock")
    }
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.comps.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ignores_extra_slashes() {
        assert_eq!(TreePath::parse("/a//b/").to_string(), "a/b");
        assert!(TreePath::parse("/").is_root());
        assert!(TreePath::parse(".").is_root());
        assert!(TreePath::parse("").is_root());
    }

    #[test]
    fn private_paths_are_component_exact() {
        assert!(TreePath::parse("priv").is_private());
        assert!(TreePath::parse("priv/lock/x").is_private());
        assert!(TreePath::parse("nodes/n1/priv").is_private());
        assert!(TreePath::parse("nodes/n1/priv/a").is_private());
        assert!(!TreePath::parse("privx").is_private());
        assert!(!TreePath::parse("nodes/n1/privx").is_private());
        assert!(!TreePath::parse("nodes/priv").is_private());
    }

    #[test]
    fn lock_dirs() {
        assert!(TreePath::parse("priv/lock/a").is_lock_dir());
        assert!(!TreePath::parse("priv/lock").is_lock_dir());
        assert!(!TreePath::parse("priv/lock/a/b").is_lock_dir());
        assert!(TreePath::parse("priv/lock/a/b").is_below_lock());
        assert!(TreePath::parse("priv/lock/a").is_below_lock());
        assert!(!TreePath::parse("priv/lock").is_below_lock());
    }
}
