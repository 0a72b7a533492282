//! The invariant checker: compares every node's routing state with the ground truth the
//! simulator knows (which nodes are alive, which are ring members).
//!
//! Invariants (Zave's, plus Chord's quiescent properties):
//! - every live member has a live successor in its successor list;
//! - following first-live-successor pointers from any live member visits every live member
//!   exactly once, in identifier order, and comes back (one ordered ring);
//! - after quiescence, every predecessor is the true predecessor and every successor list holds
//!   the next r members;
//! - fingers (reported as a fraction) point at the true successor of their start.

use std::collections::BTreeMap;

use super::{NodeIndex, Sim};
use crate::id::{BITS, Id};

/// What the checker found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RingCheck {
    /// Live members checked.
    pub live: usize,
    /// Members with no live entry in their successor list.
    pub no_live_successor: usize,
    /// Members whose first live successor is not the next member in identifier order.
    pub wrong_successor: usize,
    /// Members whose predecessor is not the previous member in identifier order.
    pub wrong_predecessor: usize,
    /// Members whose successor list is not the next min(r, N-1) members (then themselves, in a
    /// ring shorter than r).
    pub wrong_successor_list: usize,
    /// Whether the walk along first-live-successor pointers is one ordered cycle of all members.
    pub walk_ok: bool,
    /// A few examples of violations, for test failure messages.
    pub examples: Vec<String>,
}

impl RingCheck {
    /// One correct ordered ring in which everyone has a live successor.
    pub fn ring_ok(&self) -> bool {
        self.no_live_successor == 0 && self.wrong_successor == 0 && self.walk_ok
    }

    /// The ring is correct and every predecessor and successor list is right: the quiescent
    /// state.
    pub fn quiescent_ok(&self) -> bool {
        self.ring_ok() && self.wrong_predecessor == 0 && self.wrong_successor_list == 0
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 5 {
            self.examples.push(text);
        }
    }
}

/// Checks the ring formed by all live members.
pub fn check_ring(sim: &Sim) -> RingCheck {
    check_among(sim, sim.members().clone())
}

/// Checks the ring formed by the live members of one partition group: during a partition each
/// side should be a consistent ring of its own.
pub fn check_group(sim: &Sim, group: u32) -> RingCheck {
    let nodes: Vec<NodeIndex> = sim
        .members()
        .values()
        .copied()
        .filter(|&i| sim.slot(i).group == group)
        .collect();
    check_nodes(sim, &nodes)
}

/// Checks the ring formed by the live members among `nodes` (one side of a former partition).
pub fn check_nodes(sim: &Sim, nodes: &[NodeIndex]) -> RingCheck {
    let members = nodes
        .iter()
        .filter(|&&i| sim.is_member(i))
        .map(|&i| (sim.slot(i).node.id(), i))
        .collect();
    check_among(sim, members)
}

fn check_among(sim: &Sim, members: BTreeMap<Id, NodeIndex>) -> RingCheck {
    let mut report = RingCheck {
        live: members.len(),
        walk_ok: true,
        ..RingCheck::default()
    };
    if members.is_empty() {
        return report;
    }
    let order: Vec<(Id, NodeIndex)> = members.iter().map(|(id, i)| (*id, *i)).collect();
    let n = order.len();
    let first_live = |i: NodeIndex| -> Option<Id> {
        sim.slot(i)
            .node
            .successors()
            .iter()
            .find(|p| members.contains_key(&p.id))
            .map(|p| p.id)
    };
    for (k, &(id, i)) in order.iter().enumerate() {
        let true_next = order[(k + 1) % n].0;
        let true_prev = order[(k + n - 1) % n].0;
        match first_live(i) {
            None => {
                report.no_live_successor += 1;
                report.example(format!("{} has no live successor", id.short()));
            }
            Some(s) if s != true_next => {
                report.wrong_successor += 1;
                report.example(format!(
                    "{}: first live successor {} but the next member is {}",
                    id.short(),
                    s.short(),
                    true_next.short()
                ));
            }
            Some(_) => {}
        }
        let node = &sim.slot(i).node;
        let r = node.config().successors;
        let expected = (1..=r.min(n - 1))
            .map(|d| order[(k + d) % n].0)
            .chain((n - 1 < r).then_some(id));
        if !node.successors().iter().map(|p| p.id).eq(expected) {
            report.wrong_successor_list += 1;
            report.example(format!("{}: successor list is stale", id.short()));
        }
        let pred = node.predecessor().map(|p| p.id);
        if pred != Some(true_prev) {
            report.wrong_predecessor += 1;
            report.example(format!(
                "{}: predecessor {:?} but the previous member is {}",
                id.short(),
                pred.map(Id::short),
                true_prev.short()
            ));
        }
    }
    // The walk itself: from the lowest member, n steps must visit every member once, in order,
    // and come back to the start.
    let start = order[0];
    let mut at = start;
    for k in 1..=n {
        match first_live(at.1) {
            Some(next) if next == order[k % n].0 => at = order[k % n],
            _ => {
                report.walk_ok = false;
                break;
            }
        }
    }
    report.walk_ok &= at.0 == start.0;
    report
}

/// Fraction of finger entries (over all live members, all 160 fingers) that point at the true
/// successor of their start. Fingers only affect speed, never correctness.
pub fn finger_accuracy(sim: &Sim) -> f64 {
    let members = sim.members();
    if members.is_empty() {
        return 1.0;
    }
    let mut correct = 0u64;
    let mut total = 0u64;
    for (&id, &i) in members {
        let fingers = sim.slot(i).node.fingers();
        for (k, finger) in fingers.iter().enumerate().take(BITS) {
            let start = id.add_pow2(k);
            let truth = members
                .range(start..)
                .next()
                .or_else(|| members.iter().next())
                .map(|(t, _)| *t);
            total += 1;
            // A lone member keeps no fingers: its successor is itself.
            let expected = truth.filter(|t| *t != id);
            if finger.as_ref().map(|p| p.id) == expected {
                correct += 1;
            }
        }
    }
    correct as f64 / total as f64
}
