//! The node itself: its state, accessors and readiness, and the plumbing every part of the
//! protocol uses to send requests and report events.

use std::collections::BTreeMap;

use super::bootstrap::Remembered;
use super::lookup::{Lookup, Purpose, Step};
use super::passive::{Entry, Passive};
use super::recent::Recent;
use super::table::Table;
use super::{
    Address, Cause, LookupId, Membership, NotReady, Output, Peer, Request, RequestEnvelope,
    RequestId, RingConfig, RingEvent, RingId,
};
use crate::id::{BITS, Id};

/// What a request in flight was for.
#[derive(Clone, Debug)]
pub(super) enum Pending {
    Lookup(Step),
    JoinNeighbors(Peer),
    /// `retried`: a lost message is not a dead peer; a timed-out request is sent once more.
    StabilizeSuccessor {
        succ: Peer,
        retried: bool,
    },
    /// `rest`: the round's other candidates, closest first, asked in turn if this one is dead.
    StabilizeCandidate {
        candidate: Peer,
        chase: u32,
        rest: Vec<Peer>,
    },
    Notify,
    CheckPredecessor {
        peer: Peer,
        retried: bool,
    },
    RectifyPing(Peer),
    Leaving,
    /// Pinging a passive peer.
    Probe(Entry),
    /// Pinging a configured seed (its id is learnt from the answer).
    SeedProbe(Address),
    /// Passing a merge hint on (the answer is only an acknowledgement).
    MergeHint,
    /// The membership-table exchange with this peer.
    Exchange(Peer),
}

/// One Chord node.
pub struct Node {
    pub(super) me: Peer,
    pub(super) config: RingConfig,
    pub(super) membership: Membership,
    pub(super) ring_id: Option<RingId>,
    /// The id this node's ring had before an operator merged it into `ring_id`'s ring.
    pub(super) ring_alias: Option<RingId>,
    /// The last other ring id seen merged into this ring (reported once).
    pub(super) absorbed: Option<RingId>,
    /// Since the last rename, this node passed the merge hint on to its neighbours.
    pub(super) rename_hinted: bool,
    pub(super) predecessor: Option<Peer>,
    /// Never empty while a member; ends with `me` when the ring is shorter than r.
    pub(super) successors: Vec<Peer>,
    /// Changed only through [`Node::set_finger`] (which counts the changes).
    pub(super) fingers: Vec<Option<Peer>>,
    /// How many times a finger changed: a reader that saw this count has seen these fingers.
    pub(super) fingers_changed: u64,
    pub(super) next_finger: usize,
    /// Recent notifiers, the closest ones preceding this node, with the tick they were seen.
    pub(super) notifiers: BTreeMap<Id, (Peer, u64)>,
    pub(super) ticks: u64,
    pub(super) stabilize_rounds: u64,
    next_request: u64,
    next_lookup: u64,
    pub(super) pending: BTreeMap<RequestId, Pending>,
    pub(super) lookups: BTreeMap<LookupId, Lookup>,
    pub(super) stabilizing: bool,
    pub(super) fixing_finger: bool,
    pub(super) checking_predecessor: bool,
    pub(super) rectify_candidate: Option<Peer>,
    /// A live member found (by a lookup) between us and our successor; stabilize verifies it.
    pub(super) successor_candidate: Option<Peer>,
    pub(super) finger_ticks: u64,
    pub(super) leave_pending: usize,
    /// Handing keys off before a graceful leave: still a member, but takes no keys.
    pub(super) handing_off: bool,
    /// The ring this node's disk remembers (what it tells joiners while not a member).
    pub(super) remembered: Option<RingId>,
    /// A random value the driver chose at this start ([`Node::set_incarnation`]).
    pub(super) incarnation: u64,
    /// Peers declared dead, probed for a healed partition.
    pub(super) passive: Passive,
    pub(super) probing: bool,
    pub(super) merges_in_flight: usize,
    /// Every peer of the ring this node heard of (proposes one-hop lookups).
    pub(super) table: Table,
    pub(super) exchanging: bool,
    /// What responsible peers said of their own keys this period (reused by API lookups).
    pub(super) recent: Recent,
    pub(super) out: Vec<Output>,
}

