//! The passive list (DESIGN.md §11; Shafaat, Ghodsi and Haridi, "Dealing with network
//! partitions in structured overlay networks", 2009): the peers this node declared dead, each
//! with the incarnation it last answered with, probed now and then. A peer that answers again
//! is one of three things:
//!
//! - a restart (it answers with another incarnation, or is not a ring member yet): it rejoins
//!   by itself, nothing to merge;
//! - a peer of another ring id: never merged automatically ([`RingEvent::ForeignRing`]);
//! - a peer with the same ring id that a lookup in this node's ring does not find: the two
//!   sides of a healed partition, each closed into its own ring. Ring unification starts
//!   ([`super::unify`]).
//!
//! A peer that was only thought dead (lost messages) and is still in this ring is found by the
//! lookup and dropped, so a healthy ring never merges with itself.

use std::collections::{BTreeMap, VecDeque};

use super::lookup::{Lookup, Purpose};
use super::node::Pending;
use super::types::Why;
use super::{Address, LookupError, LookupResult, Node, Peer, Rejection, Request, RingEvent};
use crate::id::Id;

/// One peer declared dead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub peer: Peer,
    /// The incarnation it answered with before it was declared dead, when it said.
    pub incarnation: Option<u64>,
    /// A configured seed that answered (not a peer declared dead): never kept on the list.
    pub seed: bool,
}

/// Seeds probed at most (the configured list is cut to this).
const MAX_SEEDS: usize = 64;

/// A bounded list of peers declared dead, probed round-robin; the oldest goes when it is full.
#[derive(Debug, Default)]
pub(super) struct Passive {
    entries: VecDeque<Entry>,
    /// The incarnations neighbours answered with (kept only for current neighbours).
    seen: BTreeMap<Id, u64>,
    /// Configured seeds (`ring.seeds`), probed in turn with the passive peers: one that
    /// answers with this ring id but is not in this ring is a merge candidate too.
    seeds: Vec<Address>,
    next_seed: usize,
    /// Whose turn the next probe is: a seed's (true) or a passive peer's.
    seed_turn: bool,
}

