//! The Chord node as a sans-io state machine.
//!
//! A [`Node`] owns its routing state (predecessor, successor list, fingers) and makes every
//! protocol decision, but performs no I/O and reads no clock: the driver (the real server, or the
//! simulator) feeds it events and executes the [`Output`]s it produces.
//!
//! - Inputs: [`Node::tick`] for the periodic timers, [`Node::handle_request`] for a peer's request
//!   (answered synchronously), [`Node::handle_response`] / [`Node::handle_failure`] for the answer
//!   to (or the time-out of) a request this node sent, and user commands ([`Node::create`],
//!   [`Node::join`], [`Node::lookup`], [`Node::leave`]).
//! - Outputs, collected with [`Node::drain_outputs`]: requests to send, finished lookups, and ring
//!   events (successor/predecessor changed = key range changed, peer failed, joined, left, ...).
//!
//! Maintenance follows Zave's corrected Chord ("Reasoning about identifier spaces: how to make
//! Chord correct", 2017): a successor list of length r, a join that copies the successor's list,
//! stabilize that adopts the successor's predecessor only once it has answered (is alive), rectify
//! that replaces a dead predecessor, and fingers that only ever speed lookups up.

pub mod bootstrap;
mod cancel;
mod lookup;
mod message;
pub mod placement;
pub mod verify;

use std::collections::BTreeMap;

pub use bootstrap::{
    Action as BootstrapAction, Bootstrap, BootstrapConfig, FoundReason, JoinOutcome,
    MIN_DOWN_ATTEMPTS, Remembered,
};
pub use lookup::{LookupError, LookupId, LookupResult, MAX_HOPS};
pub use message::{
    Address, Peer, Rejection, Request, RequestEnvelope, RequestId, Response, ResponseEnvelope,
    RingId,
};

use crate::id::{BITS, Id};
use lookup::{Lookup, Purpose, Step};

/// Tunables of the protocol (not of timing: timers belong to the driver).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Successor list length r (Chord paper: O(log N) survives the crash of half the nodes).
    pub successors: usize,
    /// How many closer peers a lookup step offers, so the asker can route around a dead one.
    pub lookup_candidates: usize,
    /// How many recent notifiers a node remembers to offer as stabilization hints.
    pub notifier_cache: usize,
    /// How many stabilize ticks a remembered notifier stays a valid hint.
    pub notifier_ttl: u64,
}

impl Default for RingConfig {
    fn default() -> RingConfig {
        RingConfig {
            successors: 4,
            lookup_candidates: 4,
            notifier_cache: 64,
            notifier_ttl: 4,
        }
    }
}

/// The periodic maintenance timers a driver fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    Stabilize,
    FixFingers,
    CheckPredecessor,
}

/// Membership state of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Membership {
    /// Not in any ring yet.
    Idle,
    Joining,
    Member,
    Leaving,
    Left,
}

/// What a node tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `message` to `to`, then report the answer with [`Node::handle_response`] or its
    /// absence (time-out, refused connection) with [`Node::handle_failure`].
    Send {
        request: RequestId,
        to: Address,
        message: RequestEnvelope,
        /// What the request is for (for traces; the node needs nothing back but the answer).
        cause: Cause,
    },
    /// A lookup started with [`Node::lookup`] finished.
    LookupDone {
        lookup: LookupId,
        outcome: Result<LookupResult, LookupError>,
    },
    /// Something changed in the ring as this node sees it.
    Event(RingEvent),
}

/// Why the node sends a request: lets a driver put each request in context (a trace span per
/// lookup hop, a stabilization round) without knowing the node's internals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Hop `hop` (1 = the first peer asked; a retry elsewhere keeps the index) of a lookup of
    /// `target`. `user`: a lookup started with [`Node::lookup`], not one of the node's own.
    LookupHop {
        lookup: LookupId,
        hop: u32,
        target: Id,
        /// The peer asked, when known by id (not a join's bootstrap).
        peer: Option<Id>,
        user: bool,
    },
    /// Fetching the successor's neighbours while joining.
    Join,
    /// A step of a stabilization round (asking the successor or a closer candidate).
    Stabilize,
    /// Telling the successor about ourselves.
    Notify,
    /// Checking that the predecessor is alive.
    CheckPredecessor,
    /// Checking the old predecessor before accepting a new one.
    Rectify,
    /// Telling neighbours about a graceful leave.
    Leave,
}

