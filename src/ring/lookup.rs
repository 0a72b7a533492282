//! Iterative lookups: the asking node contacts every hop itself, so it can count hops, record the
//! path, and route around a hop that does not answer.

use serde::{Deserialize, Serialize};

use super::message::{Address, Peer};
use super::node::Pending;
use super::passive::Entry;
use super::types::Why;
use super::unify::Zip;
use super::{
    JoinFailure, Membership, Node, Output, Rejection, Request, Response, ResponseEnvelope,
};
use crate::id::Id;

/// Handle of a lookup started on a node; reported back in [`super::Output::LookupDone`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LookupId(pub u64);

/// How many times one lookup may try a peer that did not answer.
const ATTEMPTS_PER_PEER: u8 = 2;

/// How many times a user lookup that found no live route is started again, each time after
/// [`RETRY_AFTER_TICKS`] stabilization ticks (by then the peers on the way have had a round to
/// notice a dead successor), before it fails with [`LookupError::NoRoute`].
pub const NO_ROUTE_RETRIES: u8 = 3;

/// Stabilization ticks a lookup without a route waits before it starts again.
pub const RETRY_AFTER_TICKS: u64 = 2;

/// Upper bound on answered hops; a correct ring needs about log2 N.
pub const MAX_HOPS: u32 = 2 * crate::id::BITS as u32;

/// A finished lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResult {
    /// The identifier looked up.
    pub target: Id,
    /// The peer responsible for `target` (its successor).
    pub node: Peer,
    /// The peers after `node` in its predecessor's successor list: where replicas live.
    pub successors: Vec<Peer>,
    /// Number of remote peers that answered on the way.
    pub hops: u32,
    /// The peers that answered, in order.
    pub path: Vec<Peer>,
    /// Hops that did not answer and were routed around.
    pub timeouts: u32,
    /// `node` itself gave the answer (it just answered, and says the target is its own), so
    /// there is nothing to confirm: no ping needed before pointing a user at it.
    #[serde(default)]
    pub confirmed: bool,
}

/// Why a lookup failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum LookupError {
    #[error("this node is not a ring member")]
    NotMember,
    #[error("no live route towards the target after {hops} hops and {timeouts} timeouts")]
    NoRoute { hops: u32, timeouts: u32 },
    #[error("lookup exceeded {MAX_HOPS} hops")]
    TooManyHops,
}

/// What a lookup is for: the node reacts differently when it completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Asked for by the node's user (the API, the file layer, a simulator workload).
    User,
    /// Finding this node's successor while joining.
    Join,
    /// Refreshing finger `i`.
    Finger(usize),
    /// Looking our own successor up through the ring, to find a closer one.
    Successor,
    /// Is this peer, which answered a probe, in our ring? (the passive list)
    MemberCheck(Entry),
    /// Ring unification: our successor position in the other ring, through this contact.
    Merge(Zip),
}

/// An in-flight lookup.
pub(super) struct Lookup {
    pub target: Id,
    pub purpose: Purpose,
    pub hops: u32,
    pub timeouts: u32,
    pub path: Vec<Peer>,
    /// Known peers in (last answered hop, target), farthest from the target first, so that
    /// `pop` yields the closest. Older, farther candidates stay behind as fall-backs.
    candidates: Vec<Peer>,
    /// The last peer that answered; every further hop must lie strictly between it and target.
    last_answered: Option<Id>,
    /// Peers that did not answer during this lookup, with how often. A lost message is not a
    /// dead peer: a peer is offered again until it failed [`ATTEMPTS_PER_PEER`] times.
    failed: Vec<(Id, u8)>,
    /// Times it found no route and was started again.
    retries: u8,
    /// Parked until this stabilization tick, then started again from the asking node.
    pub parked_until: Option<u64>,
    /// The membership table's proposal, asked before any finger (one hop when it is right).
    guess: Option<Peer>,
}

