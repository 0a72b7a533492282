//! Partitions in the simulator: split a converged ring into K parts of random members, let each
//! part live on its own (lookups and churn inside each part) until each has closed into a ring
//! of its own, heal the network, and measure how long ring unification takes to make one
//! correct ring again (DESIGN.md §11).
//!
//! The network model: a message flows only between nodes of the same group, checked when it is
//! sent and again when it arrives (a partition that begins while a message is on its way stops
//! it too), for requests and responses alike.

use serde::Serialize;

use super::check::{check_group, check_ring};
use super::scenario::{Progress, converge, spread_lookups};
use super::{NodeIndex, Sim};

/// Rounds a split ring is given to settle into one ring per part before the network heals.
const SETTLE_ROUNDS: u64 = 50;

/// How a partition is run.
#[derive(Clone, Copy, Debug)]
pub struct Split {
    /// Number of parts (at least 2).
    pub parts: usize,
    /// Stabilization periods the split lasts.
    pub rounds: u64,
    /// Lookups issued inside the parts while split (not measured: their truth is the part's).
    pub lookups: usize,
    /// Joins plus crashes per stabilization period inside the parts.
    pub churn_rate: f64,
    /// Bound on the rounds the merge may take.
    pub max_rounds: u64,
}

/// What a partition and its merge measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MergeReport {
    /// Parts the ring was split into, and their sizes.
    pub part_sizes: Vec<usize>,
    /// Every part was a correct ring of its own when the network healed.
    pub parts_were_rings: bool,
    /// One ring that passes the invariant checker after healing.
    pub merged: bool,
    /// Stabilization rounds from healing until then (`None`: the bound was hit).
    pub merge_rounds: Option<u64>,
    /// Messages per live node from healing until one ring.
    pub merge_messages_per_node: f64,
    /// Ring unifications started (by the passive list, a hint) from healing until one ring.
    pub merges_started: u64,
}

/// Puts every live member in one of `parts` groups (1..=parts) at random, the groups as equal
/// in size as they can be; returns the members of each group.
pub fn split(sim: &mut Sim, parts: usize) -> Vec<Vec<NodeIndex>> {
    let parts = parts.max(1);
    let mut members = sim.live_members();
    // Fisher-Yates, then deal: random members, equal sizes.
    for k in (1..members.len()).rev() {
        let j = sim.workload.index(k + 1);
        members.swap(k, j);
    }
    let mut groups = vec![Vec::new(); parts];
    for (k, i) in members.into_iter().enumerate() {
        sim.set_group(i, (k % parts) as u32 + 1);
        groups[k % parts].push(i);
    }
    groups
}

/// Splits the ring, runs the split, heals, and runs until one ring (or the bound).
pub fn partition_and_merge(
    sim: &mut Sim,
    split_how: Split,
    progress: &mut dyn FnMut(Progress),
) -> MergeReport {
    let period = sim.config.stabilize_interval;
    let groups = split(sim, split_how.parts);
    let part_sizes = groups.iter().map(Vec::len).collect();
    let window = split_how.rounds.max(1) * period;
    // Lookups and churn inside each part; their records are not the measured ones.
    let _ = spread_lookups(
        sim,
        split_how.lookups,
        window,
        split_how.churn_rate,
        progress,
    );
    // Churn ended: let each part settle into its own ring before the network heals (a part
    // can stay two rings: a node that lost all r successors at once falls back to a finger
    // and may skip live nodes of its own part; the merge after healing mends that too).
    let settle_until = sim.now() + split_how.max_rounds.min(SETTLE_ROUNDS) * period;
    let parts_ok =
        |sim: &Sim| (1..=groups.len() as u32).all(|g| check_group(sim, g).quiescent_ok());
    while !parts_ok(sim) && sim.now() < settle_until {
        sim.run_for(period);
    }
    let parts_were_rings = parts_ok(sim);

    sim.heal();
    let (messages, merges) = (sim.stats.messages, sim.stats.merges_started);
    let merge_rounds = converge(sim, split_how.max_rounds, "merge", progress);
    let live = sim.members().len().max(1);
    MergeReport {
        part_sizes,
        parts_were_rings,
        merged: check_ring(sim).quiescent_ok(),
        merge_rounds,
        merge_messages_per_node: (sim.stats.messages - messages) as f64 / live as f64,
        merges_started: sim.stats.merges_started - merges,
    }
}
