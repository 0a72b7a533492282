//! Starting peers through the founder machine ([`Bootstrap`]) in the simulator, the way a
//! Kubernetes StatefulSet starts them: every pod gets the same ordered seed list (pod-0 first),
//! remembers its ring on its "disk" across crashes, and decides by itself whether to found or
//! join.
//!
//! The [`Fleet`] plays the runtime's part for each pod's machine, in slices of virtual time:
//! - `TryJoin(t)`: the pod's node joins through `t` over the simulated network; the node's own
//!   join outcome becomes the machine's [`JoinOutcome`]: joined; NotMember (the target is alive
//!   and not in a ring) carrying the ring id the target's disk remembers; Unreachable (crashed,
//!   not started yet, or the message was lost); anything else is Other.
//! - `CheckResolves(t)`: a pod's name resolves unless the pod was [`Fleet::remove`]d (scaled
//!   away); names outside the fleet never resolve.
//! - `Create(r)`: the node founds ring `r` (recorded in [`Fleet::founded`]).
//! - `Wait(d)`: the machine is woken `d` later.
//!
//! A pod's disk is what its node asked to persist ([`crate::ring::Output::Persist`]: the ring id
//! and neighbours, when it founds or joins and every few stabilization rounds), exactly what the
//! runtime writes to `ring.json`; it survives crashes and restarts unless wiped.

use std::collections::BTreeSet;
use std::time::Duration;

use super::check::check_ring;
use super::{Micros, NodeIndex, Sim, SimConfig};
use crate::ring::{
    Address, Bootstrap, BootstrapAction as Action, BootstrapConfig, FoundReason, JoinFailure,
    JoinOutcome, Membership, Peer, Remembered, RingId,
};

/// How a fleet is set up.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    pub sim: SimConfig,
    pub pods: usize,
    /// The first `seeds` pods are the seed list, in order.
    pub seeds: usize,
    pub create_after: Micros,
    pub join_retry_interval: Micros,
    /// Each start of [`Fleet::start_all`] is delayed uniformly in [0, this].
    pub max_start_delay: Micros,
    /// Granularity at which the fleet looks at the machines.
    pub slice: Micros,
}

impl Default for FleetConfig {
    fn default() -> FleetConfig {
        FleetConfig {
            sim: SimConfig::default(),
            pods: 64,
            seeds: 3,
            create_after: 5_000_000,
            join_retry_interval: 1_000_000,
            max_start_delay: 2_000_000,
            slice: 5_000,
        }
    }
}

/// What a restarted pod finds on its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disk {
    Keep,
    Wipe,
}

/// A ring founded by a pod's machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Founded {
    pub at: Micros,
    pub pod: usize,
    pub ring_id: RingId,
    pub reason: FoundReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    Join,
    WakeAt(Micros),
}

struct Pod {
    address: Address,
    slot: Option<NodeIndex>,
    start_at: Option<Micros>,
    started_at: Micros,
    machine: Option<Bootstrap>,
    awaiting: Awaiting,
    removed: bool,
}

/// Pods started through their founder machines over one simulator.
pub struct Fleet {
    pub sim: Sim,
    pub config: FleetConfig,
    pods: Vec<Pod>,
    seeds: Vec<Address>,
    /// Every ring founded, in order.
    pub founded: Vec<Founded>,
}

impl Fleet {
    pub fn new(config: FleetConfig) -> Fleet {
        let sim = Sim::new(config.sim.clone());
        let seed = config.sim.seed;
        let pods: Vec<Pod> = (0..config.pods)
            .map(|i| Pod {
                address: Address::new(format!("chordnet-{i}.s{seed}.headless:7000")),
                slot: None,
                start_at: None,
                started_at: 0,
                machine: None,
                awaiting: Awaiting::Nothing,
                removed: false,
            })
            .collect();
        let seeds = pods
            .iter()
            .take(config.seeds)
            .map(|p| p.address.clone())
            .collect();
        Fleet {
            sim,
            config,
            pods,
            seeds,
            founded: Vec::new(),
        }
    }

    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    pub fn address(&self, pod: usize) -> &Address {
        &self.pods[pod].address
    }

    /// The simulator slot of a pod that was started at least once.
    pub fn slot(&self, pod: usize) -> Option<NodeIndex> {
        self.pods[pod].slot
    }