/// A change worth telling the layers above (files, metrics, logs) about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingEvent {
    Created {
        ring_id: RingId,
    },
    Joined {
        ring_id: RingId,
        successor: Peer,
    },
    JoinFailed {
        failure: JoinFailure,
    },
    SuccessorChanged {
        old: Option<Peer>,
        new: Peer,
    },
    /// The node's key range (predecessor, self] changed.
    PredecessorChanged {
        old: Option<Peer>,
        new: Option<Peer>,
    },
    /// A peer stopped answering and was removed from the routing state.
    PeerFailed {
        peer: Peer,
    },
    /// A peer announced a graceful leave.
    PeerLeft {
        peer: Peer,
    },
    /// A stabilization round completed (successor verified and notified).
    Stabilized {
        round: u64,
    },
    Left,
}

/// Why a join failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinFailure {
    /// The bootstrap peer did not answer.
    #[error("bootstrap {bootstrap} did not answer")]
    Unreachable { bootstrap: Address },
    /// The bootstrap peer answered but is not a ring member (starting up, or it left).
    #[error("bootstrap {bootstrap} is not a ring member")]
    NotMember { bootstrap: Address },
    /// Another peer already uses this node's identifier.
    #[error("identifier already used by {address}")]
    IdInUse { address: Address },
    #[error("{0}")]
    Other(String),
}

/// Why a request got no usable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Why {
    /// Time-out, refused connection, lost message.
    NoResponse,
    Rejected(Rejection),
    Malformed,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NoResponse => write!(f, "no response"),
            Why::Rejected(r) => write!(f, "{r}"),
            Why::Malformed => write!(f, "unexpected answer"),
        }
    }
}

/// Why a node is not ready to serve (DESIGN.md §6).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NotReady {
    NotMember,
    Leaving,
    NoPredecessor,
    SuccessorListShort { have: usize, want: usize },
    NotStabilized,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::NotMember => write!(f, "not a ring member"),
            NotReady::Leaving => write!(f, "leaving the ring"),
            NotReady::NoPredecessor => write!(f, "predecessor unknown"),
            NotReady::SuccessorListShort { have, want } => {
                write!(f, "successor list has {have} of {want} entries")
            }
            NotReady::NotStabilized => write!(f, "no stabilization round completed yet"),
        }
    }
}

/// Errors of user commands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("already a ring member")]
    AlreadyMember,
}

/// How many times one stabilization round may move the successor closer.
const MAX_CHASE: u32 = 4;

/// Every this many fix-fingers ticks, the node looks its own successor up through the ring.
const SUCCESSOR_REFRESH_TICKS: u64 = 4;

/// What a request in flight was for.
#[derive(Clone, Debug)]
enum Pending {
    Lookup(Step),
    JoinNeighbors(Peer),
    /// `retried`: a lost message is not a dead peer; a timed-out request is sent once more.
    StabilizeSuccessor {
        succ: Peer,
        retried: bool,
    },
    StabilizeCandidate {
        candidate: Peer,
        chase: u32,
    },
    Notify,
    CheckPredecessor {
        peer: Peer,
        retried: bool,
    },
    RectifyPing(Peer),
    Leaving,
}

/// One Chord node.
pub struct Node {
    me: Peer,
    config: RingConfig,
    membership: Membership,
    ring_id: Option<RingId>,
    predecessor: Option<Peer>,
    /// Never empty while a member; ends with `me` when the ring is shorter than r.
    successors: Vec<Peer>,
    fingers: Vec<Option<Peer>>,
    next_finger: usize,
    /// Recent notifiers, the closest ones preceding this node, with the tick they were seen.
    notifiers: BTreeMap<Id, (Peer, u64)>,
    ticks: u64,
    stabilize_rounds: u64,
    next_request: u64,
    next_lookup: u64,
    pending: BTreeMap<RequestId, Pending>,
    lookups: BTreeMap<LookupId, Lookup>,
    stabilizing: bool,
    fixing_finger: bool,
    checking_predecessor: bool,
    rectify_candidate: Option<Peer>,
    /// A live member found (by a lookup) between us and our successor; stabilize verifies it.
    successor_candidate: Option<Peer>,
    finger_ticks: u64,
    leave_pending: usize,
    out: Vec<Output>,
}

