//! Graceful membership changes: founding a ring, joining one through a bootstrap peer, leaving,
//! and reacting to a neighbour's leave.

use super::lookup::{Lookup, Purpose};
use super::node::Pending;
use super::{
    Address, CommandError, JoinFailure, LookupError, LookupResult, Membership, Node, Output, Peer,
    Request, RingEvent, RingId,
};

impl Node {
    /// Founds a new ring with this node as its only member.
    pub fn create(&mut self, ring_id: RingId) -> Result<(), CommandError> {
        if self.is_member() || self.membership == Membership::Joining {
            return Err(CommandError::AlreadyMember);
        }
        self.reset_routing();
        self.ring_id = Some(ring_id);
        self.membership = Membership::Member;
        self.successors = vec![self.me.clone()];
        self.predecessor = Some(self.me.clone());
        let restarted = self.remembered == Some(ring_id);
        self.emit(RingEvent::Created { ring_id, restarted });
        self.persist();
        Ok(())
    }

    /// Joins the ring that the peer at `bootstrap` belongs to.
    pub fn join(&mut self, bootstrap: Address) -> Result<(), CommandError> {
        if self.is_member() || self.membership == Membership::Joining {
            return Err(CommandError::AlreadyMember);
        }
        self.reset_routing();
        self.ring_id = None;
        self.membership = Membership::Joining;
        let lookup = self.new_lookup_id();
        self.lookups
            .insert(lookup, Lookup::from_bootstrap(self.me.id, Purpose::Join));
        self.send_step(lookup, bootstrap, None, self.me.id);
        Ok(())
    }

    /// Starts handing this node's keys off before a graceful [`Node::leave`]: from now on it
    /// takes no keys or copies ([`Node::accepts_keys`]) and is not ready, so that neighbours
    /// leaving at the same moment hand their keys past it. Only a member can; the flag ends
    /// when the node leaves.
    pub fn begin_hand_off(&mut self) -> bool {
        if self.membership == Membership::Member {
            self.handing_off = true;
        }
        self.handing_off
    }

    /// Whether this node takes keys and copies: a member that is not handing off to leave.
    pub fn accepts_keys(&self) -> bool {
        self.membership == Membership::Member && !self.handing_off
    }

    /// Leaves gracefully: tells the predecessor and successor so the ring closes over this node.
    /// Key hand-off is the caller's business (on [`RingEvent::Left`] or before calling this).
    pub fn leave(&mut self) {
        match self.membership {
            Membership::Member => {}
            Membership::Joining => {
                self.finish_leave();
                return;
            }
            _ => return,
        }
        self.membership = Membership::Leaving;
        let message = Request::Leaving {
            predecessor: self.predecessor.clone(),
            successors: self.successors.clone(),
        };
        let mut targets: Vec<Peer> = Vec::new();
        for p in self.successors.first().into_iter().chain(&self.predecessor) {
            if p.id != self.me.id && !targets.iter().any(|t| t.id == p.id) {
                targets.push(p.clone());
            }
        }
        if targets.is_empty() {
            self.finish_leave();
            return;
        }
        self.leave_pending = targets.len();
        for t in targets {
            self.send(t.address, message.clone(), Pending::Leaving);
        }
    }

    pub(super) fn peer_leaving(
        &mut self,
        leaver: Peer,
        predecessor: Option<Peer>,
        successors: Vec<Peer>,
    ) {
        // Only a neighbour says it leaves, to the two peers it neighbours (see `leave`): a
        // `Leaving` from anyone else, or in another peer's name (another address), changes
        // nothing.
        let same = |p: &Peer| p.id == leaver.id && p.address == leaver.address;
        let mut known = false;
        if self.predecessor.as_ref().is_some_and(same) {
            known = true;
            let new = predecessor.filter(|p| p.id != leaver.id);
            self.set_predecessor(new);
        }
        if self.successors.first().is_some_and(same) {
            known = true;
            // The leaver's successors take its place; this node's own list follows them, so
            // a short (or empty) list cannot empty it.
            let mut spliced = successors
                .into_iter()
                .filter(|p| p.id != leaver.id)
                .chain(self.successors[1..].to_vec());
            let head = spliced.next().unwrap_or_else(|| self.me.clone());
            let rest: Vec<Peer> = spliced.collect();
            self.set_successors(head, &rest);
        }
        if known {
            self.forget_quietly(leaver.id);
            self.emit(RingEvent::PeerLeft { peer: leaver });
        }
    }

    pub(super) fn join_found(&mut self, r: LookupResult) {
        let mut candidates = std::iter::once(r.node).chain(r.successors);
        let succ = loop {
            match candidates.next() {
                Some(p) if p.id == self.me.id && p.address != self.me.address => {
                    return self.join_failed(JoinFailure::IdInUse { address: p.address });
                }
                // Our own previous incarnation: take whoever follows it.
                Some(p) if p.id == self.me.id => continue,
                Some(p) => break p,
                None => return self.join_failed(JoinFailure::Other("no successor found".into())),
            }
        };
        self.send(
            succ.address.clone(),
            Request::GetNeighbors,
            Pending::JoinNeighbors(succ),
        );
    }

    pub(super) fn joined(&mut self, succ: Peer, successors: Vec<Peer>) {
        if self.membership != Membership::Joining {
            return;
        }
        let Some(ring_id) = self.ring_id else {
            return self.join_failed(JoinFailure::Other(
                "successor did not say which ring it is in".into(),
            ));
        };
        self.membership = Membership::Member;
        self.set_successors(succ.clone(), &successors);
        self.emit(RingEvent::Joined {
            ring_id,
            successor: succ,
        });
        self.persist();
        self.notify_successor();
    }

    pub(super) fn join_failed(&mut self, failure: JoinFailure) {
        if self.membership == Membership::Joining {
            self.membership = Membership::Idle;
            self.reset_routing();
            self.emit(RingEvent::JoinFailed { failure });
        }
    }

    pub(super) fn leave_acknowledged(&mut self) {
        self.leave_pending = self.leave_pending.saturating_sub(1);
        if self.leave_pending == 0 && self.membership == Membership::Leaving {
            self.finish_leave();
        }
    }

    fn finish_leave(&mut self) {
        for (id, l) in std::mem::take(&mut self.lookups) {
            if l.purpose == Purpose::User {
                self.out.push(Output::LookupDone {
                    lookup: id,
                    outcome: Err(LookupError::NotMember),
                });
            }
        }
        self.membership = Membership::Left;
        self.reset_routing();
        self.ring_id = None;
        self.emit(RingEvent::Left);
    }
}