impl Lookup {
    pub fn new(target: Id, purpose: Purpose, origin: Id) -> Lookup {
        Lookup {
            target,
            purpose,
            hops: 0,
            timeouts: 0,
            path: Vec::new(),
            candidates: Vec::new(),
            last_answered: Some(origin),
            failed: Vec::new(),
            retries: 0,
            parked_until: None,
            guess: None,
        }
    }

    /// Parks a user lookup that ran out of candidates, to start again from `origin` at tick
    /// `until`; false when it may not (not a user lookup, or no retries left).
    pub fn park(&mut self, origin: Id, until: u64) -> bool {
        if self.purpose != Purpose::User || self.retries >= NO_ROUTE_RETRIES {
            return false;
        }
        self.retries += 1;
        self.candidates.clear();
        self.last_answered = Some(origin);
        self.parked_until = Some(until);
        true
    }

    /// A lookup that starts from a peer known only by address (the join bootstrap).
    pub fn from_bootstrap(target: Id, purpose: Purpose) -> Lookup {
        Lookup {
            last_answered: None,
            ..Lookup::new(target, purpose, Id::ZERO)
        }
    }

    /// Records an answering hop and the candidates it offered.
    pub fn answered(&mut self, by: Peer, candidates: Vec<Peer>) {
        self.hops += 1;
        self.last_answered = Some(by.id);
        self.path.push(by);
        self.add_candidates(candidates);
    }

    /// Adds candidates (from the local node or a hop), keeping only those that make progress.
    pub fn add_candidates(&mut self, candidates: Vec<Peer>) {
        let target = self.target;
        if let Some(last) = self.last_answered {
            self.candidates.retain(|c| c.id.in_open(last, target));
        }
        for c in candidates {
            let progresses = match self.last_answered {
                Some(last) => c.id.in_open(last, target),
                None => true,
            };
            if progresses
                && !self
                    .failed
                    .iter()
                    .any(|(id, n)| *id == c.id && *n >= ATTEMPTS_PER_PEER)
                && !self.candidates.iter().any(|k| k.id == c.id)
            {
                self.candidates.push(c);
            }
        }
        // Farthest from the target first; `pop` takes the closest.
        self.candidates
            .sort_by_key(|c| std::cmp::Reverse(c.id.distance_to(target)));
    }

    /// The hop to ask next, if any is left.
    pub fn next_hop(&mut self) -> Option<Peer> {
        self.candidates.pop()
    }

    /// Records a proposal of the membership table that answered without settling the lookup:
    /// a hop, but its candidates (from beyond the target) make no progress.
    pub fn guess_missed(&mut self, by: Peer) {
        self.hops += 1;
        self.path.push(by);
    }

    /// Records a hop that did not answer.
    pub fn hop_failed(&mut self, id: Option<Id>) {
        self.timeouts += 1;
        if let Some(id) = id {
            match self.failed.iter_mut().find(|(f, _)| *f == id) {
                Some((_, n)) => *n += 1,
                None => self.failed.push((id, 1)),
            }
        }
    }
}

/// The request a lookup step is waiting for: which lookup, and whom it asked.
#[derive(Clone, Debug)]
pub(super) struct Step {
    pub lookup: LookupId,
    pub to: Address,
    pub to_id: Option<Id>,
    /// A proposal of the membership table, not a Chord hop.
    pub guess: bool,
}

// ----- driving lookups on a node -------------------------------------------------------------

impl Node {
    /// Starts a lookup of the peer responsible for `target`; the answer comes as
    /// [`Output::LookupDone`] with the returned id.
    pub fn lookup(&mut self, target: Id) -> LookupId {
        let id = self.new_lookup_id();
        if !self.is_member() {
            self.out.push(Output::LookupDone {
                lookup: id,
                outcome: Err(LookupError::NotMember),
            });
            return id;
        }
        self.lookups
            .insert(id, Lookup::new(target, Purpose::User, self.me.id));
        self.start_local(id);
        id
    }

