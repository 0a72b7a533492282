//! Scenarios: build a ring, let it converge, break it (crashes, churn), look keys up, and report
//! the figures (convergence rounds, hop counts, lookup success, message rates, wall time).

use std::time::Instant;

use serde::Serialize;

use super::check::{check_ring, finger_accuracy};
use super::partition::{MergeReport, Split, partition_and_merge};
use super::{LookupRecord, Micros, NodeIndex, Rng, Sim, SimConfig};
use crate::ring::{Membership, RingConfig};

/// Idle periods over which the maintenance message rate is measured.
const IDLE_ROUNDS: u64 = 4;

fn per_node_per_second(messages: u64, nodes: usize, elapsed: Micros) -> f64 {
    if nodes == 0 || elapsed == 0 {
        return 0.0;
    }
    messages as f64 / nodes as f64 / (elapsed as f64 / 1e6)
}

/// How the initial nodes join.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    /// All at once through the one bootstrap node.
    Concurrent,
    /// One after another, each through the bootstrap once the previous one has joined.
    Sequential,
}

/// A scenario, as given on the command line.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub nodes: usize,
    pub lookups: usize,
    pub seed: u64,
    pub successors: usize,
    /// Crash this fraction of the nodes at once after convergence, then repair, then look up.
    pub fail_fraction: f64,
    /// Joins plus crashes per stabilization period while the lookups run.
    pub churn_rate: f64,
    pub join: JoinMode,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Stabilization periods over which the lookups are spread.
    pub lookup_rounds: u64,
    /// Bound on the rounds any convergence phase may take.
    pub max_rounds: u64,
    /// Split the converged ring into this many parts of random members (0 or 1: no split),
    /// then heal and measure the merge; the measured lookups run after the merge.
    pub partition_parts: usize,
    /// Stabilization periods the split lasts, with the lookups and churn of the other settings
    /// going on inside each part.
    pub partition_rounds: u64,
    /// Most peers each node's membership table holds (0: off, lookups route by fingers).
    pub membership_table_max: usize,
    /// The measured lookups reuse what responsible peers said this period (as API lookups do).
    pub reuse_lookup_answers: bool,
}

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario {
            nodes: 64,
            lookups: 10_000,
            seed: 1,
            successors: 4,
            fail_fraction: 0.0,
            churn_rate: 0.0,
            join: JoinMode::Concurrent,
            loss: 0.0,
            lookup_rounds: 20,
            max_rounds: 5_000,
            partition_parts: 0,
            partition_rounds: 20,
            membership_table_max: RingConfig::default().membership_table_max,
            reuse_lookup_answers: false,
        }
    }
}

/// What a scenario measured. Everything but `wall_seconds` is a function of the scenario alone.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub nodes: usize,
    pub lookups: usize,
    pub seed: u64,
    pub successors: usize,
    pub join: JoinMode,
    /// Most peers each node's membership table held (0: off).
    pub membership_table_max: usize,
    /// The lookups reused what responsible peers said during the period.
    pub reuse_lookup_answers: bool,
    /// Fraction of the measured lookups that returned the true successor.
    pub lookup_success_rate: f64,
    /// Measured lookups that ended in an error (no route, ...).
    pub lookups_failed: usize,
    /// Measured lookups that returned a node other than the true successor.
    pub lookups_wrong: usize,
    pub hops_mean: f64,
    pub hops_p50: u32,
    pub hops_p99: u32,
    pub hops_max: u32,
    /// ½·log2 N, the Chord paper's expected path length.
    pub hops_expected: f64,
    /// Mean lookup latency in virtual milliseconds.
    pub lookup_latency_ms_mean: f64,
    /// The invariant checker passed at the end.
    pub converged: bool,
    /// Stabilization rounds from the first join until one correct ring with right predecessors.
    pub converge_rounds: Option<u64>,
    /// Further rounds until every finger was right (or the bound).
    pub finger_rounds: u64,
    pub finger_accuracy: f64,
    /// Nodes crashed at once by `--fail-fraction`.
    pub crashed: usize,
    /// Lookups issued right after the mass crash, while the ring repaired.
    pub repair_lookups: usize,
    pub repair_lookup_success_rate: Option<f64>,
    /// Rounds from the mass crash until the invariant checker passed again.
    pub repair_rounds: Option<u64>,
    /// Joins plus crashes performed during the lookups.
    pub churn_events: usize,
    /// Rounds from the end of churn until the invariant checker passed again.
    pub post_churn_converge_rounds: Option<u64>,
    /// The split and the merge (`--partition-parts`): `merged`, `merge_rounds` (null when the
    /// bound was hit), `merge_messages_per_node`, ...; absent without a split.
    #[serde(flatten)]
    pub partition: Option<MergeReport>,
    pub live_nodes: usize,
    /// Messages (requests and responses) per node per second while the measured lookups ran.
    pub messages_per_node_per_second: f64,
    /// The same in idle periods of a converged ring: the cost of maintenance alone.
    pub maintenance_messages_per_node_per_second: f64,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
}

