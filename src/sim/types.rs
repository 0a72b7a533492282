//! The simulation's settings and what it reports: virtual time, node slots, lookup records and
//! counters.

use crate::id::Id;
use crate::ring::{JoinFailure, LookupResult, Node, Remembered, RingConfig, RingId};

/// Virtual time in microseconds.
pub type Micros = u64;

/// Network and timer settings of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub ring: RingConfig,
    /// One-way message latency, uniform in [min, max].
    pub latency_min: Micros,
    pub latency_max: Micros,
    /// Probability that any one message (request or response) is lost.
    pub loss: f64,
    /// How long a node waits for an answer before it is told the request failed.
    pub rpc_timeout: Micros,
    pub stabilize_interval: Micros,
    pub fix_fingers_interval: Micros,
    pub check_predecessor_interval: Micros,
    /// User lookups reuse what responsible peers said this period (as the API's lookups do,
    /// `ring.reuse_lookup_answers`); off, every lookup asks the ring.
    pub reuse_lookup_answers: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 1,
            ring: RingConfig::default(),
            latency_min: 1_000,
            latency_max: 20_000,
            loss: 0.0,
            rpc_timeout: 200_000,
            stabilize_interval: 500_000,
            fix_fingers_interval: 500_000,
            check_predecessor_interval: 500_000,
            reuse_lookup_answers: false,
        }
    }
}

/// Index of a node slot in the simulator.
pub type NodeIndex = usize;

/// The simulator's view of one node.
pub struct Slot {
    pub node: Node,
    pub alive: bool,
    /// Bumped on every (re)start so stale timers and answers are dropped.
    pub(super) incarnation: u32,
    /// Partition group: messages only flow between nodes of the same group.
    pub group: u32,
    /// How the last join or create of this incarnation ended (taken by a driver).
    pub(super) join_outcome: Option<Result<RingId, JoinFailure>>,
    /// What the node asked to persist last ([`crate::ring::Output::Persist`]): kept across
    /// crashes and restarts, like a pod's volume, until wiped.
    pub disk: Option<Remembered>,
}

/// How a finished lookup compared with the truth at the time it finished.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupRecord {
    pub origin: NodeIndex,
    pub target: Id,
    pub issued_at: Micros,
    pub finished_at: Micros,
    pub hops: u32,
    pub timeouts: u32,
    /// Returned the true successor of the target among live members.
    pub correct: bool,
    /// Finished with an error (no route, not a member, ...).
    pub failed: bool,
    /// The answer, when it did not fail.
    pub result: Option<LookupResult>,
}

/// Counters of what happened.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub messages: u64,
    pub requests_lost: u64,
    pub successor_changes: u64,
    pub predecessor_changes: u64,
    pub peer_failures_detected: u64,
    pub joins: u64,
    pub join_failures: u64,
    pub leaves: u64,
    pub crashes: u64,
    /// Lookups whose origin crashed before they finished.
    pub lookups_abandoned: u64,
    /// Ring unifications started (a node found a live peer outside its ring, or was hinted).
    pub merges_started: u64,
    /// Ring unifications in which the node adopted a successor from the other ring.
    pub merges_adopted: u64,
    /// Peers found answering from another ring id.
    pub foreign_rings_seen: u64,
}
