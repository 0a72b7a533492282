//! The simulator's public API: adding, starting, crashing and partitioning nodes, user commands,
//! and running virtual time forward.

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::network::{Event, Queued};
use super::{LookupRecord, Micros, NodeIndex, Rng, SimConfig, Slot, Stats};
use crate::id::Id;
use crate::ring::{
    Address, CommandError, JoinFailure, LookupId, Membership, Node, Output, Peer, RingId,
};

/// The simulator.
pub struct Sim {
    pub config: SimConfig,
    /// The network's draws: latencies and losses (and ring ids). How many it makes depends on the
    /// traffic, so a change to the protocol changes every draw after it.
    pub rng: Rng,
    /// The scenario's draws: churn schedules and victims, lookup origins and keys, rejoins'
    /// bootstraps, crash and partition picks, pods' start delays. A stream of its own, from the
    /// seed alone, so that two builds of the protocol face the same churn and the same lookups
    /// (an A/B comparison in the simulator compares like with like).
    pub workload: Rng,
    pub(super) now: Micros,
    pub(super) seq: u64,
    pub(super) queue: BinaryHeap<Queued>,
    pub(super) events: Vec<Option<Event>>,
    pub(super) free_events: Vec<usize>,
    pub(super) slots: Vec<Slot>,
    pub(super) by_address: HashMap<Address, NodeIndex>,
    /// Live ring members by id: the ground truth lookups are checked against.
    pub(super) members: BTreeMap<Id, NodeIndex>,
    pub(super) pending_lookups: HashMap<(NodeIndex, LookupId), (Id, Micros)>,
    /// Finished lookups, in completion order; drained by the caller.
    pub lookups: Vec<LookupRecord>,
    pub stats: Stats,
    ring_id: RingId,
    pub(super) outputs: Vec<Output>,
}

/// Mixed into the seed for [`Sim::workload`] (any constant that is not 0 gives another stream).
const WORKLOAD_STREAM: u64 = 0x776f_726b_6c6f_6164;

impl Sim {
    pub fn new(config: SimConfig) -> Sim {
        let mut rng = Rng::new(config.seed);
        let ring_id = RingId((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()));
        let workload = Rng::new(config.seed ^ WORKLOAD_STREAM);
        Sim {
            config,
            rng,
            workload,
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
        let mut node = Node::new(peer, self.config.ring.clone());
        node.set_incarnation(self.incarnation_value(i, 0));
        self.slots.push(Slot {
            node,
            alive: true,
            incarnation: 0,
            group: 0,
            join_outcome: None,
            disk: None,
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

    /// Deletes what node `i` persisted (a pod restarted on a fresh volume).
    pub fn wipe_disk(&mut self, i: NodeIndex) {
        self.slots[i].disk = None;
    }

    /// Restarts a crashed node at the same address and id, with empty state (it must rejoin).
    pub fn restart(&mut self, i: NodeIndex) {
        if self.slots[i].alive {
            return;
        }
        let incarnation = self.incarnation_value(i, self.slots[i].incarnation + 1);
        let slot = &mut self.slots[i];
        let peer = slot.node.me().clone();
        slot.node = Node::new(peer, self.config.ring.clone());
        slot.node.set_incarnation(incarnation);
        slot.node
            .set_remembered(slot.disk.as_ref().and_then(|d| d.ring_id));
        slot.alive = true;
        slot.incarnation += 1;
        slot.join_outcome = None;
        self.start_timers(i);
    }

    /// The random incarnation node `i` tells peers at its `start`-th start: derived from the
    /// seed rather than drawn, so that adding it changed no other random choice of a run.
    fn incarnation_value(&self, i: NodeIndex, start: u32) -> u64 {
        let mut mix = super::Rng::new(
            self.config.seed ^ ((i as u64) << 20) ^ (u64::from(start) << 52) ^ 0x1ca4_2a71,
        );
        mix.next_u64()
    }

    /// Node `i` starts ring unification through `contact` (an operator's explicit merge).
    pub fn merge_with(&mut self, i: NodeIndex, contact: Peer) -> bool {
        let started = self.slots[i].node.merge_with(contact);
        self.flush(i);
        started
    }

    /// Node `i` probes these addresses as merge candidates (`ring.seeds`).
    pub fn set_merge_seeds(&mut self, i: NodeIndex, seeds: Vec<Address>) {
        self.slots[i].node.set_merge_seeds(seeds);
    }

    /// Node `i` asks the ring of `contact` (ring `ring_id`) to take its ring's id over and merge
    /// in (an operator's `POST /v1/ring/merge`).
    pub fn absorb_ring(&mut self, i: NodeIndex, contact: Address, ring_id: RingId) -> bool {
        let started = self.slots[i].node.absorb_ring(contact, ring_id);
        self.flush(i);
        started
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
    pub fn lookup(&mut self, i: NodeIndex, target: Id) -> LookupId {
        let reuse = self.config.reuse_lookup_answers;
        let id = self.slots[i].node.lookup_with(target, reuse);
        self.pending_lookups.insert((i, id), (target, self.now));
        self.flush(i);
        id
    }

    /// Node `i`'s user gives up waiting for lookup `id` (it is never recorded).
    pub fn cancel_lookup(&mut self, i: NodeIndex, id: LookupId) {
        self.pending_lookups.remove(&(i, id));
        self.slots[i].node.cancel_lookup(id);
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

    /// Membership of node `i` (for tests and reports).
    pub fn membership(&self, i: NodeIndex) -> Membership {
        self.slots[i].node.membership()
    }
}
