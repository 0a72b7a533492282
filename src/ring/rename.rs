//! Merging two rings with **different** ring ids, on an operator's word (DESIGN.md §11;
//! `POST /v1/ring/merge`).
//!
//! Two rings with different ids never merge by themselves: that is a configuration error, not
//! a partition ([`RingEvent::ForeignRing`]). When an operator decides they should be one, the
//! ring of the peer the operator asks (here: "this ring") keeps its id and the other ring takes
//! it over, then the two zip together exactly as after a partition ([`super::unify`]):
//!
//! 1. [`Node::absorb_ring`]: this node sends the contact in the other ring a merge hint whose
//!    envelope says `renamed_from = <the contact's ring id>`: "my ring was once yours".
//! 2. A member receiving a message with `ring_id = new` and `renamed_from = mine` **adopts**
//!    `new`: it keeps accepting its old id (the alias) from peers that have not heard yet, and
//!    every message it sends says `renamed_from = old`, so the rename spreads with ordinary
//!    traffic too. A peer still on the old id that gets an answer saying
//!    `renamed_from = its id` adopts as well.
//! 3. The first merge hint a renamed node gets (the one that renamed it, or a later one) goes
//!    on to its successors and predecessor, with the contact in the absorbing ring: each node
//!    of the renamed ring looks its own place up there and zips in, all of them at once, not
//!    one thread walking around the ring.
//!
//! Nothing here trusts more than the ring already does: a message is from a ring member (the
//! ring secret, when set, is checked before the node sees it), and the rename only ever moves a
//! node to the id its own ring's traffic carries. Both rings need the same ring secret (or each
//! other's key among the accepted ones) for their peers to talk at all.

use super::node::Pending;
use super::{Address, Membership, Node, Peer, Request, RingEvent, RingId};

impl Node {
    /// Asks the ring of `contact` (a member of ring `theirs`, not this node's ring) to take
    /// this ring's id and merge into it. False when this node is not a member, or `theirs` is
    /// this ring's own id (an ordinary unification, [`Node::merge_with`], is what that needs).
    pub fn absorb_ring(&mut self, contact: Address, theirs: RingId) -> bool {
        if self.membership != Membership::Member
            || self.ring_id.is_none()
            || self.ring_id == Some(theirs)
        {
            return false;
        }
        let hint = Request::MergeHint {
            contact: self.me.clone(),
            ttl: 0,
            toward_successor: true,
        };
        self.send_renamed(contact, hint, Pending::MergeHint, Some(theirs));
        true
    }

    /// The id this node's ring had before an operator merged it into another (accepted from
    /// peers that have not heard yet), if it had one.
    pub fn ring_alias(&self) -> Option<RingId> {
        self.ring_alias
    }

    /// Whether a message with ring id `theirs` (and `renamed_from`) from a peer belongs to this
    /// node's ring, adopting a rename it announces. `contact`: where the message says the
    /// absorbing ring is, for the notice to the neighbours.
    pub(super) fn same_ring(
        &mut self,
        theirs: RingId,
        renamed_from: Option<RingId>,
        contact: Option<&Peer>,
    ) -> bool {
        let Some(mine) = self.ring_id else {
            return true;
        };
        if mine == theirs {
            // A peer of a ring that took this ring's id over: say so once.
            if let Some(absorbed) = renamed_from.filter(|&r| r != mine)
                && self.ring_alias != Some(absorbed)
                && self.absorbed != Some(absorbed)
            {
                self.absorbed = Some(absorbed);
                self.emit(RingEvent::RingsMerged { absorbed });
            }
            return true;
        }
        if self.ring_alias == Some(theirs) {
            return true;
        }
        if renamed_from == Some(mine) && self.membership == Membership::Member {
            self.adopt_ring(theirs, mine, contact.cloned());
            return true;
        }
        false
    }

    /// This node's ring is now `new` (it was `old`). With `contact` (a merge hint brought the
    /// rename), the neighbours get the hint at once; a node that learnt the rename from
    /// ordinary traffic passes the hint on when it reaches it.
    fn adopt_ring(&mut self, new: RingId, old: RingId, contact: Option<Peer>) {
        self.ring_id = Some(new);
        self.ring_alias = Some(old);
        self.rename_hinted = false;
        self.emit(RingEvent::RingRenamed { old, new });
        self.persist();
        if let Some(contact) = contact {
            self.pass_rename_hint(&contact);
        }
    }

