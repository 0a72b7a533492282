//! A deterministic discrete-event simulator that drives many sans-io [`Node`]s over a virtual
//! network with latency, message loss, crashes, graceful leaves and partitions.
//!
//! One seed gives one exact run: time is virtual (microseconds), every random choice comes from
//! one seeded [`Rng`], and events at the same instant are ordered by the order they were
//! scheduled. The simulator plays the part the real server plays in production: it fires the
//! timers, carries messages, reports time-outs, and collects what the nodes say.

pub mod check;
pub mod founding;
mod rng;
pub mod scenario;

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use crate::id::Id;
use crate::ring::{
    Address, CommandError, JoinFailure, LookupId, LookupResult, Membership, Node, Output, Peer,
    RequestEnvelope, RequestId, ResponseEnvelope, RingConfig, RingEvent, RingId, Timer,
};
pub use rng::Rng;

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
    incarnation: u32,
    /// Partition group: messages only flow between nodes of the same group.
    pub group: u32,
    /// How the last join or create of this incarnation ended (taken by a driver).
    join_outcome: Option<Result<RingId, JoinFailure>>,
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
}

enum Event {
    Timer {
        node: NodeIndex,
        incarnation: u32,
        timer: Timer,
    },
    Request {
        to: NodeIndex,
        from: NodeIndex,
        from_incarnation: u32,
        request: RequestId,
        sent_at: Micros,
        message: RequestEnvelope,
    },
    Response {
        to: NodeIndex,
        incarnation: u32,
        request: RequestId,
        message: ResponseEnvelope,
    },
    Failure {
        to: NodeIndex,
        incarnation: u32,
        request: RequestId,
    },
}

/// A queue entry, ordered so that the heap pops the earliest, then the first scheduled. The
/// event itself waits in a slab: moving small entries keeps the heap fast.
struct Queued {
    at: Micros,
    seq: u64,
    slot: usize,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Queued) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Queued) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Queued) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The simulator.
pub struct Sim {
    pub config: SimConfig,
    pub rng: Rng,
    now: Micros,
    seq: u64,
    queue: BinaryHeap<Queued>,
    events: Vec<Option<Event>>,
    free_events: Vec<usize>,
    slots: Vec<Slot>,
    by_address: HashMap<Address, NodeIndex>,
    /// Live ring members by id: the ground truth lookups are checked against.
    members: BTreeMap<Id, NodeIndex>,
    pending_lookups: HashMap<(NodeIndex, LookupId), (Id, Micros)>,
    /// Finished lookups, in completion order; drained by the caller.
    pub lookups: Vec<LookupRecord>,
    pub stats: Stats,
    ring_id: RingId,
    outputs: Vec<Output>,
}

impl Sim {
    pub fn new(config: SimConfig) -> Sim {
        let mut rng = Rng::new(config.seed);
        let ring_id = RingId((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()));
        Sim {
            config,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            free_events: Vec::new(),
            slots: Vec::new(),
            by_address: HashMap::new(),
            members: BTreeMap::new(),
            pending_lookups: HashMap::new(),
            lookups: Vec::new(),
            stats: Stats::default(),
            ring_id,
            outputs: Vec::new(),
        }
    }

