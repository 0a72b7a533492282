//! What the runtime does with the ring's events: metrics, log lines, the published ring
//! events (`crate::events`), waking waiters, and remembering the ring in the store directory.

use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::commands::JoinError;

use super::driver::Driver;

use crate::ring::{Peer, RingEvent, RingId};
use crate::telemetry;

impl Driver {
    pub(super) fn on_event(&mut self, event: RingEvent) {
        self.svc.events.ring(&event);
        let m = &self.svc.metrics;
        match event {
            RingEvent::Created { ring_id, restarted } => {
                if restarted {
                    info!(%ring_id, "restarted ring {ring_id} (the ring this store remembers)");
                } else {
                    info!(%ring_id, "founded a new ring");
                }
                self.set_ring_info(ring_id);
            }
            RingEvent::Joined { ring_id, successor } => {
                info!(%ring_id, %successor, "joined the ring");
                m.joins.inc();
                self.set_ring_info(ring_id);
                for tx in self.joins.drain(..) {
                    let _ = tx.send(Ok(()));
                }
            }
            RingEvent::JoinFailed { failure } => {
                for tx in self.joins.drain(..) {
                    let _ = tx.send(Err(JoinError::Failed(failure.clone())));
                }
            }
            RingEvent::SuccessorChanged { old, new } => {
                info!(old = %show(&old), %new, "successor changed");
                m.successor_changes.inc();
            }
            RingEvent::PredecessorChanged { old, new } => {
                info!(old = %show(&old), new = %show(&new), "predecessor changed (key range changed)");
                m.predecessor_changes.inc();
            }
            RingEvent::PeerFailed { peer } => {
                warn!(%peer, "peer failed");
                m.peer_failures.inc();
            }
            RingEvent::PeerLeft { peer } => {
                info!(%peer, "peer left");
                m.peers_left.inc();
            }
            RingEvent::Stabilized { .. } => {
                m.stabilization_rounds.inc();
                self.svc
                    .last_stabilized_ms
                    .store(self.svc.elapsed_ms().max(1), Ordering::Relaxed);
            }
            RingEvent::MergeStarted { contact, trigger } => {
                let trigger = trigger.as_str();
                info!(%contact, trigger, "ring unification started: {contact} is alive outside this ring");
                m.merges_started.with_label_values(&[trigger]).inc();
                self.merges.insert(contact.id, std::time::Instant::now());
            }
            RingEvent::MergeDone { contact, adopted } => {
                let outcome = if adopted.is_some() {
                    "merged"
                } else {
                    "unchanged"
                };
                m.merges_completed.with_label_values(&[outcome]).inc();
                if let Some(started) = self.merges.remove(&contact.id) {
                    m.merge_duration.observe(started.elapsed().as_secs_f64());
                }
                match adopted {
                    Some(successor) => {
                        info!(%contact, %successor, "rings merged: the successor from the other ring is {successor}")
                    }
                    None => info!(%contact, "ring unification done, no closer successor there"),
                }
            }
            RingEvent::ForeignRing { peer, ring_id } => {
                warn!(%peer, %ring_id, "peer {peer} answers from another ring ({ring_id}): not merged automatically (a configuration error, not a partition): make one ring's peers leave and join the other");
                m.foreign_rings
                    .with_label_values(&[&ring_id.to_string()])
                    .set(1);
            }
            RingEvent::RingRenamed { old, new } => {
                info!(%old, %new, "this ring ({old}) was merged into ring {new} on an operator's request: took its id over");
                m.merges_started.with_label_values(&["explicit"]).inc();
                for id in [old, new] {
                    let _ = m.foreign_rings.remove_label_values(&[&id.to_string()]);
                }
                self.set_ring_info(new);
            }
            RingEvent::RingsMerged { absorbed } => {
                info!(%absorbed, "rings merged: peers of ring {absorbed} took this ring's id over");
                let _ = m
                    .foreign_rings
                    .remove_label_values(&[&absorbed.to_string()]);
            }
            RingEvent::Left => {
                info!("left the ring");
                m.leaves.inc();
                self.merges.clear();
                m.ring_info.reset();
                telemetry::export::set_ring_id(None);
                for tx in self.leaves.drain(..) {
                    let _ = tx.send(());
                }
            }
        }
    }

    fn set_ring_info(&self, ring_id: RingId) {
        telemetry::export::set_ring_id(Some(ring_id.to_string()));
        let node_id = self.node.id().to_string();
        self.svc.metrics.ring_info.reset();
        self.svc
            .metrics
            .ring_info
            .with_label_values(&[&ring_id.to_string(), &node_id])
            .set(1);
    }
}

/// A peer or "none", for log lines.
fn show(p: &Option<Peer>) -> String {
    p.as_ref()
        .map_or_else(|| "none".to_owned(), Peer::to_string)
}