impl Node {
    pub fn new(me: Peer, config: RingConfig) -> Node {
        let config = RingConfig {
            successors: config.successors.max(1),
            lookup_candidates: config.lookup_candidates.max(1),
            ..config
        };
        let table = Table::new(config.membership_table_max);
        Node {
            me,
            config,
            membership: Membership::Idle,
            ring_id: None,
            ring_alias: None,
            absorbed: None,
            rename_hinted: false,
            predecessor: None,
            successors: Vec::new(),
            fingers: vec![None; BITS],
            fingers_changed: 0,
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
            handing_off: false,
            remembered: None,
            incarnation: 0,
            passive: Passive::default(),
            probing: false,
            merges_in_flight: 0,
            table,
            exchanging: false,
            recent: Recent::default(),
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

    /// Changes when any finger does (a cheap "did the fingers change?" for readers).
    pub fn fingers_changed(&self) -> u64 {
        self.fingers_changed
    }

    /// Points finger `i` at `peer`, counting a change (of peer, or of its address).
    pub(super) fn set_finger(&mut self, i: usize, peer: Option<&Peer>) {
        let slot = &mut self.fingers[i];
        if slot.as_ref() != peer {
            *slot = peer.cloned();
            self.fingers_changed += 1;
        }
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
            Membership::Member if self.handing_off => return vec![NotReady::Leaving],
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

    /// Sets the random value that tells this start of the node from earlier ones (choose a new
    /// one at every start, before the node joins anything).
    pub fn set_incarnation(&mut self, incarnation: u64) {
        self.incarnation = incarnation;
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Tells the node which ring its disk remembers (at start, before it joins anything).
    pub fn set_remembered(&mut self, ring_id: Option<RingId>) {
        self.remembered = ring_id;
    }

    /// Asks the driver to remember the ring and the current neighbours on disk.
    pub(super) fn persist(&mut self) {
        let Some(ring_id) = self.ring_id else { return };
        self.remembered = Some(ring_id);
        let me = self.me.id;
        let mut peers: Vec<Address> = Vec::new();
        for p in self.successors.iter().chain(&self.predecessor) {
            if p.id != me && !peers.contains(&p.address) {
                peers.push(p.address.clone());
            }
        }
        self.out.push(Output::Persist(Remembered {
            ring_id: Some(ring_id),
            peers,
        }));
    }

    /// Moves every output produced so far into `buf`.
    pub fn drain_outputs(&mut self, buf: &mut Vec<Output>) {
        buf.append(&mut self.out);
    }

    // ----- plumbing --------------------------------------------------------------------------

    pub(super) fn new_lookup_id(&mut self) -> LookupId {
        self.next_lookup += 1;
        LookupId(self.next_lookup)
    }

    pub(super) fn send(&mut self, to: Address, body: Request, pending: Pending) {
        self.send_renamed(to, body, pending, self.ring_alias);
    }

    /// [`Node::send`] with the envelope's `renamed_from` (a merge, [`super::rename`]).
    pub(super) fn send_renamed(
        &mut self,
        to: Address,
        body: Request,
        pending: Pending,
        renamed_from: Option<RingId>,
    ) {
        self.next_request += 1;
        let request = RequestId(self.next_request);
        let cause = self.cause(&pending);
        self.pending.insert(request, pending);
        self.out.push(Output::Send {
            request,
            to,
            cause,
            message: RequestEnvelope {
                renamed_from,
                ..RequestEnvelope::new(self.ring_id, self.me.clone(), body)
            },
        });
    }

    fn cause(&self, pending: &Pending) -> Cause {
        match pending {
            Pending::Lookup(step) => {
                let lookup = self.lookups.get(&step.lookup);
                if lookup.is_some_and(|l| matches!(l.purpose, Purpose::Merge(_))) {
                    return Cause::Merge;
                }
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
            Pending::Probe(_) | Pending::SeedProbe(_) => Cause::Probe,
            Pending::MergeHint => Cause::Merge,
            Pending::Exchange(_) => Cause::Exchange,
        }
    }

    pub(super) fn emit(&mut self, event: RingEvent) {
        self.out.push(Output::Event(event));
    }
}