impl Node {
    pub fn new(me: Peer, config: RingConfig) -> Node {
        let config = RingConfig {
            successors: config.successors.max(1),
            lookup_candidates: config.lookup_candidates.max(1),
            ..config
        };
        Node {
            me,
            config,
            membership: Membership::Idle,
            ring_id: None,
            predecessor: None,
            successors: Vec::new(),
            fingers: vec![None; BITS],
            next_finger: 0,
            notifiers: BTreeMap::new(),
            ticks: 0,
            stabilize_rounds: 0,
            next_request: 0,
            next_lookup: 0,
            pending: BTreeMap::new(),
            lookups: BTreeMap::new(),
            stabilizing: false,
            fixing_finger: false,
            checking_predecessor: false,
            rectify_candidate: None,
            successor_candidate: None,
            finger_ticks: 0,
            leave_pending: 0,
            out: Vec::new(),
        }
    }

    // ----- accessors -------------------------------------------------------------------------

    pub fn me(&self) -> &Peer {
        &self.me
    }

    pub fn id(&self) -> Id {
        self.me.id
    }

    pub fn config(&self) -> &RingConfig {
        &self.config
    }

    pub fn membership(&self) -> Membership {
        self.membership
    }

    pub fn is_member(&self) -> bool {
        matches!(self.membership, Membership::Member | Membership::Leaving)
    }

    pub fn ring_id(&self) -> Option<RingId> {
        self.ring_id
    }

    pub fn predecessor(&self) -> Option<&Peer> {
        self.predecessor.as_ref()
    }

    pub fn successors(&self) -> &[Peer] {
        &self.successors
    }

    pub fn successor(&self) -> Option<&Peer> {
        self.successors.first()
    }

    /// Finger `i` points at the successor of `id + 2^i`, once known.
    pub fn fingers(&self) -> &[Option<Peer>] {
        &self.fingers
    }

    pub fn stabilize_rounds(&self) -> u64 {
        self.stabilize_rounds
    }

    /// Whether `key` falls in this node's range (predecessor, self].
    pub fn owns(&self, key: Id) -> bool {
        match &self.predecessor {
            Some(p) => key.in_half_open(p.id, self.me.id),
            None => false,
        }
    }

    /// Empty when the node is ready (DESIGN.md §6), else every reason it is not.
    pub fn readiness(&self) -> Vec<NotReady> {
        match self.membership {
            Membership::Member => {}
            Membership::Leaving => return vec![NotReady::Leaving],
            _ => return vec![NotReady::NotMember],
        }
        let mut reasons = Vec::new();
        if self.predecessor.is_none() {
            reasons.push(NotReady::NoPredecessor);
        }
        let reaches_self = self.successors.iter().any(|p| p.id == self.me.id);
        if !reaches_self && self.successors.len() < self.config.successors {
            reasons.push(NotReady::SuccessorListShort {
                have: self.successors.len(),
                want: self.config.successors,
            });
        }
        if self.stabilize_rounds == 0 {
            reasons.push(NotReady::NotStabilized);
        }
        reasons
    }

    /// Estimated number of ring members, from how much of the ring the successor list spans.
    pub fn ring_size_estimate(&self) -> f64 {
        if let Some(pos) = self.successors.iter().position(|p| p.id == self.me.id) {
            return (pos + 1) as f64;
        }
        match self.successors.last() {
            Some(last) => {
                let span = self.me.id.distance_to(last.id).as_fraction();
                if span > 0.0 {
                    self.successors.len() as f64 / span
                } else {
                    1.0
                }
            }
            None => 1.0,
        }
    }

