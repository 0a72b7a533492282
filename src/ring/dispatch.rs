//! Incoming requests (answered from local state) and the answers, or failures, of the requests
//! this node sent.

use super::node::Pending;
use super::types::Why;
use super::{
    JoinFailure, Membership, Node, Peer, Rejection, Request, RequestEnvelope, RequestId, Response,
    ResponseEnvelope,
};
use crate::id::{BITS, Id};

impl Node {
    /// Answers a peer's request.
    pub fn handle_request(&mut self, request: RequestEnvelope) -> ResponseEnvelope {
        let exchange = matches!(request.body, Request::GetNeighbors)
            && request.ring_id.is_some()
            && request.ring_id == self.ring_id;
        let body = self.answer(request);
        let mut answer = ResponseEnvelope {
            renamed_from: self.ring_alias,
            ..ResponseEnvelope::new(self.ring_id, self.me.clone(), body)
        }
        .with_incarnation(self.incarnation);
        if exchange && matches!(answer.body, Response::Neighbors { .. }) {
            answer.members = self.table_window();
        }
        answer
    }

    fn answer(&mut self, mut request: RequestEnvelope) -> Response {
        self.bound_request(&mut request.body);
        if let (Some(mine), Some(theirs)) = (self.ring_id, request.ring_id) {
            let contact = match &request.body {
                Request::MergeHint { contact, .. } => Some(contact),
                _ => None,
            };
            if !self.same_ring(theirs, request.renamed_from, contact) {
                return Response::Rejected {
                    reason: Rejection::WrongRing { ring_id: mine },
                };
            }
        }
        // No ring id is a joiner's question (a lookup, its successor's neighbours, a ping),
        // never a change of this node's routing: those come from its own ring only.
        if let (Some(mine), None) = (self.ring_id, request.ring_id)
            && matches!(
                request.body,
                Request::Notify | Request::Leaving { .. } | Request::MergeHint { .. }
            )
        {
            return Response::Rejected {
                reason: Rejection::WrongRing { ring_id: mine },
            };
        }
        if !self.is_member() {
            return Response::Rejected {
                reason: Rejection::NotMember {
                    remembers: self.remembered,
                },
            };
        }
        self.learn_from_request(&request);
        match request.body {
            Request::FindSuccessor { target } => self.answer_find(target),
            Request::GetNeighbors => Response::Neighbors {
                predecessor: self.predecessor.clone(),
                successors: self.successors.clone(),
                hint: self.hint_for(request.from.id),
            },
            Request::Notify => {
                self.rectify(request.from);
                Response::Ack
            }
            Request::Ping => Response::Ack,
            Request::Leaving {
                predecessor,
                successors,
            } => {
                self.peer_leaving(request.from, predecessor, successors);
                Response::Ack
            }
            Request::MergeHint {
                contact,
                ttl,
                toward_successor,
            } => {
                self.pass_rename_hint(&contact);
                self.merge_hinted(contact, ttl, toward_successor);
                Response::Ack
            }
        }
    }

    /// One lookup step, answered from local state.
    pub(super) fn answer_find(&self, target: Id) -> Response {
        if let Some(p) = &self.predecessor
            && p.id != self.me.id
            && target.in_half_open(p.id, self.me.id)
        {
            let mut successors = Vec::with_capacity(self.successors.len() + 1);
            successors.push(self.me.clone());
            successors.extend(
                self.successors
                    .iter()
                    .filter(|s| s.id != self.me.id)
                    .take(self.config.successors.saturating_sub(1))
                    .cloned(),
            );
            return Response::Found {
                successors,
                owns_after: Some(p.id),
            };
        }
        let succ = &self.successors[0];
        if target.in_half_open(self.me.id, succ.id) {
            return Response::Found {
                successors: self.successors.clone(),
                owns_after: None,
            };
        }
        Response::Closer {
            candidates: self.closest_preceding(target),
        }
    }

    /// The known peers strictly between this node and `target`, closest to `target` first.
    fn closest_preceding(&self, target: Id) -> Vec<Peer> {
        let k = self.config.lookup_candidates;
        let mut out: Vec<Peer> = Vec::with_capacity(k + self.successors.len());
        // Fingers are ordered by distance from us, so scanning down from the highest finger
        // that can precede the target yields the closest ones first. Finger i is at least
        // 2^i away, so only those with 2^i below the target's distance can precede it.
        let reach = self.me.id.distance_to(target).bit_length().min(BITS);
        for f in self.fingers[..reach].iter().rev().flatten() {
            if out.len() >= k {
                break;
            }
            if f.id.in_open(self.me.id, target) && out.last().is_none_or(|l| l.id != f.id) {
                out.push(f.clone());
            }
        }
        for s in &self.successors {
            if s.id.in_open(self.me.id, target) && !out.iter().any(|o| o.id == s.id) {
                out.push(s.clone());
            }
        }
        out.sort_by_key(|p| p.id.distance_to(target));
        // Keep the k closest, but never drop our successors: fingers may point at dead peers,
        // and the successor list is what always makes progress (it is what stabilize keeps
        // alive), so it stays as the last resort of an asker routing around failures.
        let mut kept = 0;
        out.retain(|p| {
            kept += 1;
            kept <= k || self.successors.iter().any(|s| s.id == p.id)
        });
        out
    }

    /// The closest peer we know strictly between `asker` and us (a better successor for it).
    pub(super) fn hint_for(&self, asker: Id) -> Option<Peer> {
        let from_cache = self
            .notifiers
            .range(asker..)
            .find(|(id, _)| **id != asker)
            .or_else(|| self.notifiers.iter().next())
            .map(|(_, (p, _))| p.clone());
        self.best_between(asker, self.me.id, [from_cache, self.predecessor.clone()])
    }

