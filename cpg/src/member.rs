//! Who is in a CPG group: node ids, member ids, and C's member order.

use std::cmp::Ordering;
use std::fmt;

/// A Corosync node id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A member of a CPG group: one process on one node. Messages are "own" when their sender is
/// this node's (nodeid, pid), so the pid must be the one corosync reports (the process id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    pub nodeid: NodeId,
    pub pid: u32,
}

impl MemberId {
    pub fn new(nodeid: u32, pid: u32) -> MemberId {
        MemberId {
            nodeid: NodeId(nodeid),
            pid,
        }
    }
}

impl fmt::Display for MemberId {
    /// As C logs it: `nodeid/pid`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.nodeid.0, self.pid)
    }
}

/// C `dfsm_sync_info_compare`: by nodeid, then pid, each compared as the `int` value of the
/// wrapping u32 difference. That is plain ascending order for ids less than 2^31 apart.
pub fn c_order(a: &MemberId, b: &MemberId) -> Ordering {
    fn cmp(x: u32, y: u32) -> Ordering {
        (x.wrapping_sub(y) as i32).cmp(&0)
    }
    if a.nodeid != b.nodeid {
        cmp(a.nodeid.0, b.nodeid.0)
    } else {
        cmp(a.pid, b.pid)
    }
}

/// The members in C's table order (`dfsm_release_sync_resources`). An insertion sort, because
/// C's comparison is not a total order for ids 2^31 apart, and must not make us panic.
pub fn sorted(members: &[MemberId]) -> Vec<MemberId> {
    let mut out: Vec<MemberId> = Vec::with_capacity(members.len());
    for m in members {
        let at = out
            .iter()
            .position(|x| c_order(x, m) == Ordering::Greater)
            .unwrap_or(out.len());
        out.insert(at, *m);
    }
    out
}

/// The smallest node id in a member list (pid ignored); `None` for an empty list.
pub fn lowest_nodeid(members: &[MemberId]) -> Option<NodeId> {
    members.iter().map(|m| m.nodeid).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_is_nodeid_then_pid() {
        let m = [
            MemberId::new(3, 5),
            MemberId::new(1, 9),
            MemberId::new(3, 2),
            MemberId::new(2, 1),
        ];
        assert_eq!(
            sorted(&m),
            vec![
                MemberId::new(1, 9),
                MemberId::new(2, 1),
                MemberId::new(3, 2),
                MemberId::new(3, 5)
            ]
        );
        assert_eq!(lowest_nodeid(&m), Some(NodeId(1)));
        assert_eq!(lowest_nodeid(&[]), None);
    }

    /// C compares through a signed difference: an id 2^31 above another sorts before it.
    #[test]
    fn wrapping_comparison_as_c() {
        let small = MemberId::new(1, 1);
        let huge = MemberId::new(0x8000_0002, 1);
        assert_eq!(c_order(&huge, &small), Ordering::Less);
        assert_eq!(sorted(&[small, huge]), vec![huge, small]);
        assert_eq!(MemberId::new(7, 42).to_string(), "7/42");
    }
}