    /// Moves every output produced so far into `buf`.
    pub fn drain_outputs(&mut self, buf: &mut Vec<Output>) {
        buf.append(&mut self.out);
    }

    // ----- user commands ---------------------------------------------------------------------

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
        self.emit(RingEvent::Created { ring_id });
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

    // ----- timers ----------------------------------------------------------------------------

    /// A periodic timer fired.
    pub fn tick(&mut self, timer: Timer) {
        if self.membership != Membership::Member {
            return;
        }
        match timer {
            Timer::Stabilize => {
                self.ticks += 1;
                self.expire_notifiers();
                if !self.stabilizing {
                    self.stabilizing = true;
                    self.stabilize_step();
                }
            }
            Timer::FixFingers => self.fix_next_finger(),
            Timer::CheckPredecessor => self.check_predecessor(),
        }
    }

    fn stabilize_step(&mut self) {
        if self.successors.is_empty() {
            self.fall_back_successor();
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
    fn ask_candidate(&mut self, candidate: Peer, chase: u32) {
        self.send(
            candidate.address.clone(),
            Request::GetNeighbors,
            Pending::StabilizeCandidate { candidate, chase },
        );
    }

    fn finish_stabilize(&mut self) {
        self.stabilizing = false;
        self.stabilize_rounds += 1;
        self.emit(RingEvent::Stabilized {
            round: self.stabilize_rounds,
        });
    }

    /// Notifies our successor that we believe we are its predecessor.
    fn notify_successor(&mut self) {
        let succ = self.successors[0].clone();
        if succ.id == self.me.id {
            let me = self.me.clone();
            self.rectify(me);
        } else {
            self.send(succ.address, Request::Notify, Pending::Notify);
        }
    }

    fn fix_next_finger(&mut self) {
        if self.fixing_finger {
            return;
        }
        let succ = self.successors[0].clone();
        self.finger_ticks += 1;
        if self.finger_ticks.is_multiple_of(SUCCESSOR_REFRESH_TICKS) && succ.id != self.me.id {
            // Every few ticks, look up our own successor through the ring, starting at
            // our successor. Stabilize alone walks back one predecessor per round, which is slow
            // when a join (or a mass join) left us with a far successor; the lookup finds a
            // closer live member in O(log N) hops and stabilize then verifies and adopts it.
            let id = self.new_lookup_id();
            let target = self.me.id.add_pow2(0);
            self.lookups
                .insert(id, Lookup::from_bootstrap(target, Purpose::Successor));
            self.fixing_finger = true;
            self.send_step(id, succ.address, Some(succ.id), target);
            return;
        }
        // Fingers whose start lies in (me, successor] are the successor: no lookup needed.
        for _ in 0..BITS {
            let i = self.next_finger;
            let start = self.me.id.add_pow2(i);
            if succ.id != self.me.id && start.in_half_open(self.me.id, succ.id) {
                self.fingers[i] = Some(succ.clone());
                self.next_finger = (i + 1) % BITS;
                continue;
            }
            if succ.id == self.me.id {
                self.fingers[i] = None;
                self.next_finger = (i + 1) % BITS;
                continue;
            }
            let id = self.new_lookup_id();
            self.lookups
                .insert(id, Lookup::new(start, Purpose::Finger(i), self.me.id));
            self.fixing_finger = true;
            self.start_local(id);
            return;
        }
    }

    fn finger_found(&mut self, i: usize, node: Peer) {
        if node.id == self.me.id {
            self.next_finger = (i + 1) % BITS;
            return;
        }
        let start = self.me.id.add_pow2(i);
        // The same node also succeeds every later finger start that lies in [start, node].
        let mut j = i;
        while j < BITS {
            let s = self.me.id.add_pow2(j);
            if j > i && !(s.in_half_open(start, node.id)) {
                break;
            }
            self.fingers[j] = Some(node.clone());
            j += 1;
        }
        self.next_finger = j % BITS;
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

    // ----- incoming requests -----------------------------------------------------------------

    /// Answers a peer's request.
    pub fn handle_request(&mut self, request: RequestEnvelope) -> ResponseEnvelope {
        let body = self.answer(request);
        ResponseEnvelope::new(self.ring_id, self.me.clone(), body)
    }

    fn answer(&mut self, request: RequestEnvelope) -> Response {
        if let (Some(mine), Some(theirs)) = (self.ring_id, request.ring_id)
            && mine != theirs
        {
            return Response::Rejected {
                reason: Rejection::WrongRing { ring_id: mine },
            };
        }
        if !self.is_member() {
            return Response::Rejected {
                reason: Rejection::NotMember,
            };
        }
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
        }
    }

    /// One lookup step, answered from local state.
    fn answer_find(&self, target: Id) -> Response {
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
            return Response::Found { successors };
        }
        let succ = &self.successors[0];
        if target.in_half_open(self.me.id, succ.id) {
            return Response::Found {
                successors: self.successors.clone(),
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
    fn hint_for(&self, asker: Id) -> Option<Peer> {
        let from_cache = self
            .notifiers
            .range(asker..)
            .find(|(id, _)| **id != asker)
            .or_else(|| self.notifiers.iter().next())
            .map(|(_, (p, _))| p.clone());
        self.best_between(asker, self.me.id, [from_cache, self.predecessor.clone()])
    }

    /// Among `candidates`, the one in (from, to) closest to `from`.
    fn best_between<const N: usize>(
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

    /// Zave's rectify: `n` believes it is our predecessor.
    fn rectify(&mut self, n: Peer) {
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

    fn peer_leaving(&mut self, leaver: Peer, predecessor: Option<Peer>, successors: Vec<Peer>) {
        let mut known = false;
        if self.predecessor.as_ref().is_some_and(|p| p.id == leaver.id) {
            known = true;
            let new = predecessor.filter(|p| p.id != leaver.id);
            self.set_predecessor(new);
        }
        if let Some(pos) = self.successors.iter().position(|p| p.id == leaver.id) {
            known = true;
            // Splice the leaver's successors in where it stood, so the list stays full even
            // when several neighbours leave at once.
            let mut spliced = self.successors[..pos]
                .iter()
                .cloned()
                .chain(successors.into_iter().filter(|p| p.id != leaver.id));
            let head = spliced.next().unwrap_or_else(|| self.me.clone());
            let rest: Vec<Peer> = spliced.collect();
            self.set_successors(head, &rest);
        }
        self.forget_quietly(leaver.id);
        if known {
            self.emit(RingEvent::PeerLeft { peer: leaver });
        }
    }

    // ----- responses -------------------------------------------------------------------------

    /// The answer to a request this node sent.
    pub fn handle_response(&mut self, request: RequestId, response: ResponseEnvelope) {
        let Some(pending) = self.pending.remove(&request) else {
            return;
        };
        if let (Some(mine), Some(theirs)) = (self.ring_id, response.ring_id)
            && mine != theirs
        {
            let why = Why::Rejected(Rejection::WrongRing { ring_id: theirs });
            return self.failed(pending, why);
        }
        if let Response::Rejected { reason } = response.body {
            return self.failed(pending, Why::Rejected(reason));
        }
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
            Pending::StabilizeCandidate { candidate, chase } => match response.body {
                Response::Neighbors {
                    predecessor,
                    successors,
                    hint,
                } => self.candidate_answered(candidate, chase, predecessor, successors, hint),
                _ => self.failed(
                    Pending::StabilizeCandidate { candidate, chase },
                    Why::Malformed,
                ),
            },
            Pending::Notify => {}
            Pending::CheckPredecessor { .. } => self.checking_predecessor = false,
            Pending::RectifyPing(_) => self.rectify_candidate = None,
            Pending::Leaving => self.leave_acknowledged(),
        }
    }

    /// A request this node sent got no answer (time-out, refused connection).
    pub fn handle_failure(&mut self, request: RequestId) {
        if let Some(pending) = self.pending.remove(&request) {
            self.failed(pending, Why::NoResponse);
        }
    }

    fn failed(&mut self, pending: Pending, why: Why) {
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
            Pending::StabilizeCandidate { candidate, .. } => {
                self.forget_quietly(candidate.id);
                if self.membership == Membership::Member {
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
        }
    }

    fn successor_answered(
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
        match self.best_between(self.me.id, succ.id, [predecessor, hint, found]) {
            Some(candidate) => self.ask_candidate(candidate, 0),
            None => {
                self.notify_successor();
                self.finish_stabilize();
            }
        }
    }

    fn candidate_answered(
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
            if chase < MAX_CHASE
                && let Some(next) = self.best_between(self.me.id, candidate.id, [predecessor, hint])
            {
                self.ask_candidate(next, chase + 1);
                return;
            }
        }
        self.notify_successor();
        self.finish_stabilize();
    }

    // ----- lookups ---------------------------------------------------------------------------

    /// Starts a lookup at this node: answer locally, then go remote if needed.
    fn start_local(&mut self, id: LookupId) {
        let Some(target) = self.lookups.get(&id).map(|l| l.target) else {
            return;
        };
        match self.answer_find(target) {
            Response::Found { successors } => self.finish_found(id, successors),
            Response::Closer { candidates } => {
                if let Some(l) = self.lookups.get_mut(&id) {
                    l.add_candidates(candidates);
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
        match l.next_hop() {
            Some(hop) => {
                let target = l.target;
                self.send_step(id, hop.address, Some(hop.id), target);
            }
            None => {
                let (hops, timeouts) = (l.hops, l.timeouts);
                self.finish(id, Err(LookupError::NoRoute { hops, timeouts }));
            }
        }
    }

    fn send_step(&mut self, lookup: LookupId, to: Address, to_id: Option<Id>, target: Id) {
        let step = Step {
            lookup,
            to: to.clone(),
            to_id,
        };
        self.send(to, Request::FindSuccessor { target }, Pending::Lookup(step));
    }

    fn step_answered(&mut self, step: Step, response: ResponseEnvelope) {
        let Some(l) = self.lookups.get_mut(&step.lookup) else {
            return;
        };
        match response.body {
            Response::Found { successors } if !successors.is_empty() => {
                l.answered(response.from, Vec::new());
                self.finish_found(step.lookup, successors);
            }
            Response::Closer { candidates } => {
                l.answered(response.from, candidates);
                self.advance(step.lookup);
            }
            _ => self.step_failed(step, Why::Malformed),
        }
    }

    fn step_failed(&mut self, step: Step, why: Why) {
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
                Why::Rejected(Rejection::NotMember) => JoinFailure::NotMember { bootstrap },
                other => JoinFailure::Other(format!("bootstrap {bootstrap}: {other}")),
            });
        }
        if let Some(dead) = step.to_id {
            // Route around it now; stabilization decides about successors.
            self.forget_finger(dead);
        }
        self.advance(step.lookup);
    }

    fn finish_found(&mut self, id: LookupId, mut successors: Vec<Peer>) {
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        let node = successors.remove(0);
        let result = LookupResult {
            target: l.target,
            node,
            successors,
            hops: l.hops,
            path: std::mem::take(&mut l.path),
            timeouts: l.timeouts,
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
            Purpose::Join => match outcome {
                Ok(r) => self.join_found(r),
                Err(e) => self.join_failed(JoinFailure::Other(e.to_string())),
            },
        }
    }

    // ----- join and leave --------------------------------------------------------------------

    fn join_found(&mut self, r: LookupResult) {
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

    fn joined(&mut self, succ: Peer, successors: Vec<Peer>) {
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
        self.notify_successor();
    }

    fn join_failed(&mut self, failure: JoinFailure) {
        if self.membership == Membership::Joining {
            self.membership = Membership::Idle;
            self.reset_routing();
            self.emit(RingEvent::JoinFailed { failure });
        }
    }

    fn leave_acknowledged(&mut self) {
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

    // ----- routing state ---------------------------------------------------------------------

    fn reset_routing(&mut self) {
        self.predecessor = None;
        self.successors.clear();
        self.fingers.iter_mut().for_each(|f| *f = None);
        self.next_finger = 0;
        self.notifiers.clear();
        self.pending.clear();
        self.lookups.clear();
        self.stabilizing = false;
        self.fixing_finger = false;
        self.checking_predecessor = false;
        self.rectify_candidate = None;
        self.successor_candidate = None;
        self.leave_pending = 0;
        self.stabilize_rounds = 0;
    }

    /// Successor list = `head` followed by `rest` (head's own list), without repeats, cut at
    /// ourselves (a ring shorter than r) and at r entries.
    fn set_successors(&mut self, head: Peer, rest: &[Peer]) {
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
        self.successors = list;
        if old.as_ref().is_none_or(|o| o.id != self.successors[0].id) {
            let new = self.successors[0].clone();
            self.emit(RingEvent::SuccessorChanged { old, new });
        }
    }

    fn set_predecessor(&mut self, new: Option<Peer>) {
        let same = match (&self.predecessor, &new) {
            (Some(a), Some(b)) => a.id == b.id,
            (None, None) => true,
            _ => false,
        };
        if !same {
            let old = std::mem::replace(&mut self.predecessor, new.clone());
            self.emit(RingEvent::PredecessorChanged { old, new });
        }
    }

    /// A peer is dead: remove it everywhere and say so.
    fn forget(&mut self, id: Id) {
        let peer = self
            .successors
            .iter()
            .chain(&self.predecessor)
            .find(|p| p.id == id)
            .cloned();
        self.forget_quietly(id);
        if let Some(peer) = peer {
            self.emit(RingEvent::PeerFailed { peer });
        }
    }

    fn forget_quietly(&mut self, id: Id) {
        if id == self.me.id {
            return;
        }
        if self.predecessor.as_ref().is_some_and(|p| p.id == id) {
            self.set_predecessor(None);
        }
        if let Some(pos) = self.successors.iter().position(|p| p.id == id) {
            self.successors.remove(pos);
            if self.successors.is_empty() {
                self.fall_back_successor();
            } else if pos == 0 {
                let new = self.successors[0].clone();
                self.emit(RingEvent::SuccessorChanged { old: None, new });
            }
        }
        self.forget_finger(id);
        self.notifiers.remove(&id);
    }

    fn forget_finger(&mut self, id: Id) {
        for f in self.fingers.iter_mut() {
            if f.as_ref().is_some_and(|p| p.id == id) {
                *f = None;
            }
        }
    }

    /// Every successor is gone: take the closest finger after us, or ourselves.
    fn fall_back_successor(&mut self) {
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
        self.emit(RingEvent::SuccessorChanged {
            old: None,
            new: next,
        });
    }

    // ----- plumbing --------------------------------------------------------------------------

    fn new_lookup_id(&mut self) -> LookupId {
        self.next_lookup += 1;
        LookupId(self.next_lookup)
    }

    fn send(&mut self, to: Address, body: Request, pending: Pending) {
        self.next_request += 1;
        let request = RequestId(self.next_request);
        let cause = self.cause(&pending);
        self.pending.insert(request, pending);
        self.out.push(Output::Send {
            request,
            to,
            cause,
            message: RequestEnvelope::new(self.ring_id, self.me.clone(), body),
        });
    }

    fn cause(&self, pending: &Pending) -> Cause {
        match pending {
            Pending::Lookup(step) => {
                let lookup = self.lookups.get(&step.lookup);
                Cause::LookupHop {
                    lookup: step.lookup,
                    hop: lookup.map_or(1, |l| l.hops + 1),
                    target: lookup.map_or(Id::ZERO, |l| l.target),
                    peer: step.to_id,
                    user: lookup.is_some_and(|l| l.purpose == Purpose::User),
                }
            }
            Pending::JoinNeighbors(_) => Cause::Join,
            Pending::StabilizeSuccessor { .. } | Pending::StabilizeCandidate { .. } => {
                Cause::Stabilize
            }
            Pending::Notify => Cause::Notify,
            Pending::CheckPredecessor { .. } => Cause::CheckPredecessor,
            Pending::RectifyPing(_) => Cause::Rectify,
            Pending::Leaving => Cause::Leave,
        }
    }

    fn emit(&mut self, event: RingEvent) {
        self.out.push(Output::Event(event));
    }
}

#[cfg(test)]
mod tests;