    /// [`Node::lookup`]; with `reuse`, answered at once, without a message, when the
    /// responsible peer the membership table proposes for `target` said during this period
    /// that `target` is its own (see [`super::recent`]): such an answer has no hops and is
    /// `confirmed`.
    pub fn lookup_with(&mut self, target: Id, reuse: bool) -> LookupId {
        let reused = match self.propose(target) {
            Some(owner) if reuse && self.is_member() => self.recent.answer(target, owner.id),
            _ => None,
        };
        let Some((node, successors)) = reused.and_then(<[Peer]>::split_first) else {
            return self.lookup(target);
        };
        let (node, successors) = (node.clone(), successors.to_vec());
        let id = self.new_lookup_id();
        let result = LookupResult {
            target,
            node,
            successors,
            hops: 0,
            path: Vec::new(),
            timeouts: 0,
            confirmed: true,
        };
        self.out.push(Output::LookupDone {
            lookup: id,
            outcome: Ok(result),
        });
        id
    }

    /// Starts a lookup at this node: answer locally, then go remote if needed.
    pub(super) fn start_local(&mut self, id: LookupId) {
        let Some(target) = self.lookups.get(&id).map(|l| l.target) else {
            return;
        };
        match self.answer_find(target) {
            Response::Found { successors, .. } => self.finish_found(id, successors),
            Response::Closer { candidates } => {
                let guess = match self.lookups.get(&id) {
                    Some(l) if l.purpose == Purpose::User => self.propose(target),
                    _ => None,
                };
                if let Some(l) = self.lookups.get_mut(&id) {
                    l.add_candidates(candidates);
                    l.guess = guess;
                }
                self.advance(id);
            }
            _ => {}
        }
    }

    /// Sends the lookup's next step to its best candidate, or fails it.
    fn advance(&mut self, id: LookupId) {
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        if l.hops >= MAX_HOPS {
            return self.finish(id, Err(LookupError::TooManyHops));
        }
        if let Some(guess) = l.guess.take() {
            let step = Step {
                lookup: id,
                to: guess.address.clone(),
                to_id: Some(guess.id),
                guess: true,
            };
            let target = l.target;
            return self.send(
                guess.address,
                Request::FindSuccessor { target },
                Pending::Lookup(step),
            );
        }
        match l.next_hop() {
            Some(hop) => {
                let target = l.target;
                self.send_step(id, hop.address, Some(hop.id), target);
            }
            None => {
                if l.park(self.me.id, self.ticks + RETRY_AFTER_TICKS) {
                    return;
                }
                let (hops, timeouts) = (l.hops, l.timeouts);
                self.finish(id, Err(LookupError::NoRoute { hops, timeouts }));
            }
        }
    }