    /// What the pod's disk remembers.
    pub fn disk(&self, pod: usize) -> Option<&Remembered> {
        self.pods[pod]
            .slot
            .and_then(|s| self.sim.slot(s).disk.as_ref())
    }

    /// Whether the pod runs and is a ring member.
    pub fn is_member(&self, pod: usize) -> bool {
        self.pods[pod].slot.is_some_and(|s| self.sim.is_member(s))
    }

    pub fn is_running(&self, pod: usize) -> bool {
        self.pods[pod].slot.is_some_and(|s| self.sim.is_alive(s))
    }

    /// Starts every pod after a random delay in [0, `max_start_delay`].
    pub fn start_all(&mut self) {
        for pod in 0..self.pods.len() {
            let delay = self.sim.workload.range(0, self.config.max_start_delay);
            self.start_in(pod, delay);
        }
    }

    /// (Re)starts a pod after `delay`, unless it runs already.
    pub fn start_in(&mut self, pod: usize, delay: Micros) {
        let at = self.sim.now() + delay;
        self.pods[pod].start_at = Some(at);
        self.pods[pod].removed = false;
    }

    /// Crashes a pod: its disk keeps what it remembered.
    pub fn crash(&mut self, pod: usize) {
        let p = &mut self.pods[pod];
        p.machine = None;
        p.awaiting = Awaiting::Nothing;
        p.start_at = None;
        if let Some(s) = p.slot {
            self.sim.crash(s);
        }
    }

    /// Restarts a crashed pod after `delay` with its disk kept or wiped.
    pub fn restart_in(&mut self, pod: usize, disk: Disk, delay: Micros) {
        if disk == Disk::Wipe
            && let Some(s) = self.pods[pod].slot
        {
            self.sim.wipe_disk(s);
        }
        self.start_in(pod, delay);
    }

    /// Crashes a pod and deletes it: its name stops resolving.
    pub fn remove(&mut self, pod: usize) {
        self.crash(pod);
        self.pods[pod].removed = true;
    }

    /// Distinct ring ids among live members, in numeric order.
    pub fn ring_ids(&self) -> Vec<RingId> {
        let ids: BTreeSet<u128> = self
            .sim
            .members()
            .values()
            .filter_map(|&s| self.sim.slot(s).node.ring_id())
            .map(|r| r.0)
            .collect();
        ids.into_iter().map(RingId).collect()
    }

    /// Running pods that are not members yet.
    pub fn not_members(&self) -> Vec<usize> {
        (0..self.pods.len())
            .filter(|&p| self.is_running(p) && !self.is_member(p))
            .collect()
    }

    /// One ring: every running pod a member, one ring id, the checker's quiescent state.
    pub fn settled(&self) -> bool {
        let waiting = self.pods.iter().any(|p| p.start_at.is_some());
        !waiting
            && self.not_members().is_empty()
            && self.ring_ids().len() == 1
            && check_ring(&self.sim).quiescent_ok()
    }

    /// Runs until [`Fleet::settled`] (checked every stabilization period) or `limit` more
    /// virtual time passed; returns the virtual time it took.
    pub fn run_until_settled(&mut self, limit: Micros) -> Option<Micros> {
        let start = self.sim.now();
        let period = self.sim.config.stabilize_interval;
        while self.sim.now() - start <= limit {
            if self.settled() {
                return Some(self.sim.now() - start);
            }
            self.run_for(period);
        }
        None
    }

    /// Runs `duration` more virtual time, driving the machines.
    pub fn run_for(&mut self, duration: Micros) {
        let end = self.sim.now() + duration;
        while self.sim.now() < end {
            let next = (self.sim.now() + self.config.slice).min(end);
            self.sim.run_until(next);
            for pod in 0..self.pods.len() {
                self.poll(pod);
            }
        }
    }

    fn poll(&mut self, pod: usize) {
        let now = self.sim.now();
        if self.pods[pod].start_at.is_some_and(|at| at <= now) {
            self.boot(pod);
            return;
        }
        let action = match self.pods[pod].awaiting {
            Awaiting::Nothing => return,
            Awaiting::WakeAt(at) if at > now => return,
            Awaiting::WakeAt(_) => {
                let t = self.elapsed(pod);
                match self.pods[pod].machine.as_mut() {
                    Some(m) => m.on_wake(t),
                    None => return,
                }
            }
            Awaiting::Join => {
                let Some(s) = self.pods[pod].slot else { return };
                let Some(outcome) = self.sim.take_join_outcome(s) else {
                    return;
                };
                let outcome = self.outcome(outcome);
                let t = self.elapsed(pod);
                match self.pods[pod].machine.as_mut() {
                    Some(m) => m.on_join(t, outcome),
                    None => return,
                }
            }
        };
        self.drive(pod, action);
    }