impl Passive {
    pub fn add(&mut self, entry: Entry, cap: usize) {
        self.remove(entry.peer.id);
        if cap == 0 {
            return;
        }
        while self.entries.len() >= cap {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub fn remove(&mut self, id: Id) {
        self.entries.retain(|e| e.peer.id != id);
    }

    /// The next peer to probe: taken from the front, to be put back at the end if it stays.
    pub fn take_next(&mut self) -> Option<Entry> {
        self.entries.pop_front()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.seen.clear();
    }
}

impl Node {
    /// The peers this node declared dead and still probes.
    pub fn passive_peers(&self) -> Vec<Peer> {
        self.passive
            .entries
            .iter()
            .map(|e| e.peer.clone())
            .collect()
    }

    /// Records the incarnation a neighbour answered with (a later probe compares it).
    pub(super) fn note_incarnation(&mut self, from: &Peer, incarnation: Option<u64>) {
        let Some(incarnation) = incarnation else {
            return;
        };
        if !self.is_neighbour(from.id) {
            return;
        }
        self.passive.seen.insert(from.id, incarnation);
        if self.passive.seen.len() > 2 * (self.config.successors + 2) {
            let keep: Vec<Id> = self
                .successors
                .iter()
                .chain(&self.predecessor)
                .map(|p| p.id)
                .collect();
            self.passive.seen.retain(|id, _| keep.contains(id));
        }
    }

    fn is_neighbour(&self, id: Id) -> bool {
        self.predecessor.as_ref().is_some_and(|p| p.id == id)
            || self.successors.iter().any(|p| p.id == id)
    }

    /// A neighbour was declared dead: it goes on the passive list.
    pub(super) fn declared_dead(&mut self, peer: &Peer) {
        if peer.id == self.me.id {
            return;
        }
        let incarnation = self.passive.seen.remove(&peer.id);
        let entry = Entry {
            peer: peer.clone(),
            incarnation,
            seed: false,
        };
        self.passive.add(entry, self.config.passive_peers);
    }

    /// A peer is back in the routing state: nothing to probe.
    pub(super) fn back_in_ring(&mut self, id: Id) {
        if self.passive.len() > 0 {
            self.passive.remove(id);
        }
    }

    /// The configured seeds (`ring.seeds`): probed in turn with the passive peers, so that a
    /// seed that answers from a ring this node's ring does not reach starts a merge (two rings
    /// founded apart with one ring id, or a partition nobody's passive list remembers).
    pub fn set_merge_seeds(&mut self, seeds: Vec<Address>) {
        let me = self.me.address.clone();
        let mut kept: Vec<Address> = Vec::new();
        for s in seeds {
            if s != me && !kept.contains(&s) && kept.len() < MAX_SEEDS {
                kept.push(s);
            }
        }
        self.passive.seeds = kept;
        self.passive.next_seed = 0;
    }

    /// On a stabilization tick: every `probe_every` ticks, ping the next passive peer or,
    /// every other time (or when no peer is passive), the next configured seed.
    pub(super) fn probe_passive(&mut self) {
        let every = self.config.probe_every.max(1);
        if self.probing || !self.ticks.is_multiple_of(every) {
            return;
        }
        self.passive.seed_turn = !self.passive.seed_turn;
        let seeds = self.passive.seeds.len();
        if seeds > 0 && (self.passive.seed_turn || self.passive.len() == 0) {
            let seed = self.passive.seeds[self.passive.next_seed % seeds].clone();
            self.passive.next_seed = (self.passive.next_seed + 1) % seeds;
            self.probing = true;
            self.send(seed.clone(), Request::Ping, Pending::SeedProbe(seed));
            return;
        }
        let Some(entry) = self.passive.take_next() else {
            return;
        };
        self.probing = true;
        self.send(
            entry.peer.address.clone(),
            Request::Ping,
            Pending::Probe(entry),
        );
    }

    /// The probed peer answered (same ring id, a member).
    pub(super) fn probe_answered(&mut self, entry: Entry, incarnation: Option<u64>) {
        self.probing = false;
        if let (Some(before), Some(now)) = (entry.incarnation, incarnation)
            && before != now
        {
            // Restarted: it rejoins through its seeds like any restart.
            return;
        }
        // Alive with the same ring id: is it in this ring? A lookup of its id says.
        let id = self.new_lookup_id();
        self.lookups.insert(
            id,
            Lookup::new(entry.peer.id, Purpose::MemberCheck(entry), self.me.id),
        );
        self.start_local(id);
    }

    /// A configured seed answered (same ring id, a member): is it in this ring?
    pub(super) fn seed_answered(&mut self, from: Peer) {
        self.probing = false;
        if from.id == self.me.id {
            return;
        }
        let entry = Entry {
            peer: from,
            incarnation: None,
            seed: true,
        };
        let id = self.new_lookup_id();
        self.lookups.insert(
            id,
            Lookup::new(entry.peer.id, Purpose::MemberCheck(entry), self.me.id),
        );
        self.start_local(id);
    }

    /// A configured seed gave no usable answer: down, restarting, or of another ring id.
    pub(super) fn seed_failed(&mut self, seed: Address, why: Why) {
        self.probing = false;
        if let Why::Rejected(Rejection::WrongRing { ring_id }) = why {
            let id = Id::hash(seed.as_str().as_bytes());
            self.emit(RingEvent::ForeignRing {
                peer: Peer::new(id, seed),
                ring_id,
            });
        }
    }

    /// The probe got no usable answer.
    pub(super) fn probe_failed(&mut self, entry: Entry, why: Why) {
        self.probing = false;
        match why {
            // Still dead, or still on the other side: keep probing it.
            Why::NoResponse | Why::Malformed => {
                self.passive.add(entry, self.config.passive_peers);
            }
            Why::Rejected(Rejection::WrongRing { ring_id }) => {
                self.emit(RingEvent::ForeignRing {
                    peer: entry.peer,
                    ring_id,
                });
            }
            // Not a member (restarting, left), a version we do not speak, or another transport:
            // not a partition.
            Why::Rejected(_) | Why::Incompatible(_) => {}
        }
    }

    /// The lookup of a peer that answered a probe finished.
    pub(super) fn member_checked(
        &mut self,
        entry: Entry,
        outcome: Result<LookupResult, LookupError>,
    ) {
        match outcome {
            // In this ring: it was only thought dead.
            Ok(r) if r.node.id == entry.peer.id => {}
            Ok(_) if entry.seed => {
                self.start_merge(entry.peer, super::MergeTrigger::Seed);
            }
            Ok(_) => {
                self.start_merge(entry.peer, super::MergeTrigger::Passive);
            }
            Err(_) if entry.seed => {}
            Err(_) => self.passive.add(entry, self.config.passive_peers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u128) -> Entry {
        Entry {
            peer: Peer::new(Id::from_parts(0, n), Address::new(format!("p{n}"))),
            incarnation: Some(n as u64),
            seed: false,
        }
    }

    #[test]
    fn the_list_is_bounded_drops_the_oldest_and_keeps_one_entry_per_peer() {
        let mut p = Passive::default();
        for n in 1..=5 {
            p.add(entry(n), 3);
        }
        assert_eq!(p.len(), 3);
        p.add(entry(4), 3);
        assert_eq!(p.len(), 3);
        let order: Vec<Id> = std::iter::from_fn(|| p.take_next())
            .map(|e| e.peer.id)
            .collect();
        let want: Vec<Id> = [3, 5, 4].into_iter().map(|n| entry(n).peer.id).collect();
        assert_eq!(order, want);
        p.add(entry(1), 0);
        assert_eq!(p.len(), 0);
    }
}
