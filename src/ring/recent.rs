//! Answers reused within a stabilization period: when a peer answers a lookup for a target and
//! says the target is its own (it is the responsible peer, and it just answered), every key
//! from that target up to the peer is its own too, and with `owns_after` (its predecessor)
//! every key after that predecessor. Until the node's next stabilization tick, a user lookup
//! for a key in such a stretch is answered from here, without a message: the answer is at
//! most one period old, the same bound within which a ring's own successor pointers notice a
//! crash.
//!
//! Only a lookup that asks for it reuses an answer ([`super::Node::lookup_with`]: the API's
//! lookups); the file layer's lookups, which place and fetch data, always ask the ring. Any
//! request that fails, is refused or goes unanswered drops every kept answer; so does a peer
//! saying a target is not its own, and every tick.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::message::Peer;
use crate::id::Id;

/// Most responsible peers whose answers are kept (one entry each).
pub const MAX_KEPT: usize = 4096;

/// What one responsible peer said of its own keys during this period.
#[derive(Clone, Debug)]
struct Said {
    /// Every key whose clockwise distance to the peer is at most this is the peer's own.
    reach: Id,
    /// The peer first, then its successors, as it answered.
    successors: Vec<Peer>,
}

/// The answers kept during the current stabilization period.
#[derive(Debug, Default)]
pub struct Recent {
    by_owner: BTreeMap<Id, Said>,
}

impl Recent {
    /// `successors[0]` answered, just now, that `target` is its own, and with `owns_after` that
    /// every key after that id is (its predecessor); `successors` is its answer.
    pub fn record(&mut self, target: Id, owns_after: Option<Id>, successors: &[Peer]) {
        let Some(owner) = successors.first() else {
            return;
        };
        let mut reach = target.distance_to(owner.id);
        // A claim that does not even cover the target it answered for is ignored. How far a
        // claim reaches is bounded where it is used: only while the membership table proposes
        // this owner for the key, so never past the member before it in the table.
        if let Some(after) = owns_after
            && target.in_half_open(after, owner.id)
        {
            reach = reach.max(
                after
                    .distance_to(owner.id)
                    .wrapping_sub(Id::from_parts(0, 1)),
            );
        }
        let room = self.by_owner.len() < MAX_KEPT;
        let said = match self.by_owner.entry(owner.id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) if room => e.insert(Said {
                reach,
                successors: Vec::new(),
            }),
            Entry::Vacant(_) => return,
        };
        // Both claims hold for this period; the farther one covers the nearer one.
        said.reach = said.reach.max(reach);
        said.successors.clear();
        said.successors.extend_from_slice(successors);
    }

    /// What `owner` said this period, when it covers `target`: `owner` first, then its
    /// successors.
    pub fn answer(&self, target: Id, owner: Id) -> Option<&[Peer]> {
        let said = self.by_owner.get(&owner)?;
        (target.distance_to(owner) <= said.reach).then_some(said.successors.as_slice())
    }

    /// Drops what `owner` said (it said a target is not its own after all).
    pub fn forget(&mut self, owner: Id) {
        self.by_owner.remove(&owner);
    }

    /// Drops everything (a new period, a failure, a change of ring).
    pub fn clear(&mut self) {
        self.by_owner.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_owner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::message::Address;

    fn peer(n: u128) -> Peer {
        Peer::new(Id::from_parts(0, n), Address::new(format!("p{n}")))
    }

    fn id(n: u128) -> Id {
        Id::from_parts(0, n)
    }

    #[test]
    fn an_answer_covers_the_keys_from_its_target_up_to_the_owner_and_grows() {
        let mut r = Recent::default();
        r.record(id(80), None, &[peer(100), peer(120)]);
        assert_eq!(r.answer(id(90), id(100)), Some(&[peer(100), peer(120)][..]));
        assert_eq!(r.answer(id(100), id(100)).map(<[Peer]>::len), Some(2));
        assert_eq!(r.answer(id(80), id(100)).map(<[Peer]>::len), Some(2));
        // Below the target nothing was said; past the owner is another peer's.
        assert_eq!(r.answer(id(79), id(100)), None);
        assert_eq!(r.answer(id(101), id(100)), None);
        assert_eq!(r.answer(id(90), id(120)), None);
        // A farther target widens the stretch; a nearer one keeps it.
        r.record(id(60), None, &[peer(100), peer(130)]);
        r.record(id(95), None, &[peer(100), peer(130)]);
        assert_eq!(r.answer(id(61), id(100)), Some(&[peer(100), peer(130)][..]));
        r.forget(id(100));
        assert_eq!(r.answer(id(90), id(100)), None);
    }

    #[test]
    fn the_owner_s_predecessor_extends_the_stretch_unless_it_contradicts_the_answer() {
        let mut r = Recent::default();
        r.record(id(90), Some(id(50)), &[peer(100)]);
        assert!(r.answer(id(51), id(100)).is_some());
        assert!(r.answer(id(50), id(100)).is_none());
        // A predecessor the target is not after: the claim is ignored, the target still counts.
        r.clear();
        r.record(id(90), Some(id(95)), &[peer(100)]);
        assert!(r.answer(id(90), id(100)).is_some());
        assert!(r.answer(id(89), id(100)).is_none());
    }

    #[test]
    fn the_stretch_wraps_past_zero() {
        let mut r = Recent::default();
        r.record(Id::MAX, None, &[peer(5)]);
        assert!(r.answer(id(0), id(5)).is_some());
        assert!(r.answer(Id::MAX, id(5)).is_some());
        assert!(r.answer(id(6), id(5)).is_none());
        r.clear();
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn it_keeps_at_most_max_kept_owners() {
        let mut r = Recent::default();
        for n in 0..(MAX_KEPT as u128 + 10) {
            r.record(id(n * 10), None, &[peer(n * 10 + 5)]);
        }
        assert_eq!(r.len(), MAX_KEPT);
    }
}