/// Progress of a long run, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub phase: &'static str,
    pub done: u64,
    pub total: u64,
}

/// Statistics of a batch of lookups.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LookupStats {
    pub count: usize,
    pub correct: usize,
    pub failed: usize,
    pub hops_mean: f64,
    pub hops_p50: u32,
    pub hops_p99: u32,
    pub hops_max: u32,
    pub latency_ms_mean: f64,
}

impl LookupStats {
    pub fn from_records(records: &[LookupRecord]) -> LookupStats {
        let count = records.len();
        if count == 0 {
            return LookupStats::default();
        }
        let mut hops: Vec<u32> = records
            .iter()
            .filter(|r| !r.failed)
            .map(|r| r.hops)
            .collect();
        hops.sort_unstable();
        let pct = |p: f64| -> u32 {
            if hops.is_empty() {
                0
            } else {
                let k = ((p * hops.len() as f64).ceil() as usize).clamp(1, hops.len());
                hops[k - 1]
            }
        };
        let hops_mean = if hops.is_empty() {
            0.0
        } else {
            hops.iter().map(|&h| f64::from(h)).sum::<f64>() / hops.len() as f64
        };
        LookupStats {
            count,
            correct: records.iter().filter(|r| r.correct).count(),
            failed: records.iter().filter(|r| r.failed).count(),
            hops_mean,
            hops_p50: pct(0.50),
            hops_p99: pct(0.99),
            hops_max: hops.last().copied().unwrap_or(0),
            latency_ms_mean: records
                .iter()
                .map(|r| (r.finished_at - r.issued_at) as f64 / 1000.0)
                .sum::<f64>()
                / count as f64,
        }
    }

    pub fn success_rate(&self) -> f64 {
        if self.count == 0 {
            1.0
        } else {
            self.correct as f64 / self.count as f64
        }
    }
}

