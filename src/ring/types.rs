//! The public vocabulary of a [`Node`](super::Node): its configuration, the timers a driver
//! fires, what it outputs, the ring events it reports, and why things fail.

use super::{
    Address, LookupError, LookupId, LookupResult, Peer, Rejection, Remembered, RequestEnvelope,
    RequestId, RingId,
};
use crate::id::Id;

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
    /// Every this many stabilization rounds the node asks to have its ring remembered
    /// ([`Output::Persist`]), besides when it founds or joins one.
    pub remember_every: u64,
    /// How many peers declared dead a node keeps probing (its passive list, DESIGN.md §11).
    pub passive_peers: usize,
    /// Every this many stabilization ticks the node probes one passive peer.
    pub probe_every: u64,
    /// How many neighbours, in each direction, a merge hint travels past the node that found
    /// the other ring: the fan-out of ring unification (0: every node zips alone).
    pub merge_hint_ttl: u8,
    /// Most peers the membership table holds (`ring.membership_table_max`); 0 turns it off
    /// (lookups then route by fingers alone).
    pub membership_table_max: usize,
}

impl Default for RingConfig {
    fn default() -> RingConfig {
        RingConfig {
            successors: 4,
            lookup_candidates: 4,
            notifier_cache: 64,
            notifier_ttl: 4,
            remember_every: 20,
            passive_peers: 8,
            probe_every: 2,
            merge_hint_ttl: 3,
            membership_table_max: 4096,
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
    /// Send `message` to `to`, then report the answer with
    /// [`Node::handle_response`](super::Node::handle_response) or its absence (time-out, refused
    /// connection) with [`Node::handle_failure`](super::Node::handle_failure).
    Send {
        request: RequestId,
        to: Address,
        message: RequestEnvelope,
        /// What the request is for (for traces; the node needs nothing back but the answer).
        cause: Cause,
    },
    /// A lookup started with [`Node::lookup`](super::Node::lookup) finished.
    LookupDone {
        lookup: LookupId,
        outcome: Result<LookupResult, LookupError>,
    },
    /// Something changed in the ring as this node sees it.
    Event(RingEvent),
    /// Save this on the node's disk (replacing what was there), so that a restart knows which
    /// ring it belonged to and whom to ask ([`crate::ring::Bootstrap`] reads it back). Saves
    /// must land in the order the node asked for them.
    Persist(Remembered),
}

/// Why the node sends a request: lets a driver put each request in context (a trace span per
/// lookup hop, a stabilization round) without knowing the node's internals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Hop `hop` (1 = the first peer asked; a retry elsewhere keeps the index) of a lookup of
    /// `target`. `user`: a lookup started with [`Node::lookup`](super::Node::lookup), not one of
    /// the node's own.
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
    /// Probing a peer of the passive list (declared dead: is it back, from another ring?).
    Probe,
    /// A lookup step of ring unification, or a merge hint to a neighbour.
    Merge,
    /// The periodic membership-table exchange with one peer of the table.
    Exchange,
}

/// A change worth telling the layers above (files, metrics, logs) about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingEvent {
    Created {
        ring_id: RingId,
        /// The ring is the one this node's disk remembered (a restart, not a new ring).
        restarted: bool,
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
    /// A peer declared dead answered from a ring that is not this node's view of the ring
    /// (same ring id: a partition healed), or an operator asked for a merge: ring unification
    /// starts, through `contact`.
    MergeStarted {
        contact: Peer,
        trigger: MergeTrigger,
    },
    /// This node's part of a unification is done: it looked its place up in the other ring.
    /// `adopted`: it found a closer successor there (the rings merged at this node).
    MergeDone {
        contact: Peer,
        adopted: Option<Peer>,
    },
    /// A peer answered from a ring with another ring id: never merged automatically (a
    /// configuration error, not a partition); an operator decides.
    ForeignRing {
        peer: Peer,
        ring_id: RingId,
    },
    /// An operator merged this node's ring into ring `new` (`POST /v1/ring/merge` on a peer
    /// there): this node took the id over; it still accepts `old` from peers that have not
    /// heard yet.
    RingRenamed {
        old: RingId,
        new: RingId,
    },
    /// Peers of ring `absorbed` took this ring's id over (an operator's merge): that ring is
    /// now part of this one (reported once per id).
    RingsMerged {
        absorbed: RingId,
    },
}

/// What started a ring unification at a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeTrigger {
    /// A peer of the passive list answered from outside this node's ring.
    Passive,
    /// A neighbour passed a merge hint on (the fan-out).
    Hint,
    /// Asked for through [`Node::merge_with`](super::Node::merge_with).
    Explicit,
    /// A configured seed answered from outside this node's ring.
    Seed,
}

impl MergeTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeTrigger::Passive => "passive",
            MergeTrigger::Hint => "hint",
            MergeTrigger::Explicit => "explicit",
            MergeTrigger::Seed => "seed",
        }
    }
}

/// Why a join failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinFailure {
    /// The bootstrap peer did not answer.
    #[error("bootstrap {bootstrap} did not answer")]
    Unreachable { bootstrap: Address },
    /// The bootstrap peer answered but is not a ring member (starting up, or it left).
    #[error("bootstrap {bootstrap} is not a ring member")]
    NotMember {
        bootstrap: Address,
        /// The ring the bootstrap's store directory remembers, if it said.
        remembers: Option<RingId>,
    },
    /// The bootstrap peer cannot be a peer of this one (another `transport.kind`, or not a
    /// chordnet peer): retrying will not help until one of them is reconfigured.
    #[error("bootstrap {bootstrap} cannot be a peer of this one: {detail}")]
    Incompatible { bootstrap: Address, detail: String },
    /// Another peer already uses this node's identifier.
    #[error("identifier already used by {address}")]
    IdInUse { address: Address },
    #[error("{0}")]
    Other(String),
}

/// Why a request got no usable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Why {
    /// Time-out, refused connection, lost message.
    NoResponse,
    Rejected(Rejection),
    Malformed,
    /// The other side cannot be a peer of this one (another transport, not a chordnet peer):
    /// the transport's explanation.
    Incompatible(String),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NoResponse => write!(f, "no response"),
            Why::Rejected(r) => write!(f, "{r}"),
            Why::Malformed => write!(f, "unexpected answer"),
            Why::Incompatible(detail) => write!(f, "{detail}"),
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
    SuccessorListShort {
        have: usize,
        want: usize,
    },
    NotStabilized,
    /// The peer transport cannot carry calls (a lost broker connection): set by the runtime.
    Transport {
        detail: String,
    },
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
            NotReady::Transport { detail } => write!(f, "peer transport: {detail}"),
        }
    }
}

/// Errors of user commands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("already a ring member")]
    AlreadyMember,
}
