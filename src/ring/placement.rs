//! Replica placement and key ownership by range, as pure functions of a node's view.
//!
//! - [`placement`]: the `replicas` peers that hold a key: the responsible peer (the key's
//!   successor) then the next distinct peers of its successor list (DESIGN.md §5).
//! - [`holdings`]: which keys a node holds, as ranges: the range it owns, (predecessor, self],
//!   and one replica range per predecessor whose copies it keeps (the key ranges of its
//!   `replicas - 1` predecessors).
//!
//! Ranges are half-open ring intervals `(start, end]`; `start == end` is the whole ring.

use super::lookup::LookupResult;
use super::message::Peer;
use crate::id::Id;

/// The ring interval `(start, end]`; the whole ring when `start == end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Id,
    pub end: Id,
}

impl KeyRange {
    pub fn contains(&self, key: Id) -> bool {
        key.in_half_open(self.start, self.end)
    }
}

/// Where the copies of a key live: `responsible` first, then the next distinct peers of its
/// successor list, `replicas` in all (fewer when the ring is smaller). The list may contain
/// `responsible` again (a ring shorter than r ends with it): duplicates are skipped.
pub fn placement(responsible: &Peer, successors: &[Peer], replicas: usize) -> Vec<Peer> {
    let mut out: Vec<Peer> = Vec::with_capacity(replicas);
    for p in std::iter::once(responsible).chain(successors) {
        if out.len() >= replicas {
            break;
        }
        if !out.iter().any(|q| q.id == p.id) {
            out.push(p.clone());
        }
    }
    out
}

/// [`placement`] of a lookup's answer.
pub fn placement_of(lookup: &LookupResult, replicas: usize) -> Vec<Peer> {
    placement(&lookup.node, &lookup.successors, replicas)
}

/// What a node holds copies of, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The node is responsible for the key.
    Owner,
    /// The node keeps copy number `n` (1 = the owner's first successor).
    Replica(usize),
}

/// One range whose copies a node keeps for a predecessor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRange {
    /// The predecessor that owns the range.
    pub owner: Peer,
    /// The owner's range; `None` for the start when the owner's predecessor is unknown.
    pub start: Option<Id>,
    pub end: Id,
    /// Copy number this node keeps (1 = the owner's first successor).
    pub copy: usize,
}

impl ReplicaRange {
    /// Whether `key` certainly lies in the range (an unknown start includes nothing below the
    /// owner but the owner's own id).
    pub fn contains(&self, key: Id) -> bool {
        match self.start {
            Some(start) => key.in_half_open(start, self.end),
            None => key == self.end,
        }
    }
}

/// Which keys a node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holdings {
    /// (predecessor, self]; `None` while the predecessor is unknown.
    pub owned: Option<KeyRange>,
    /// Closest predecessor first.
    pub replicas: Vec<ReplicaRange>,
    /// The node holds every key: the ring has no more than `replicas` members.
    pub everything: bool,
}

impl Holdings {
    /// Why the node holds `key`, if it does.
    pub fn role(&self, key: Id) -> Option<Role> {
        if self.owned.is_some_and(|r| r.contains(key)) {
            return Some(Role::Owner);
        }
        if let Some(r) = self.replicas.iter().find(|r| r.contains(key)) {
            return Some(Role::Replica(r.copy));
        }
        self.everything.then_some(Role::Replica(1))
    }
}

/// The ranges `me` holds, from its predecessors, closest first (`predecessors[0]` is its
/// predecessor, `predecessors[1]` that one's predecessor, ...; as many as known). It owns
/// (predecessors[0], me] and keeps copy `j` of the range of `predecessors[j-1]`, for `j` in
/// `1..replicas`. Meeting `me` again in the list means the ring is shorter than that: then
/// `me` holds every key.
pub fn holdings(me: &Peer, predecessors: &[Peer], replicas: usize) -> Holdings {
    let mut h = Holdings {
        owned: None,
        replicas: Vec::new(),
        everything: false,
    };
    let Some(pred) = predecessors.first() else {
        return h;
    };
    h.owned = Some(KeyRange {
        start: pred.id,
        end: me.id,
    });
    if pred.id == me.id {
        // Alone: (me, me] is the whole ring.
        h.everything = true;
        return h;
    }
    for copy in 1..replicas {
        let Some(owner) = predecessors.get(copy - 1) else {
            break;
        };
        if owner.id == me.id {
            h.everything = true;
            break;
        }
        let start = predecessors.get(copy).map(|p| p.id);
        if start == Some(me.id) {
            // The ring has `copy + 1` members: the owner's range reaches back to us.
            h.everything = true;
        }
        h.replicas.push(ReplicaRange {
            owner: owner.clone(),
            start,
            end: owner.id,
            copy,
        });
        if h.everything {
            break;
        }
    }
    h
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