impl Scenario {
    fn sim_config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            ring: RingConfig {
                successors: self.successors,
                membership_table_max: self.membership_table_max,
                ..RingConfig::default()
            },
            loss: self.loss,
            reuse_lookup_answers: self.reuse_lookup_answers,
            ..SimConfig::default()
        }
    }

    /// Builds the ring (create + joins) without running it.
    pub fn build(&self) -> Sim {
        let mut sim = Sim::new(self.sim_config());
        let bootstrap = sim.add_node_auto();
        sim.create(bootstrap);
        for _ in 1..self.nodes {
            sim.add_node_auto();
        }
        sim
    }

    /// Runs the whole scenario.
    pub fn run(&self, progress: &mut dyn FnMut(Progress)) -> Report {
        let wall = Instant::now();
        let mut sim = self.build();
        let period = sim.config.stabilize_interval;
        let log2n = (self.nodes.max(1) as f64).log2();

        // 1. Joins and convergence.
        let converge_rounds = self.join_all(&mut sim, progress);
        let finger_bound = (4.0 * log2n) as u64 + 40;
        let finger_rounds = run_until_fingers_right(&mut sim, finger_bound);

        // The cost of keeping the ring up: messages in a few idle periods.
        let (messages_before, time_before) = (sim.stats.messages, sim.now());
        sim.run_for(IDLE_ROUNDS * period);
        let maintenance_messages_per_node_per_second = per_node_per_second(
            sim.stats.messages - messages_before,
            sim.members().len(),
            sim.now() - time_before,
        );

        // 2. Mass failure, lookups during repair, repair.
        let mut crashed = 0;
        let mut repair_stats = None;
        let mut repair_rounds = None;
        if self.fail_fraction > 0.0 {
            crashed = crash_fraction(&mut sim, self.fail_fraction);
            let repair_lookups = self.lookups.min(10_000);
            let (records, _) = spread_lookups(&mut sim, repair_lookups, 2 * period, 0.0, progress);
            repair_stats = Some(LookupStats::from_records(&records));
            repair_rounds = converge(&mut sim, self.max_rounds, "repair", progress).map(|r| r + 2);
            run_until_fingers_right(&mut sim, finger_bound);
        }

        // 3. A partition, if asked: split, live apart, heal, merge.
        let partition = (self.partition_parts >= 2).then(|| {
            let split = Split {
                parts: self.partition_parts,
                rounds: self.partition_rounds,
                lookups: self.lookups,
                churn_rate: self.churn_rate,
                max_rounds: self.max_rounds,
            };
            partition_and_merge(&mut sim, split, progress)
        });

        // 4. The measured lookups, under churn if asked.
        let window = self.lookup_rounds.max(1) * period;
        let messages_before = sim.stats.messages;
        let time_before = sim.now();
        let (records, churn_events) =
            spread_lookups(&mut sim, self.lookups, window, self.churn_rate, progress);
        let messages_per_node_per_second = per_node_per_second(
            sim.stats.messages - messages_before,
            sim.members().len(),
            sim.now() - time_before,
        );
        let stats = LookupStats::from_records(&records);

        // 5. After churn, the ring must converge again.
        let post_churn_converge_rounds = if self.churn_rate > 0.0 {
            converge(&mut sim, self.max_rounds, "settle", progress)
        } else {
            None
        };
        let check = check_ring(&sim);
        let live = sim.members().len();
        Report {
            nodes: self.nodes,
            lookups: self.lookups,
            seed: self.seed,
            successors: self.successors,
            join: self.join,
            membership_table_max: self.membership_table_max,
            reuse_lookup_answers: self.reuse_lookup_answers,
            lookup_success_rate: stats.success_rate(),
            lookups_failed: stats.failed,
            lookups_wrong: stats.count - stats.correct - stats.failed,
            hops_mean: stats.hops_mean,
            hops_p50: stats.hops_p50,
            hops_p99: stats.hops_p99,
            hops_max: stats.hops_max,
            hops_expected: 0.5 * (live.max(1) as f64).log2(),
            lookup_latency_ms_mean: stats.latency_ms_mean,
            converged: check.quiescent_ok(),
            converge_rounds,
            finger_rounds,
            finger_accuracy: finger_accuracy(&sim),
            crashed,
            repair_lookups: repair_stats.as_ref().map_or(0, |s| s.count),
            repair_lookup_success_rate: repair_stats.map(|s| s.success_rate()),
            repair_rounds,
            churn_events,
            post_churn_converge_rounds,
            partition,
            live_nodes: live,
            messages_per_node_per_second,
            maintenance_messages_per_node_per_second,
            sim_seconds: sim.now() as f64 / 1e6,
            wall_seconds: wall.elapsed().as_secs_f64(),
        }
    }

    /// Joins every node through the bootstrap (index 0) and runs until the ring is correct.
    /// Returns the rounds it took, or `None` if it did not converge within the bound.
    pub fn join_all(&self, sim: &mut Sim, progress: &mut dyn FnMut(Progress)) -> Option<u64> {
        let period = sim.config.stabilize_interval;
        let start = sim.now();
        match self.join {
            JoinMode::Concurrent => {
                for i in 1..self.nodes {
                    sim.join(i, 0);
                }
            }
            JoinMode::Sequential => {
                let step = sim.config.latency_max.max(1);
                for i in 1..self.nodes {
                    // Each join starts once the previous one has completed (bounded retries).
                    let deadline = sim.now() + 100 * period;
                    while sim.membership(i) != Membership::Member && sim.now() < deadline {
                        if sim.membership(i) == Membership::Idle {
                            sim.join(i, 0);
                        }
                        sim.run_for(step);
                    }
                    if i % 64 == 0 {
                        progress(Progress {
                            phase: "join",
                            done: i as u64,
                            total: self.nodes as u64,
                        });
                    }
                }
            }
        }
        let joined_rounds = (sim.now() - start).div_ceil(period);
        converge(sim, self.max_rounds, "converge", progress).map(|r| r + joined_rounds)
    }
}

/// Runs whole stabilization periods until the invariant checker passes (re-joining nodes whose
/// join failed). Returns the number of periods, or `None` if `max_rounds` passed first.
pub fn converge(
    sim: &mut Sim,
    max_rounds: u64,
    phase: &'static str,
    progress: &mut dyn FnMut(Progress),
) -> Option<u64> {
    let period = sim.config.stabilize_interval;
    for round in 0..=max_rounds {
        if check_ring(sim).quiescent_ok() && all_joined(sim) {
            return Some(round);
        }
        rejoin_idle(sim);
        sim.run_for(period);
        if round % 16 == 0 {
            progress(Progress {
                phase,
                done: round,
                total: max_rounds,
            });
        }
    }
    None
}

/// Whether every live node is a member (no join still pending).
fn all_joined(sim: &Sim) -> bool {
    (0..sim.slots().len()).all(|i| {
        !sim.is_alive(i) || matches!(sim.membership(i), Membership::Member | Membership::Left)
    })
}

/// Live nodes whose join failed try again through a random live member.
fn rejoin_idle(sim: &mut Sim) {
    let idle: Vec<NodeIndex> = (0..sim.slots().len())
        .filter(|&i| sim.is_alive(i) && sim.membership(i) == Membership::Idle)
        .collect();
    if idle.is_empty() {
        return;
    }
    let members = sim.live_members();
    for i in idle {
        if members.is_empty() {
            break;
        }
        let bootstrap = members[sim.workload.index(members.len())];
        sim.join(i, bootstrap);
    }
}

