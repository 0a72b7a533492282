//! Periodic maintenance of the successor and predecessor (Zave's stabilize, notify and
//! rectify), and the predecessor liveness check.

use super::node::Pending;
use super::{Membership, Node, Peer, Request, RingEvent, Timer};

/// How many times one stabilization round may move the successor closer.
const MAX_CHASE: u32 = 4;

impl Node {
    /// A periodic timer fired.
    pub fn tick(&mut self, timer: Timer) {
        if matches!(timer, Timer::Stabilize) {
            // Answers are reused for one period at most.
            self.recent.clear();
        }
        if self.membership != Membership::Member {
            return;
        }
        match timer {
            Timer::Stabilize => {
                self.ticks += 1;
                self.expire_notifiers();
                self.resume_parked_lookups();
                self.probe_passive();
                self.exchange_members();
                if !self.stabilizing {
                    self.stabilizing = true;
                    self.stabilize_step();
                }
            }
            Timer::FixFingers => self.fix_next_finger(),
            Timer::CheckPredecessor => self.check_predecessor(),
        }
    }

    pub(super) fn stabilize_step(&mut self) {
        if self.successors.is_empty() {
            self.fall_back_successor(None);
        }
        let succ = self.successors[0].clone();
        if succ.id == self.me.id {
            // Alone as far as we know: our own predecessor (or a hint) may be our successor.
            let hint = self.hint_for(self.me.id);
            let found = self.successor_candidate.take();
            match self.best_between(
                self.me.id,
                self.me.id,
                [self.predecessor.clone(), hint, found],
            ) {
                Some(candidate) => self.ask_candidate(candidate, 0),
                None => {
                    let me = self.me.clone();
                    self.rectify(me);
                    self.finish_stabilize();
                }
            }
        } else {
            self.send(
                succ.address.clone(),
                Request::GetNeighbors,
                Pending::StabilizeSuccessor {
                    succ,
                    retried: false,
                },
            );
        }
    }

    /// Stabilize found a peer that may be a closer successor: ask it (adopted once it answers).
    pub(super) fn ask_candidate(&mut self, candidate: Peer, chase: u32) {
        self.send_candidate(candidate, chase, Vec::new());
    }

    /// Asks `candidate` for its neighbours; `rest` are asked in turn if it does not answer.
    fn send_candidate(&mut self, candidate: Peer, chase: u32, rest: Vec<Peer>) {
        self.send(
            candidate.address.clone(),
            Request::GetNeighbors,
            Pending::StabilizeCandidate {
                candidate,
                chase,
                rest,
            },
        );
    }

    /// Asks the closest of `candidates` in (me, `before`); the others are asked in turn if it
    /// is dead (a dead hint or table entry must not hide a live peer behind it: a node that
    /// nobody points at would stay outside the ring while the closest candidate is a dead one
    /// someone still remembers). Returns false when there is none.
    fn ask_candidates<const N: usize>(
        &mut self,
        before: Peer,
        candidates: [Option<Peer>; N],
        chase: u32,
    ) -> bool {
        let me = self.me.id;
        let mut list: Vec<Peer> = candidates
            .into_iter()
            .flatten()
            .filter(|p| p.id != me && p.id.in_open(me, before.id))
            .collect();
        list.sort_by_key(|p| me.distance_to(p.id));
        list.dedup_by_key(|p| p.id);
        self.ask_next_candidate(list, chase)
    }

    /// Asks the first of `rest` (closest first) still closer than the successor.
    pub(super) fn ask_next_candidate(&mut self, rest: Vec<Peer>, chase: u32) -> bool {
        let me = self.me.id;
        let succ = self.successors.first().map_or(me, |s| s.id);
        let mut rest = rest
            .into_iter()
            .filter(|p| p.id != me && (succ == me || p.id.in_open(me, succ)));
        let Some(candidate) = rest.next() else {
            return false;
        };
        let rest = rest.collect();
        self.send_candidate(candidate, chase, rest);
        true
    }

    pub(super) fn finish_stabilize(&mut self) {
        self.stabilizing = false;
        self.stabilize_rounds += 1;
        self.emit(RingEvent::Stabilized {
            round: self.stabilize_rounds,
        });
        let every = self.config.remember_every.max(1);
        if self.stabilize_rounds % every == 1 % every {
            self.persist();
        }
    }

