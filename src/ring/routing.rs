//! Changes to the routing state (successor list, predecessor) and forgetting dead peers.

use super::{Membership, Node, Peer, RingEvent};
use crate::id::Id;

impl Node {
    pub(super) fn reset_routing(&mut self) {
        self.predecessor = None;
        self.successors.clear();
        for i in 0..self.fingers.len() {
            self.set_finger(i, None);
        }
        self.next_finger = 0;
        self.notifiers.clear();
        self.clear_alias();
        self.pending.clear();
        self.lookups.clear();
        self.stabilizing = false;
        self.fixing_finger = false;
        self.checking_predecessor = false;
        self.rectify_candidate = None;
        self.successor_candidate = None;
        self.leave_pending = 0;
        self.handing_off = false;
        self.stabilize_rounds = 0;
        self.passive.clear();
        self.probing = false;
        self.merges_in_flight = 0;
        self.table.clear();
        self.exchanging = false;
    }

    /// Successor list = `head` followed by `rest` (head's own list), without repeats, cut at
    /// ourselves (a ring shorter than r) and at r entries.
    pub(super) fn set_successors(&mut self, head: Peer, rest: &[Peer]) {
        let r = self.config.successors;
        let mut list: Vec<Peer> = Vec::with_capacity(r);
        let reached_self = head.id == self.me.id;
        list.push(head);
        if !reached_self {
            for p in rest {
                if list.len() >= r {
                    break;
                }
                if list.iter().any(|q| q.id == p.id) {
                    continue;
                }
                list.push(p.clone());
                if p.id == self.me.id {
                    break;
                }
            }
        }
        let old = self.successors.first().cloned();
        for p in &list {
            self.back_in_ring(p.id);
        }
        self.successors = list;
        if old.as_ref().is_none_or(|o| o.id != self.successors[0].id) {
            let new = self.successors[0].clone();
            // A founder that was alone has remembered nobody yet: remember its first neighbour
            // now rather than rounds later (a restart then has someone to ask).
            let was_alone = old.as_ref().is_some_and(|o| o.id == self.me.id);
            self.emit(RingEvent::SuccessorChanged { old, new });
            if was_alone && self.membership == Membership::Member {
                self.persist();
            }
        }
    }

    pub(super) fn set_predecessor(&mut self, new: Option<Peer>) {
        let same = match (&self.predecessor, &new) {
            (Some(a), Some(b)) => a.id == b.id,
            (None, None) => true,
            _ => false,
        };
        if let Some(p) = &new {
            self.back_in_ring(p.id);
        }
        if !same {
            let old = std::mem::replace(&mut self.predecessor, new.clone());
            self.emit(RingEvent::PredecessorChanged { old, new });
        }
    }

    /// A peer is dead: remove it everywhere and say so.
    pub(super) fn forget(&mut self, id: Id) {
        let peer = self
            .successors
            .iter()
            .chain(&self.predecessor)
            .find(|p| p.id == id)
            .cloned();
        self.forget_quietly(id);
        if let Some(peer) = peer {
            self.declared_dead(&peer);
            self.emit(RingEvent::PeerFailed { peer });
        }
    }

    pub(super) fn forget_quietly(&mut self, id: Id) {
        if id == self.me.id {
            return;
        }
        if self.predecessor.as_ref().is_some_and(|p| p.id == id) {
            self.set_predecessor(None);
        }
        if let Some(pos) = self.successors.iter().position(|p| p.id == id) {
            let gone = self.successors.remove(pos);
            // Fingers go first, so that the fall-back cannot pick the peer being forgotten.
            self.forget_finger(id);
            if self.successors.is_empty() {
                self.fall_back_successor(Some(gone));
            } else if pos == 0 {
                let new = self.successors[0].clone();
                self.emit(RingEvent::SuccessorChanged {
                    old: Some(gone),
                    new,
                });
            }
        }
        self.forget_finger(id);
        self.notifiers.remove(&id);
        // Kept as a suspect rather than dropped: hearsay (other peers' tables) would bring it
        // straight back as fresh; a suspect is proposed again only once heard from directly.
        self.table.suspect(id);
    }

    /// Every successor is gone (the last one was `old`, when known): take the closest finger
    /// after us, or ourselves.
    pub(super) fn fall_back_successor(&mut self, old: Option<Peer>) {
        let me = self.me.id;
        let next = self
            .fingers
            .iter()
            .flatten()
            .filter(|p| p.id != me)
            .min_by_key(|p| me.distance_to(p.id))
            .cloned()
            .unwrap_or_else(|| self.me.clone());
        self.successors = vec![next.clone()];
        self.emit(RingEvent::SuccessorChanged { old, new: next });
    }
}