    /// Starts again the parked lookups whose wait is over (on a stabilization tick).
    pub(super) fn resume_parked_lookups(&mut self) {
        let now = self.ticks;
        let due: Vec<LookupId> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.parked_until.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(l) = self.lookups.get_mut(&id) {
                l.parked_until = None;
            }
            self.start_local(id);
        }
    }

    pub(super) fn send_step(
        &mut self,
        lookup: LookupId,
        to: Address,
        to_id: Option<Id>,
        target: Id,
    ) {
        let step = Step {
            lookup,
            to: to.clone(),
            to_id,
            guess: false,
        };
        self.send(to, Request::FindSuccessor { target }, Pending::Lookup(step));
    }

    pub(super) fn step_answered(&mut self, step: Step, response: ResponseEnvelope) {
        let Some(l) = self.lookups.get_mut(&step.lookup) else {
            return;
        };
        match response.body {
            Response::Found {
                successors,
                owns_after,
            } if !successors.is_empty() => {
                if successors[0].id == response.from.id {
                    self.recent.record(l.target, owns_after, &successors);
                }
                l.answered(response.from, Vec::new());
                self.finish_found(step.lookup, successors);
            }
            Response::Closer { .. } if step.guess => {
                self.recent.forget(response.from.id);
                l.guess_missed(response.from);
                self.advance(step.lookup);
            }
            Response::Closer { candidates } => {
                l.answered(response.from, candidates);
                self.advance(step.lookup);
            }
            _ => self.step_failed(step, Why::Malformed),
        }
    }

    pub(super) fn step_failed(&mut self, step: Step, why: Why) {
        let Some(l) = self.lookups.get_mut(&step.lookup) else {
            return;
        };
        l.hop_failed(step.to_id);
        if l.purpose == Purpose::Join && step.to_id.is_none() {
            // The bootstrap itself failed: say precisely how, so a caller can tell "nobody
            // there" from "there, but not in a ring".
            self.lookups.remove(&step.lookup);
            let bootstrap = step.to;
            return self.join_failed(match why {
                Why::NoResponse => JoinFailure::Unreachable { bootstrap },
                Why::Incompatible(detail) => JoinFailure::Incompatible { bootstrap, detail },
                Why::Rejected(Rejection::NotMember { remembers }) => JoinFailure::NotMember {
                    bootstrap,
                    remembers,
                },
                other => JoinFailure::Other(format!("bootstrap {bootstrap}: {other}")),
            });
        }
        if let Some(dead) = step.to_id {
            // Route around it now; stabilization decides about successors.
            self.forget_finger(dead);
            if step.guess {
                self.proposal_failed(dead);
            }
        }
        self.advance(step.lookup);
    }

    fn finish_found(&mut self, id: LookupId, mut successors: Vec<Peer>) {
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        let node = successors.remove(0);
        let confirmed = l.path.last().is_some_and(|p| p.id == node.id);
        let result = LookupResult {
            target: l.target,
            node,
            successors,
            hops: l.hops,
            path: std::mem::take(&mut l.path),
            timeouts: l.timeouts,
            confirmed,
        };
        self.finish(id, Ok(result));
    }

    fn finish(&mut self, id: LookupId, outcome: Result<LookupResult, LookupError>) {
        let Some(l) = self.lookups.remove(&id) else {
            return;
        };
        match l.purpose {
            Purpose::User => self.out.push(Output::LookupDone {
                lookup: id,
                outcome,
            }),
            Purpose::Finger(i) => {
                self.fixing_finger = false;
                if let Ok(r) = outcome
                    && self.membership == Membership::Member
                {
                    self.finger_found(i, r.node);
                }
            }
            Purpose::Successor => {
                self.fixing_finger = false;
                if let Ok(r) = outcome
                    && self
                        .successors
                        .first()
                        .is_some_and(|s| r.node.id.in_open(self.me.id, s.id))
                {
                    self.successor_candidate = Some(r.node);
                }
            }
            Purpose::MemberCheck(entry) => self.member_checked(entry, outcome),
            Purpose::Merge(zip) => self.zipped(zip, outcome),
            Purpose::Join => match outcome {
                Ok(r) => self.join_found(r),
                Err(e) => self.join_failed(JoinFailure::Other(e.to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u128) -> Peer {
        Peer::new(Id::from_parts(0, n), Address::new(format!("p{n}")))
    }

    #[test]
    fn candidates_only_make_progress_and_closest_comes_first() {
        let mut l = Lookup::new(Id::from_parts(0, 100), Purpose::User, Id::from_parts(0, 10));
        l.add_candidates(vec![peer(50), peer(5), peer(90), peer(150), peer(90)]);
        assert_eq!(l.next_hop(), Some(peer(90)));
        l.hop_failed(Some(peer(90).id));
        assert_eq!(l.next_hop(), Some(peer(50)));
        l.answered(peer(50), vec![peer(60), peer(90), peer(40)]);
        // 90 failed once: a lost message, maybe; it gets a second chance.
        assert_eq!(l.next_hop(), Some(peer(90)));
        l.hop_failed(Some(peer(90).id));
        assert_eq!(l.next_hop(), Some(peer(60)));
        assert_eq!(l.next_hop(), None);
        l.answered(peer(60), vec![peer(90), peer(70)]);
        // Twice is dead for this lookup.
        assert_eq!(l.next_hop(), Some(peer(70)));
        assert_eq!((l.hops, l.timeouts), (2, 2));
    }
}