    /// Among `candidates`, the one in (from, to) closest to `from`.
    pub(super) fn best_between<const N: usize>(
        &self,
        from: Id,
        to: Id,
        candidates: [Option<Peer>; N],
    ) -> Option<Peer> {
        candidates
            .into_iter()
            .flatten()
            .filter(|p| p.id != self.me.id && p.id.in_open(from, to))
            .min_by_key(|p| from.distance_to(p.id))
    }

    /// The answer to a request this node sent.
    pub fn handle_response(&mut self, request: RequestId, mut response: ResponseEnvelope) {
        let Some(pending) = self.pending.remove(&request) else {
            return;
        };
        self.bound_response(&mut response.body);
        if let (Some(_), Some(theirs)) = (self.ring_id, response.ring_id)
            && !self.same_ring(theirs, response.renamed_from, None)
        {
            let why = Why::Rejected(Rejection::WrongRing { ring_id: theirs });
            return self.failed(pending, why);
        }
        if let Response::Rejected { reason } = response.body {
            return self.failed(pending, Why::Rejected(reason));
        }
        self.note_incarnation(&response.from, response.incarnation);
        self.learn_from_answer(&mut response);
        match pending {
            Pending::Lookup(step) => self.step_answered(step, response),
            Pending::JoinNeighbors(succ) => match response.body {
                Response::Neighbors { successors, .. } => {
                    self.ring_id = response.ring_id;
                    self.joined(succ, successors)
                }
                _ => self.failed(Pending::JoinNeighbors(succ), Why::Malformed),
            },
            Pending::StabilizeSuccessor { succ, retried } => match response.body {
                Response::Neighbors {
                    predecessor,
                    successors,
                    hint,
                } => self.successor_answered(succ, predecessor, successors, hint),
                _ => self.failed(
                    Pending::StabilizeSuccessor { succ, retried },
                    Why::Malformed,
                ),
            },
            Pending::StabilizeCandidate {
                candidate,
                chase,
                rest,
            } => match response.body {
                Response::Neighbors {
                    predecessor,
                    successors,
                    hint,
                } => self.candidate_answered(candidate, chase, predecessor, successors, hint),
                _ => self.failed(
                    Pending::StabilizeCandidate {
                        candidate,
                        chase,
                        rest,
                    },
                    Why::Malformed,
                ),
            },
            Pending::Notify => {}
            Pending::CheckPredecessor { .. } => self.checking_predecessor = false,
            Pending::RectifyPing(_) => self.rectify_candidate = None,
            Pending::Leaving => self.leave_acknowledged(),
            Pending::Probe(entry) => self.probe_answered(entry, response.incarnation),
            Pending::SeedProbe(_) => self.seed_answered(response.from),
            Pending::MergeHint => {}
            Pending::Exchange(_) => self.exchanging = false,
        }
    }

    /// A request this node sent got no answer (time-out, refused connection).
    pub fn handle_failure(&mut self, request: RequestId) {
        if let Some(pending) = self.pending.remove(&request) {
            self.failed(pending, Why::NoResponse);
        }
    }

    /// A request this node sent reached something that cannot be a peer of this one (another
    /// transport, not a chordnet peer); `detail` says what. For routing it is a peer that did
    /// not answer; a join through it fails with [`JoinFailure::Incompatible`].
    pub fn handle_incompatible(&mut self, request: RequestId, detail: String) {
        if let Some(pending) = self.pending.remove(&request) {
            self.failed(pending, Why::Incompatible(detail));
        }
    }

    fn failed(&mut self, pending: Pending, why: Why) {
        // Something did not go as expected: reuse no answer until asked again.
        self.recent.clear();
        match pending {
            Pending::Lookup(step) => self.step_failed(step, why),
            Pending::JoinNeighbors(succ) => {
                self.join_failed(JoinFailure::Other(format!(
                    "successor {} failed to answer: {why}",
                    succ.address
                )));
            }
            Pending::StabilizeSuccessor { succ, retried } => {
                if self.membership != Membership::Member {
                    self.stabilizing = false;
                    return;
                }
                if !retried && why == Why::NoResponse {
                    return self.send(
                        succ.address.clone(),
                        Request::GetNeighbors,
                        Pending::StabilizeSuccessor {
                            succ,
                            retried: true,
                        },
                    );
                }
                self.forget(succ.id);
                self.stabilize_step();
            }
            Pending::StabilizeCandidate {
                candidate,
                chase,
                rest,
            } => {
                self.forget_quietly(candidate.id);
                if self.membership == Membership::Member {
                    if self.ask_next_candidate(rest, chase) {
                        return;
                    }
                    self.notify_successor();
                }
                self.finish_stabilize();
            }
            Pending::Notify => {}
            Pending::CheckPredecessor { peer, retried } => {
                if !retried && why == Why::NoResponse {
                    return self.send(
                        peer.address.clone(),
                        Request::Ping,
                        Pending::CheckPredecessor {
                            peer,
                            retried: true,
                        },
                    );
                }
                self.checking_predecessor = false;
                if self.predecessor.as_ref().is_some_and(|q| q.id == peer.id) {
                    self.forget(peer.id);
                }
            }
            Pending::RectifyPing(p) => {
                let candidate = self.rectify_candidate.take();
                if self.predecessor.as_ref().is_some_and(|q| q.id == p.id) {
                    self.forget(p.id);
                    if let Some(c) = candidate {
                        self.set_predecessor(Some(c));
                    }
                }
            }
            Pending::Leaving => self.leave_acknowledged(),
            Pending::Probe(entry) => self.probe_failed(entry, why),
            Pending::SeedProbe(seed) => self.seed_failed(seed, why),
            Pending::MergeHint => {}
            Pending::Exchange(partner) => self.exchange_failed(&partner),
        }
    }
}
