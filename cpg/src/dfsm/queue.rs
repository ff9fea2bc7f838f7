//! The two message queues of the DFSM (cluster.md §3.5).
//!
//! - The pending queue holds NORMAL messages received while not SYNCED, sorted by their
//!   `count` whatever the sender (C compares counts of different senders too).
//! - The sync queue holds, in arrival order, the messages of members already synced while this
//!   node waits in UPDATE mode for the leader's data.

use std::cmp::Ordering;

use crate::member::MemberId;

/// One queued NORMAL message, kept whole so that it can be fed back through the receive path
/// or re-sent byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Queued {
    pub from: MemberId,
    pub count: u64,
    pub bytes: Vec<u8>,
}

/// C's pending-queue comparison: the u64 difference of the counts truncated to `int`.
fn c_count_order(a: u64, b: u64) -> Ordering {
    (a.wrapping_sub(b) as i32).cmp(&0)
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Pending {
    items: Vec<Queued>,
}

impl Pending {
    /// Insert after every message that does not sort after it (ties keep arrival order, as
    /// GLib's sorted insert does).
    pub fn insert(&mut self, q: Queued) {
        let at = self
            .items
            .iter()
            .position(|x| c_count_order(x.count, q.count) == Ordering::Greater)
            .unwrap_or(self.items.len());
        self.items.insert(at, q);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&Queued> {
        self.items.get(i)
    }

    pub fn remove(&mut self, i: usize) -> Queued {
        self.items.remove(i)
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(node: u32, count: u64) -> Queued {
        Queued {
            from: MemberId::new(node, 1),
            count,
            bytes: vec![node as u8, count as u8],
        }
    }

    #[test]
    fn sorted_by_count_across_senders_ties_in_arrival_order() {
        let mut p = Pending::default();
        for (n, c) in [(1, 5), (2, 3), (3, 5), (2, 4), (1, 1)] {
            p.insert(q(n, c));
        }
        let got: Vec<(u32, u64)> = p.iter().map(|x| (x.from.nodeid.0, x.count)).collect();
        assert_eq!(got, vec![(1, 1), (2, 3), (2, 4), (1, 5), (3, 5)]);
        assert_eq!(p.remove(0).count, 1);
        assert_eq!(p.len(), 4);
        p.clear();
        assert!(p.is_empty());
    }
}
