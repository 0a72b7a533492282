//! Ring unification after a partition heals (DESIGN.md §11; after Shafaat, Ghodsi and Haridi,
//! "Dealing with network partitions in structured overlay networks", 2009).
//!
//! When the network splits, each side closes into its own ring; when it heals, nobody's
//! successor pointer leads into the other ring, and stabilization alone never merges them. A
//! node that learns of a live peer `contact` of the other ring (its passive list, a merge hint,
//! or an operator) **zips** itself in: it looks up its own successor position (its id + 1)
//! through `contact`, so the lookup runs in the other ring, and the answer is its successor
//! there. If that lies between the node and its current successor it is the node's successor in
//! the merged ring: stabilization asks it (adopted only once it answers), notifies it, and its
//! old predecessor learns of the node on its next round. A node whose successor is right in the
//! merged ring has nothing more to do, so when every node zipped once the rings are one.
//!
//! Several threads zip at once: the node that found the other ring passes a merge hint a few
//! hops on to its successors and predecessors ([`RingConfig::merge_hint_ttl`]), and every node
//! with a passive peer on the other side finds it by itself. Nothing here decides correctness:
//! a candidate becomes a successor only after it answered and only if it is closer.
//!
//! [`RingConfig::merge_hint_ttl`]: super::RingConfig::merge_hint_ttl

use super::lookup::{Lookup, Purpose};
use super::node::Pending;
use super::{LookupError, LookupResult, Membership, MergeTrigger, Node, Peer, Request, RingEvent};

/// Merge lookups one node runs at once; further hints are dropped (the senders' own lookups
/// and the other threads cover them).
const MAX_MERGES_IN_FLIGHT: usize = 2;

/// One zipping step under way: the contact in the other ring, and where the thread goes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Zip {
    contact: Peer,
    /// Neighbours the thread still visits if it finds nothing here.
    ttl: u8,
    /// `Some(true)`: the thread moves on to successors; `Some(false)`: to predecessors; `None`:
    /// it started here and goes both ways.
    toward_successor: Option<bool>,
}

impl Node {
    /// Starts ring unification through `contact`, a live peer of another ring with the same ring
    /// id that this node has never known (two rings founded apart, a seed outside this ring):
    /// the explicit entry an operator's command drives. Returns false when this node is not a
    /// member or is already zipping as much as it may.
    pub fn merge_with(&mut self, contact: Peer) -> bool {
        if self.membership != Membership::Member || contact.id == self.me.id {
            return false;
        }
        self.start_merge(contact, MergeTrigger::Explicit)
    }

    pub(super) fn start_merge(&mut self, contact: Peer, trigger: MergeTrigger) -> bool {
        if self.merges_in_flight >= MAX_MERGES_IN_FLIGHT {
            return false;
        }
        self.emit(RingEvent::MergeStarted {
            contact: contact.clone(),
            trigger,
        });
        let ttl = self.config.merge_hint_ttl;
        self.zip(Zip {
            contact,
            ttl,
            toward_successor: None,
        });
        true
    }

    fn send_hint(&mut self, to: Peer, contact: Peer, ttl: u8, toward_successor: bool) {
        self.send(
            to.address,
            Request::MergeHint {
                contact,
                ttl,
                toward_successor,
            },
            Pending::MergeHint,
        );
    }

    /// Looks this node's successor position up in the other ring, through the contact.
    fn zip(&mut self, zip: Zip) {
        self.merges_in_flight += 1;
        let id = self.new_lookup_id();
        let target = self.me.id.add_pow2(0);
        let (address, contact_id) = (zip.contact.address.clone(), zip.contact.id);
        self.lookups
            .insert(id, Lookup::from_bootstrap(target, Purpose::Merge(zip)));
        self.send_step(id, address, Some(contact_id), target);
    }

    /// A neighbour passes on a merge hint.
    pub(super) fn merge_hinted(&mut self, contact: Peer, ttl: u8, toward_successor: bool) {
        if self.membership != Membership::Member
            || contact.id == self.me.id
            || self.merges_in_flight >= MAX_MERGES_IN_FLIGHT
        {
            return;
        }
        self.emit(RingEvent::MergeStarted {
            contact: contact.clone(),
            trigger: MergeTrigger::Hint,
        });
        self.zip(Zip {
            contact,
            ttl,
            toward_successor: Some(toward_successor),
        });
    }

    /// The merge lookup finished: adopt what it found if it is closer, and pass the thread on.
    /// A thread that found something here goes on with its full fan-out (the neighbours are
    /// likely out of place too); one that found nothing goes on while its ttl lasts.
    pub(super) fn zipped(&mut self, zip: Zip, outcome: Result<LookupResult, LookupError>) {
        self.merges_in_flight = self.merges_in_flight.saturating_sub(1);
        if self.membership != Membership::Member {
            return;
        }
        let me = self.me.id;
        let old_succ = self.successors.first().cloned();
        let succ = old_succ.as_ref().map_or(me, |s| s.id);
        let adopted = match outcome {
            Ok(r) => std::iter::once(r.node)
                .chain(r.successors)
                .find(|p| p.id != me && (succ == me || p.id.in_open(me, succ))),
            Err(_) => None,
        };
        if let Some(candidate) = adopted.clone() {
            if self.stabilizing {
                // The round under way picks it up (it is verified before it is adopted).
                self.successor_candidate = Some(candidate);
            } else {
                self.stabilizing = true;
                self.ask_candidate(candidate, 0);
            }
        }
        let ttl = match &adopted {
            Some(_) => self.config.merge_hint_ttl,
            None => zip.ttl.saturating_sub(1),
        };
        // A closer contact for the neighbours: the peer just found in the other ring.
        let contact = adopted.clone().unwrap_or_else(|| zip.contact.clone());
        if ttl > 0 {
            let pred = self.predecessor.clone();
            for (to, toward_successor) in [(old_succ, true), (pred, false)] {
                if zip.toward_successor.is_some_and(|d| d != toward_successor) {
                    continue;
                }
                if let Some(to) = to.filter(|p| p.id != me && p.id != contact.id) {
                    self.send_hint(to, contact.clone(), ttl, toward_successor);
                }
            }
        }
        self.emit(RingEvent::MergeDone {
            contact: zip.contact,
            adopted,
        });
    }
}