/// Runs periods until every finger is right, at most `max_rounds`; returns the rounds run.
pub fn run_until_fingers_right(sim: &mut Sim, max_rounds: u64) -> u64 {
    let period = sim.config.stabilize_interval;
    let mut rounds = 0;
    while rounds < max_rounds {
        if rounds % 4 == 0 && finger_accuracy(sim) >= 1.0 {
            break;
        }
        sim.run_for(period);
        rounds += 1;
    }
    rounds
}

/// Crashes `fraction` of the live members, chosen at random; returns how many.
pub fn crash_fraction(sim: &mut Sim, fraction: f64) -> usize {
    let mut members = sim.live_members();
    let count = ((members.len() as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
    let count = count.min(members.len().saturating_sub(1));
    for k in 0..count {
        let j = k + sim.workload.index(members.len() - k);
        members.swap(k, j);
        sim.crash(members[k]);
    }
    count
}

/// Issues `count` lookups of random keys from random live members, evenly spread over
/// `window` of virtual time, with `churn_rate` joins+crashes per stabilization period (a
/// Poisson process), then waits for all of them to finish. Returns their records and the number
/// of churn events.
pub fn spread_lookups(
    sim: &mut Sim,
    count: usize,
    window: Micros,
    churn_rate: f64,
    progress: &mut dyn FnMut(Progress),
) -> (Vec<LookupRecord>, usize) {
    let mut churn_events = 0;
    let period = sim.config.stabilize_interval;
    let slice = sim.config.latency_max.max(1_000);
    let start = sim.now();
    let end = start + window;
    let first_record = sim.lookups.len();
    let mut issued = 0usize;
    let mut churn_rng: Rng = sim.workload.fork();
    let mut lookup_rng: Rng = sim.workload.fork();
    let mut next_churn = if churn_rate > 0.0 {
        start + (churn_rng.exponential(period as f64 / churn_rate)) as Micros
    } else {
        Micros::MAX
    };
    let mut members = sim.live_members();
    let mut members_stale = false;
    let mut t = start;
    while t < end || issued < count {
        t = (t + slice).min(end);
        // Churn events due in this slice.
        while next_churn <= t {
            churn_event(sim, &mut churn_rng);
            churn_events += 1;
            members_stale = true;
            next_churn += (churn_rng.exponential(period as f64 / churn_rate)) as Micros + 1;
        }
        if members_stale {
            members = sim.live_members();
            members_stale = false;
        }
        // Lookups due by t.
        let due = if t >= end {
            count
        } else {
            ((count as u128 * u128::from(t - start)) / u128::from(window.max(1))) as usize
        };
        while issued < due && !members.is_empty() {
            let origin = members[lookup_rng.index(members.len())];
            if sim.is_member(origin) {
                let key = lookup_rng.id();
                sim.lookup(origin, key);
                issued += 1;
            } else {
                members_stale = true;
                members = sim.live_members();
            }
        }
        sim.run_until(t);
        if members.is_empty() {
            break;
        }
        if (issued & 0xffff) == 0 || t >= end {
            progress(Progress {
                phase: "lookups",
                done: issued as u64,
                total: count as u64,
            });
        }
    }
    sim.run_lookups_to_completion(20 * sim.config.rpc_timeout + 10 * period);
    (sim.lookups.split_off(first_record), churn_events)
}

/// One churn event: a new node joins through a random member, or a random member crashes.
fn churn_event(sim: &mut Sim, rng: &mut Rng) {
    let members = sim.live_members();
    if members.is_empty() {
        return;
    }
    if rng.chance(0.5) || members.len() < 2 {
        let bootstrap = members[rng.index(members.len())];
        let i = sim.add_node_auto();
        // During a partition the newcomer is on its bootstrap's side.
        sim.set_group(i, sim.slot(bootstrap).group);
        sim.join(i, bootstrap);
    } else {
        let victim = members[rng.index(members.len())];
        sim.crash(victim);
    }
}

/// Issues `per_node` lookups of random keys from every live member at once and waits for them.
pub fn lookup_from_every_node(sim: &mut Sim, per_node: usize) -> Vec<LookupRecord> {
    let first_record = sim.lookups.len();
    for origin in sim.live_members() {
        for _ in 0..per_node {
            let key = sim.workload.id();
            sim.lookup(origin, key);
        }
    }
    sim.run_lookups_to_completion(20 * sim.config.rpc_timeout + 10 * sim.config.stabilize_interval);
    sim.lookups.split_off(first_record)
}