    pub fn now(&self) -> Micros {
        self.now
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn slot(&self, i: NodeIndex) -> &Slot {
        &self.slots[i]
    }

    /// Live ring members by id.
    pub fn members(&self) -> &BTreeMap<Id, NodeIndex> {
        &self.members
    }

    /// Indices of live nodes that are ring members.
    pub fn live_members(&self) -> Vec<NodeIndex> {
        self.members.values().copied().collect()
    }

    pub fn is_alive(&self, i: NodeIndex) -> bool {
        self.slots[i].alive
    }

    /// Whether the node at `i` is alive and a member (joined, not leaving).
    pub fn is_member(&self, i: NodeIndex) -> bool {
        let s = &self.slots[i];
        s.alive && self.members.get(&s.node.id()) == Some(&i)
    }

    /// Adds a node (not yet in any ring) and starts its timers.
    pub fn add_node(&mut self, peer: Peer) -> NodeIndex {
        let i = self.slots.len();
        self.by_address.insert(peer.address.clone(), i);
        self.slots.push(Slot {
            node: Node::new(peer, self.config.ring.clone()),
            alive: true,
            incarnation: 0,
            group: 0,
            join_outcome: None,
        });
        self.start_timers(i);
        i
    }

    /// Adds a node at a fresh address whose id is SHA-1 of the address (seed-dependent).
    pub fn add_node_auto(&mut self) -> NodeIndex {
        let n = self.slots.len();
        let peer = Peer::from_address(format!("s{}-n{}:7000", self.config.seed, n));
        self.add_node(peer)
    }

    /// Node `i` founds the ring.
    pub fn create(&mut self, i: NodeIndex) {
        let ring_id = self.ring_id;
        let _ = self.slots[i].node.create(ring_id);
        self.flush(i);
    }

    /// Node `i` founds a ring with the given id.
    pub fn create_with(&mut self, i: NodeIndex, ring_id: RingId) -> Result<(), CommandError> {
        let r = self.slots[i].node.create(ring_id);
        self.flush(i);
        r
    }

    /// Node `i` joins through whatever answers at `address` (maybe nobody); the outcome comes
    /// later, through [`Sim::take_join_outcome`].
    pub fn join_address(&mut self, i: NodeIndex, address: Address) -> Result<(), CommandError> {
        self.slots[i].join_outcome = None;
        let r = self.slots[i].node.join(address);
        self.flush(i);
        r
    }

    /// How the last join (or create) of node `i` ended, once it did: the ring id, or why not.
    pub fn take_join_outcome(&mut self, i: NodeIndex) -> Option<Result<RingId, JoinFailure>> {
        self.slots[i].join_outcome.take()
    }

    /// Node `i` joins through the node at `bootstrap`.
    pub fn join(&mut self, i: NodeIndex, bootstrap: NodeIndex) {
        let address = self.slots[bootstrap].node.me().address.clone();
        let _ = self.slots[i].node.join(address);
        self.flush(i);
    }

    /// Crashes node `i`: it stops answering and never says goodbye.
    pub fn crash(&mut self, i: NodeIndex) {
        let slot = &mut self.slots[i];
        if !slot.alive {
            return;
        }
        slot.alive = false;
        let id = slot.node.id();
        if self.members.get(&id) == Some(&i) {
            self.members.remove(&id);
        }
        self.stats.crashes += 1;
        // Its own lookups die with it: they are neither successes nor failures of the ring.
        let before = self.pending_lookups.len();
        self.pending_lookups.retain(|(origin, _), _| *origin != i);
        self.stats.lookups_abandoned += (before - self.pending_lookups.len()) as u64;
    }

    /// Restarts a crashed node at the same address and id, with empty state (it must rejoin).
    pub fn restart(&mut self, i: NodeIndex) {
        let slot = &mut self.slots[i];
        if slot.alive {
            return;
        }
        let peer = slot.node.me().clone();
        slot.node = Node::new(peer, self.config.ring.clone());
        slot.alive = true;
        slot.incarnation += 1;
        slot.join_outcome = None;
        self.start_timers(i);
    }

    /// Node `i` leaves gracefully; it stops counting as a member at once.
    pub fn leave(&mut self, i: NodeIndex) {
        let id = self.slots[i].node.id();
        if self.members.get(&id) == Some(&i) {
            self.members.remove(&id);
        }
        self.slots[i].node.leave();
        self.flush(i);
    }

    /// Starts a lookup of `target` at node `i`; the result lands in [`Sim::lookups`].
    pub fn lookup(&mut self, i: NodeIndex, target: Id) {
        let id = self.slots[i].node.lookup(target);
        self.pending_lookups.insert((i, id), (target, self.now));
        self.flush(i);
    }

    /// Lookups started and not finished yet.
    pub fn lookups_in_flight(&self) -> usize {
        self.pending_lookups.len()
    }

    /// Splits the network: node `i` can only talk to nodes with the same group.
    pub fn set_group(&mut self, i: NodeIndex, group: u32) {
        self.slots[i].group = group;
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        for s in &mut self.slots {
            s.group = 0;
        }
    }

    /// The true successor of `key` among live members.
    pub fn true_successor(&self, key: Id) -> Option<NodeIndex> {
        self.members
            .range(key..)
            .next()
            .or_else(|| self.members.iter().next())
            .map(|(_, &i)| i)
    }

    /// Runs events until virtual time `until` (inclusive).
    pub fn run_until(&mut self, until: Micros) {
        while self.queue.peek().is_some_and(|q| q.at <= until) {
            let Some(q) = self.queue.pop() else { break };
            self.now = q.at;
            let event = self.events[q.slot].take();
            self.free_events.push(q.slot);
            if let Some(event) = event {
                self.dispatch(event);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `duration` more microseconds.
    pub fn run_for(&mut self, duration: Micros) {
        let until = self.now + duration;
        self.run_until(until);
    }

    /// Runs until every started lookup has finished, or `limit` microseconds pass.
    pub fn run_lookups_to_completion(&mut self, limit: Micros) -> bool {
        let deadline = self.now + limit;
        let step = self.config.rpc_timeout.max(1);
        while !self.pending_lookups.is_empty() && self.now < deadline {
            self.run_for(step);
        }
        self.pending_lookups.is_empty()
    }

    fn schedule(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        let slot = match self.free_events.pop() {
            Some(slot) => {
                self.events[slot] = Some(event);
                slot
            }
            None => {
                self.events.push(Some(event));
                self.events.len() - 1
            }
        };
        self.queue.push(Queued {
            at,
            seq: self.seq,
            slot,
        });
    }

    fn start_timers(&mut self, i: NodeIndex) {
        let incarnation = self.slots[i].incarnation;
        for (timer, interval) in [
            (Timer::Stabilize, self.config.stabilize_interval),
            (Timer::FixFingers, self.config.fix_fingers_interval),
            (
                Timer::CheckPredecessor,
                self.config.check_predecessor_interval,
            ),
        ] {
            // A random phase so that nodes do not all act in lock-step.
            let at = self.now + self.rng.range(1, interval.max(1));
            self.schedule(
                at,
                Event::Timer {
                    node: i,
                    incarnation,
                    timer,
                },
            );
        }
    }

    fn latency(&mut self) -> Micros {
        self.rng
            .range(self.config.latency_min, self.config.latency_max)
    }

    fn can_talk(&self, a: NodeIndex, b: NodeIndex) -> bool {
        self.slots[a].group == self.slots[b].group
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Timer {
                node,
                incarnation,
                timer,
            } => {
                let slot = &mut self.slots[node];
                if !slot.alive || slot.incarnation != incarnation {
                    return;
                }
                slot.node.tick(timer);
                let interval = match timer {
                    Timer::Stabilize => self.config.stabilize_interval,
                    Timer::FixFingers => self.config.fix_fingers_interval,
                    Timer::CheckPredecessor => self.config.check_predecessor_interval,
                };
                self.schedule(
                    self.now + interval,
                    Event::Timer {
                        node,
                        incarnation,
                        timer,
                    },
                );
                self.flush(node);
            }
            Event::Request {
                to,
                from,
                from_incarnation,
                request,
                sent_at,
                message,
            } => {
                let timeout_at = sent_at + self.config.rpc_timeout;
                if !self.slots[to].alive {
                    let at = timeout_at.max(self.now);
                    self.schedule(
                        at,
                        Event::Failure {
                            to: from,
                            incarnation: from_incarnation,
                            request,
                        },
                    );
                    return;
                }
                let response = self.slots[to].node.handle_request(message);
                self.flush(to);
                self.stats.messages += 1;
                if self.rng.chance(self.config.loss) || !self.can_talk(to, from) {
                    self.stats.requests_lost += 1;
                    self.schedule(
                        timeout_at.max(self.now),
                        Event::Failure {
                            to: from,
                            incarnation: from_incarnation,
                            request,
                        },
                    );
                } else {
                    let at = self.now + self.latency();
                    self.schedule(
                        at.min(timeout_at.max(self.now)),
                        Event::Response {
                            to: from,
                            incarnation: from_incarnation,
                            request,
                            message: response,
                        },
                    );
                }
            }
            Event::Response {
                to,
                incarnation,
                request,
                message,
            } => {
                let slot = &mut self.slots[to];
                if !slot.alive || slot.incarnation != incarnation {
                    return;
                }
                slot.node.handle_response(request, message);
                self.flush(to);
            }
            Event::Failure {
                to,
                incarnation,
                request,
            } => {
                let slot = &mut self.slots[to];
                if !slot.alive || slot.incarnation != incarnation {
                    return;
                }
                slot.node.handle_failure(request);
                self.flush(to);
            }
        }
    }

    /// Executes what node `i` asked for.
    fn flush(&mut self, i: NodeIndex) {
        let mut outputs = std::mem::take(&mut self.outputs);
        self.slots[i].node.drain_outputs(&mut outputs);
        for output in outputs.drain(..) {
            match output {
                Output::Send {
                    request,
                    to,
                    message,
                    ..
                } => self.send(i, request, to, message),
                Output::LookupDone { lookup, outcome } => {
                    if let Some((target, issued_at)) = self.pending_lookups.remove(&(i, lookup)) {
                        self.record_lookup(i, target, issued_at, outcome.as_ref().ok());
                    }
                }
                Output::Event(event) => self.on_event(i, event),
            }
        }
        self.outputs = outputs;
    }

    fn send(&mut self, from: NodeIndex, request: RequestId, to: Address, message: RequestEnvelope) {
        self.stats.messages += 1;
        let incarnation = self.slots[from].incarnation;
        let timeout_at = self.now + self.config.rpc_timeout;
        let target = self.by_address.get(&to).copied();
        match target {
            Some(t) if self.can_talk(from, t) && !self.rng.chance(self.config.loss) => {
                let at = self.now + self.latency();
                self.schedule(
                    at,
                    Event::Request {
                        to: t,
                        from,
                        from_incarnation: incarnation,
                        request,
                        sent_at: self.now,
                        message,
                    },
                );
            }
            _ => {
                self.stats.requests_lost += 1;
                self.schedule(
                    timeout_at,
                    Event::Failure {
                        to: from,
                        incarnation,
                        request,
                    },
                );
            }
        }
    }

    fn on_event(&mut self, i: NodeIndex, event: RingEvent) {
        match event {
            RingEvent::Created { ring_id } | RingEvent::Joined { ring_id, .. } => {
                self.slots[i].join_outcome = Some(Ok(ring_id));
                self.stats.joins += 1;
                let id = self.slots[i].node.id();
                self.members.insert(id, i);
            }
            RingEvent::JoinFailed { failure } => {
                self.slots[i].join_outcome = Some(Err(failure));
                self.stats.join_failures += 1;
            }
            RingEvent::SuccessorChanged { .. } => self.stats.successor_changes += 1,
            RingEvent::PredecessorChanged { .. } => self.stats.predecessor_changes += 1,
            RingEvent::PeerFailed { .. } => self.stats.peer_failures_detected += 1,
            RingEvent::Left => {
                self.stats.leaves += 1;
                let id = self.slots[i].node.id();
                if self.members.get(&id) == Some(&i) {
                    self.members.remove(&id);
                }
            }
            RingEvent::PeerLeft { .. } | RingEvent::Stabilized { .. } => {}
        }
    }

    fn record_lookup(
        &mut self,
        origin: NodeIndex,
        target: Id,
        issued_at: Micros,
        result: Option<&LookupResult>,
    ) {
        let truth = self.true_successor(target);
        let record = match result {
            Some(r) => LookupRecord {
                origin,
                target,
                issued_at,
                finished_at: self.now,
                hops: r.hops,
                timeouts: r.timeouts,
                correct: truth.is_some_and(|t| self.slots[t].node.id() == r.node.id),
                failed: false,
            },
            None => LookupRecord {
                origin,
                target,
                issued_at,
                finished_at: self.now,
                hops: 0,
                timeouts: 0,
                correct: false,
                failed: true,
            },
        };
        self.lookups.push(record);
    }

    /// Membership of node `i` (for tests and reports).
    pub fn membership(&self, i: NodeIndex) -> Membership {
        self.slots[i].node.membership()
    }
}
