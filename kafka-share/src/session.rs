//! Share sessions (KIP-932), one per leader: the session epoch sequence and the partitions a
//! session fetches, so that each ShareFetch sends only the changes.
//!
//! Epoch 0 opens a session (and may not carry acknowledgements), every successful request
//! moves the epoch on by one (wrapping to 1), and -1 closes it. A session that the broker
//! rejects or that is lost with its connection is forgotten here and reopened with epoch 0.

use std::collections::{BTreeSet, HashMap};

use crate::types::Tp;

/// The epoch after `epoch`: 1 follows `i32::MAX`, since 0 would reopen the session.
pub(crate) fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// A share session on one broker. Epoch 0 means none is open.
#[derive(Default)]
pub(crate) struct Session {
    pub epoch: i32,
    pub partitions: BTreeSet<Tp>,
}

/// What one ShareFetch tells a leader about its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionDelta {
    /// The epoch sent: 0 opens the session.
    pub epoch: i32,
    /// The partitions wanted by this fetch.
    pub want: BTreeSet<Tp>,
    /// Partitions new to the session (all of them when opening).
    pub added: Vec<Tp>,
    /// Partitions the session drops.
    pub forgotten: Vec<Tp>,
}

/// The share sessions by leader id.
#[derive(Default)]
pub(crate) struct Sessions(HashMap<i32, Session>);

impl Sessions {
    /// The current epoch on `leader`, 0 without a session.
    pub fn epoch(&self, leader: i32) -> i32 {
        self.0.get(&leader).map_or(0, |s| s.epoch)
    }

    /// The partitions the session on `leader` fetches.
    #[cfg(test)]
    pub fn partitions(&self, leader: i32) -> Option<&BTreeSet<Tp>> {
        self.0.get(&leader).map(|s| &s.partitions)
    }

    /// Leaders with a session entry (open or about to be opened).
    pub fn leaders(&self) -> impl Iterator<Item = i32> + '_ {
        self.0.keys().copied()
    }

    /// Leaders with an open session, which `close` ends with epoch -1.
    pub fn open(&self) -> impl Iterator<Item = i32> + '_ {
        self.0.iter().filter(|(_, s)| s.epoch > 0).map(|(l, _)| *l)
    }

    /// The delta to send with the next fetch to `leader` for partitions `want`.
    pub fn plan(&mut self, leader: i32, want: BTreeSet<Tp>) -> SessionDelta {
        let session = self.0.entry(leader).or_default();
        let epoch = session.epoch;
        let (added, forgotten) = if epoch == 0 {
            (want.iter().copied().collect(), Vec::new())
        } else {
            (
                want.difference(&session.partitions).copied().collect(),
                session.partitions.difference(&want).copied().collect(),
            )
        };
        SessionDelta {
            epoch,
            want,
            added,
            forgotten,
        }
    }

    /// The broker accepted a fetch sent with `delta`: the session moves to the next epoch and
    /// fetches what the delta said.
    pub fn fetched(&mut self, leader: i32, delta: &SessionDelta) {
        let session = self.0.entry(leader).or_default();
        session.epoch = next_epoch(delta.epoch);
        if delta.epoch == 0 {
            session.partitions = delta.want.clone();
        } else {
            session.partitions.extend(delta.added.iter().copied());
            for tp in &delta.forgotten {
                session.partitions.remove(tp);
            }
        }
    }

    /// The broker accepted a ShareAcknowledge sent at `epoch`; with `close` (sent as epoch -1)
    /// the session is over.
    pub fn acknowledged(&mut self, leader: i32, epoch: i32, close: bool) {
        if close {
            self.0.remove(&leader);
        } else if let Some(s) = self.0.get_mut(&leader) {
            s.epoch = next_epoch(epoch);
        }
    }

    /// Forgets the session on `leader`; the next fetch opens a new one.
    pub fn remove(&mut self, leader: i32) {
        self.0.remove(&leader);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(i32::MAX), 1);
    }

    #[test]
    fn session_opens_with_everything_then_sends_changes() {
        let (a, b, c) = (
            (Uuid::from_u128(1), 0),
            (Uuid::from_u128(1), 1),
            (Uuid::from_u128(2), 0),
        );
        let mut s = Sessions::default();
        let open = s.plan(7, [a, b].into());
        assert_eq!((open.epoch, open.added.clone()), (0, vec![a, b]));
        assert!(open.forgotten.is_empty());
        s.fetched(7, &open);
        assert_eq!(s.epoch(7), 1);

        let next = s.plan(7, [b, c].into());
        assert_eq!(
            (next.epoch, next.added.clone(), next.forgotten.clone()),
            (1, vec![c], vec![a])
        );
        s.fetched(7, &next);
        assert_eq!(s.epoch(7), 2);
        assert_eq!(s.partitions(7), Some(&[b, c].into()));

        // An acknowledgement moves the epoch on too; a closing one ends the session.
        s.acknowledged(7, 2, false);
        assert_eq!(s.epoch(7), 3);
        assert_eq!(s.open().collect::<Vec<_>>(), vec![7]);
        s.acknowledged(7, 3, true);
        assert_eq!(s.epoch(7), 0);
        assert_eq!(s.plan(7, [b].into()).added, vec![b]);
    }
}