    /// Notifies our successor that we believe we are its predecessor.
    pub(super) fn notify_successor(&mut self) {
        let succ = self.successors[0].clone();
        if succ.id == self.me.id {
            let me = self.me.clone();
            self.rectify(me);
        } else {
            self.send(succ.address, Request::Notify, Pending::Notify);
        }
    }

    fn check_predecessor(&mut self) {
        if self.checking_predecessor {
            return;
        }
        if let Some(p) = self.predecessor.clone()
            && p.id != self.me.id
        {
            self.checking_predecessor = true;
            self.send(
                p.address.clone(),
                Request::Ping,
                Pending::CheckPredecessor {
                    peer: p,
                    retried: false,
                },
            );
        }
    }

    /// Zave's rectify: `n` believes it is our predecessor.
    pub(super) fn rectify(&mut self, n: Peer) {
        if n.id == self.me.id {
            if self.predecessor.is_none() {
                self.set_predecessor(Some(n));
            }
            return;
        }
        self.remember_notifier(n.clone());
        match self.predecessor.clone() {
            None => self.set_predecessor(Some(n)),
            Some(p) if p.id == self.me.id || n.id.in_open(p.id, self.me.id) => {
                self.set_predecessor(Some(n))
            }
            Some(p) if p.id != n.id && self.rectify_candidate.is_none() => {
                // Not closer than our predecessor; it replaces it only if that one is dead.
                self.rectify_candidate = Some(n);
                self.send(p.address.clone(), Request::Ping, Pending::RectifyPing(p));
            }
            Some(_) => {}
        }
    }

    fn remember_notifier(&mut self, n: Peer) {
        if self.config.notifier_cache == 0 {
            return;
        }
        self.notifiers.insert(n.id, (n, self.ticks));
        if self.notifiers.len() > self.config.notifier_cache {
            // Drop the one farthest from us (the first one clockwise after us).
            let far = self
                .notifiers
                .range(self.me.id..)
                .map(|(id, _)| *id)
                .find(|id| *id != self.me.id)
                .or_else(|| self.notifiers.keys().next().copied());
            if let Some(far) = far {
                self.notifiers.remove(&far);
            }
        }
    }

    fn expire_notifiers(&mut self) {
        if self.notifiers.is_empty() {
            return;
        }
        let (now, ttl) = (self.ticks, self.config.notifier_ttl);
        self.notifiers.retain(|_, (_, seen)| now - *seen <= ttl);
    }

    pub(super) fn successor_answered(
        &mut self,
        succ: Peer,
        predecessor: Option<Peer>,
        successors: Vec<Peer>,
        hint: Option<Peer>,
    ) {
        if self.membership != Membership::Member
            || self.successors.first().is_none_or(|s| s.id != succ.id)
        {
            // Our successor changed while we asked (a leave, say); the next round continues.
            self.stabilizing = false;
            return;
        }
        self.set_successors(succ.clone(), &successors);
        let found = self.successor_candidate.take();
        let table = self.closer_from_table(succ.id, predecessor.as_ref());
        // A successor that already names us, at our address, as its predecessor would do
        // nothing with a notify but refresh us in its notifier cache, and it offers its
        // predecessor as a hint anyway: in a steady ring that is one request per period saved.
        let names_us = predecessor.as_ref() == Some(&self.me);
        if !self.ask_candidates(succ, [predecessor, hint, found, table], 0) {
            if !names_us {
                self.notify_successor();
            }
            self.finish_stabilize();
        }
    }

    pub(super) fn candidate_answered(
        &mut self,
        candidate: Peer,
        chase: u32,
        predecessor: Option<Peer>,
        successors: Vec<Peer>,
        hint: Option<Peer>,
    ) {
        if self.membership != Membership::Member {
            self.stabilizing = false;
            return;
        }
        let succ = self.successors[0].id;
        // It answered, so it is alive: adopt it if it is still closer than our successor.
        if candidate.id.in_open(self.me.id, succ) || succ == self.me.id {
            self.set_successors(candidate.clone(), &successors);
            let table = self.closer_from_table(candidate.id, predecessor.as_ref());
            if chase < MAX_CHASE
                && self.ask_candidates(candidate, [predecessor, hint, table], chase + 1)
            {
                return;
            }
        }
        self.notify_successor();
        self.finish_stabilize();
    }
}
