//! Local senders waiting for their own NORMAL message to be applied (C's result table and
//! `msgcount_rcvd`, `dfsm.c:155-178`, `dfsm.c:253-315`).
//!
//! A sender registers under the count [`crate::dfsm::Dfsm::send_message`] returned, before the
//! message is multicast. [`Waiters::on_effect`] turns the DFSM's [`Effect::Result`] and
//! [`Effect::Abort`] into finished waits: C wakes every waiter whose count is at most the last
//! own count received, so a waiter whose message was never applied finishes as
//! [`Outcome::NotProcessed`].

use std::collections::BTreeMap;

use crate::dfsm::Effect;

/// How a local sender's wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The message was applied locally; the application's result.
    Applied(i32),
    /// The message was not applied here (multicast failed, connection re-initialized, or the
    /// node stopped processing). C's dcdb answers `-EBUSY`.
    NotProcessed,
}

#[derive(Clone, Debug, Default)]
pub struct Waiters {
    waiting: BTreeMap<u64, Option<i32>>,
}

impl Waiters {
    pub fn new() -> Waiters {
        Waiters::default()
    }

    pub fn register(&mut self, count: u64) {
        self.waiting.insert(count, None);
    }

    /// Number of senders still waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The multicast of `count` failed: its sender is done.
    pub fn send_failed(&mut self, count: u64) -> Option<Outcome> {
        self.waiting.remove(&count).map(|_| Outcome::NotProcessed)
    }

    /// The waits an effect finishes, in count order.
    pub fn on_effect(&mut self, e: &Effect) -> Vec<(u64, Outcome)> {
        let up_to = match *e {
            Effect::Result { count, result } => {
                if let Some(slot) = self.waiting.get_mut(&count) {
                    *slot = Some(result);
                }
                count
            }
            Effect::Abort { up_to } => up_to,
            _ => return Vec::new(),
        };
        let rest = self.waiting.split_off(&up_to.saturating_add(1));
        let done = std::mem::replace(&mut self.waiting, rest);
        done.into_iter()
            .map(|(c, r)| (c, r.map_or(Outcome::NotProcessed, Outcome::Applied)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_finishes_every_earlier_wait() {
        let mut w = Waiters::new();
        for c in [3, 4, 5, 9] {
            w.register(c);
        }
        assert_eq!(
            w.on_effect(&Effect::Result {
                count: 1,
                result: 7
            }),
            vec![]
        );
        assert_eq!(
            w.on_effect(&Effect::Result {
                count: 4,
                result: 12
            }),
            vec![(3, Outcome::NotProcessed), (4, Outcome::Applied(12))]
        );
        assert_eq!(w.send_failed(9), Some(Outcome::NotProcessed));
        assert_eq!(w.send_failed(9), None);
        assert_eq!(w.len(), 1);
        assert_eq!(
            w.on_effect(&Effect::Abort { up_to: u64::MAX }),
            vec![(5, Outcome::NotProcessed)]
        );
        assert!(w.is_empty());
    }
}