    fn elapsed(&self, pod: usize) -> Duration {
        Duration::from_micros(self.sim.now().saturating_sub(self.pods[pod].started_at))
    }

    /// Starts (or restarts) the pod's node and its founder machine.
    fn boot(&mut self, pod: usize) {
        let now = self.sim.now();
        let p = &mut self.pods[pod];
        p.start_at = None;
        match p.slot {
            Some(s) if self.sim.is_alive(s) => return,
            Some(s) => self.sim.restart(s),
            None => p.slot = Some(self.sim.add_node(Peer::from_address(p.address.as_str()))),
        }
        let fresh = RingId(
            (u128::from(self.sim.rng.next_u64()) << 64) | u128::from(self.sim.rng.next_u64()),
        );
        let p = &mut self.pods[pod];
        p.started_at = now;
        let mut machine = Bootstrap::new(BootstrapConfig {
            me: p.address.clone(),
            bootstrap: None,
            seeds: self.seeds.clone(),
            remembered: p.slot.and_then(|s| self.sim.slot(s).disk.clone()),
            fresh_ring_id: fresh,
            create_after: Duration::from_micros(self.config.create_after),
            join_retry_interval: Duration::from_micros(self.config.join_retry_interval),
            answer_timeout: Duration::from_micros(self.sim.config.rpc_timeout),
        });
        let action = machine.start(Duration::ZERO);
        p.machine = Some(machine);
        self.drive(pod, action);
    }

    /// Executes actions until the machine waits for something.
    fn drive(&mut self, pod: usize, mut action: Action) {
        let Some(slot) = self.pods[pod].slot else {
            return;
        };
        loop {
            let t = self.elapsed(pod);
            let next = match action {
                Action::TryJoin(target) => {
                    if self.sim.join_address(slot, target).is_ok() {
                        self.pods[pod].awaiting = Awaiting::Join;
                        return;
                    }
                    // Already a member (or joining): as good as joined.
                    self.machine(pod).map(|m| m.on_join(t, JoinOutcome::Joined))
                }
                Action::CheckResolves(target) => {
                    let resolves = self.pods.iter().any(|p| p.address == target && !p.removed);
                    self.machine(pod).map(|m| m.on_resolves(t, resolves))
                }
                Action::Create(ring_id) => {
                    let reason = self.machine(pod).and_then(|m| m.founded());
                    if self.sim.create_with(slot, ring_id).is_ok()
                        && let Some(reason) = reason
                    {
                        self.founded.push(Founded {
                            at: self.sim.now(),
                            pod,
                            ring_id,
                            reason,
                        });
                    }
                    None
                }
                Action::Wait(d) => {
                    let at = self.sim.now() + d.as_micros() as Micros;
                    self.pods[pod].awaiting = Awaiting::WakeAt(at);
                    return;
                }
                Action::Done => None,
            };
            match next {
                Some(a) => action = a,
                None => {
                    self.pods[pod].awaiting = Awaiting::Nothing;
                    self.pods[pod].machine = None;
                    return;
                }
            }
        }
    }

    fn machine(&mut self, pod: usize) -> Option<&mut Bootstrap> {
        self.pods[pod].machine.as_mut()
    }

    /// The node's join outcome, as the machine hears it.
    fn outcome(&self, outcome: Result<RingId, JoinFailure>) -> JoinOutcome {
        match outcome {
            Ok(_) => JoinOutcome::Joined,
            // What the target said its disk remembers, over the (simulated) wire.
            Err(JoinFailure::NotMember { remembers, .. }) => JoinOutcome::NotMember { remembers },
            Err(JoinFailure::Unreachable { .. }) => JoinOutcome::Unreachable,
            Err(other) => JoinOutcome::Other(other.to_string()),
        }
    }

    /// Membership of a pod's node (Idle when it never ran).
    pub fn membership(&self, pod: usize) -> Membership {
        self.pods[pod]
            .slot
            .map_or(Membership::Idle, |s| self.sim.membership(s))
    }
}