    /// After a rename, the first merge hint this node gets goes on to its successors and
    /// predecessor (once), so that every node of the renamed ring zips itself in.
    pub(super) fn pass_rename_hint(&mut self, contact: &Peer) {
        if self.ring_alias.is_none() || self.rename_hinted {
            return;
        }
        self.rename_hinted = true;
        let me = self.me.id;
        let mut told: Vec<Peer> = Vec::new();
        for p in self.successors.iter().chain(&self.predecessor) {
            if p.id != me && p.id != contact.id && !told.iter().any(|t| t.id == p.id) {
                told.push(p.clone());
            }
        }
        for peer in told {
            let hint = Request::MergeHint {
                contact: contact.clone(),
                ttl: 0,
                toward_successor: true,
            };
            self.send(peer.address, hint, Pending::MergeHint);
        }
    }

    /// Forgets a rename (the node founded, joined or left a ring).
    pub(super) fn clear_alias(&mut self) {
        self.ring_alias = None;
        self.absorbed = None;
        self.rename_hinted = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use crate::ring::{Output, RequestEnvelope, Response};

    fn peer(n: u128) -> Peer {
        Peer::new(Id::from_parts(0, n), Address::new(format!("p{n}")))
    }

    fn ping(ring: u128, renamed_from: Option<u128>) -> RequestEnvelope {
        RequestEnvelope {
            renamed_from: renamed_from.map(RingId),
            ..RequestEnvelope::new(Some(RingId(ring)), peer(9), Request::Ping)
        }
    }

    fn answers(node: &mut Node, request: RequestEnvelope) -> bool {
        matches!(node.handle_request(request).body, Response::Ack)
    }

    #[test]
    fn a_member_takes_over_the_id_its_old_ring_was_renamed_to_and_still_accepts_the_old_one() {
        let mut node = Node::new(peer(1), Default::default());
        assert!(node.create(RingId(2)).is_ok());
        let mut out = Vec::new();
        node.drain_outputs(&mut out);

        // Another ring, no rename: refused, nothing changes.
        assert!(!answers(&mut node, ping(1, None)));
        assert!(!answers(&mut node, ping(1, Some(3))));
        assert_eq!(node.ring_id(), Some(RingId(2)));

        // Ring 1 says it was once ring 2: this node takes id 1 over, says so, remembers it.
        assert!(answers(&mut node, ping(1, Some(2))));
        assert_eq!(node.ring_id(), Some(RingId(1)));
        assert_eq!(node.ring_alias(), Some(RingId(2)));
        out.clear();
        node.drain_outputs(&mut out);
        assert!(out.contains(&Output::Event(RingEvent::RingRenamed {
            old: RingId(2),
            new: RingId(1)
        })));
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Persist(r) if r.ring_id == Some(RingId(1))))
        );

        // Peers that have not heard yet still get answers, which tell them.
        let answer = node.handle_request(ping(2, None));
        assert_eq!(answer.body, Response::Ack);
        assert_eq!(answer.ring_id, Some(RingId(1)));
        assert_eq!(answer.renamed_from, Some(RingId(2)));
        // A third ring is still another ring.
        assert!(!answers(&mut node, ping(3, None)));
    }

    #[test]
    fn only_a_member_asks_another_ring_to_merge_and_never_its_own() {
        let mut node = Node::new(peer(1), Default::default());
        assert!(!node.absorb_ring(Address::new("p5"), RingId(7)));
        assert!(node.create(RingId(2)).is_ok());
        assert!(!node.absorb_ring(Address::new("p5"), RingId(2)));
        assert!(node.absorb_ring(Address::new("p5"), RingId(7)));
        let mut out = Vec::new();
        node.drain_outputs(&mut out);
        let sent = out.iter().find_map(|o| match o {
            Output::Send { to, message, .. } => Some((to.clone(), message.clone())),
            _ => None,
        });
        let (to, message) = sent.expect("a merge hint is sent");
        assert_eq!(to, Address::new("p5"));
        assert_eq!(message.ring_id, Some(RingId(2)));
        assert_eq!(message.renamed_from, Some(RingId(7)));
        assert!(
            matches!(message.body, Request::MergeHint { ref contact, .. } if contact.id == node.id())
        );
    }
}
