//! Keeping copies where they belong: repair (each peer's keys on its successors, keys it is no
//! longer responsible for to the peer that is), and the hand-off before a graceful leave.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::field::Empty;
use tracing::{Instrument, debug, info, info_span, warn};

use super::FileMeta;
use super::hlc::wall_millis;
use super::ops::Files;
use crate::events::decide;
use crate::id::Id;
use crate::ring::Peer;
use crate::runtime::ServiceError;
use crate::telemetry;
use crate::transport::{Body, TraceCarrier, missing};
use crate::wire::files::Version;

impl Files {
    /// Makes every key this peer holds be where it belongs: keys it is responsible for get
    /// copies on its successors; keys it is not responsible for go to the responsible peer,
    /// and the local copy is dropped when this peer is not one of their holders any more.
    pub async fn repair(&self) {
        let span = info_span!(
            "files.repair",
            repair.replicas_pushed = Empty,
            repair.keys_handed = Empty,
            repair.copies_dropped = Empty,
        );
        telemetry::mark_trace(&span);
        let done = self.repair_round().instrument(span.clone()).await;
        span.record("repair.replicas_pushed", done.replicas_pushed);
        span.record("repair.keys_handed", done.keys_handed);
        span.record("repair.copies_dropped", done.copies_dropped);
        let event =
            decide::repair_done(done.replicas_pushed, done.keys_handed, done.copies_dropped);
        if let Some(fact) = event {
            self.ring.events().report(fact);
        }
        if done.changed_anything() {
            span.in_scope(|| {
                info!(
                    replicas_pushed = done.replicas_pushed,
                    keys_handed = done.keys_handed,
                    copies_dropped = done.copies_dropped,
                    provider_records_moved = done.records_moved,
                    replica_deficit = done.deficit,
                    "repair done"
                )
            });
        }
    }

    /// One repair cycle; what it changed.
    async fn repair_round(&self) -> RepairDone {
        let mut done = RepairDone {
            records_moved: self.move_provider_records().await,
            ..RepairDone::default()
        };
        let ttl = self.ring.config().files.tombstone_ttl.as_millis() as u64;
        let store = Arc::clone(&self.store);
        let before = wall_millis().saturating_sub(ttl);
        let _ = tokio::task::spawn_blocking(move || store.expire_tombstones(before)).await;
        done.block_references = self.refresh_block_leases().await;
        self.collect_blocks().await;
        // A block nobody referenced for half the TTL is on its way out: copying it to a holder
        // that already dropped it would give it a fresh lease there, and the copies of an
        // unreferenced block would keep bringing each other back (repair one way, hand-off
        // the other) instead of being collected. A block still referenced is touched every
        // round, so it is never left out for long.
        let fading =
            std::time::Instant::now().checked_sub(self.ring.config().files.tombstone_ttl / 2);
        let mut entries = self.store.list();
        entries.retain(|m| {
            !m.is_block() || fading.is_none_or(|f| !self.store.untouched_since(m.id, f))
        });
        if entries.is_empty() {
            self.ring.metrics().replica_deficit.set(0);
            return done;
        }
        let me = self.me();
        let (mine, others): (Vec<FileMeta>, Vec<FileMeta>) =
            entries.into_iter().partition(|m| self.ring.owns(m.id));

        // Keys we are responsible for: our successors hold the copies.
        let want = self.replicas() - 1;
        let successors: Vec<Peer> = self
            .ring
            .successors()
            .into_iter()
            .filter(|p| p.id != me.id)
            .take(want)
            .collect();
        let mut copies: HashMap<Id, usize> = HashMap::new();
        for s in &successors {
            let have: Vec<(Id, Version)> = mine.iter().map(|m| (m.id, m.version)).collect();
            let Ok(missing) = missing(&*self.blob, &s.address, have).await else {
                continue;
            };
            for m in &mine {
                if !missing.contains(&m.id) {
                    *copies.entry(m.id).or_default() += 1;
                    continue;
                }
                if self.push(s, m).await {
                    *copies.entry(m.id).or_default() += 1;
                    self.ring.metrics().replica_repairs.inc();
                    done.replicas_pushed += 1;
                }
            }
        }
        let deficit = mine
            .iter()
            .filter(|m| !m.deleted && copies.get(&m.id).copied().unwrap_or(0) < want)
            .count();
        self.ring.metrics().replica_deficit.set(deficit as i64);
        done.deficit = deficit;

        // Keys we are not responsible for (we were, or we hold a copy).
        let groups = self.group_by_placement(others, |m| m.id).await;
        for (holders, metas) in groups {
            self.reconcile_with_primary(&me, &holders, metas, &mut done)
                .await;
        }
        done
    }

    /// `items` grouped by the peers that should hold their keys (`key`), in ring order from
    /// this peer: one lookup serves every following key up to the peer it found (they share
    /// that peer), so the cost is one lookup per responsible peer, not one per key. Keys whose
    /// lookup fails are left out (the next round retries).
    pub(super) async fn group_by_placement<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> Id,
    ) -> Vec<(Vec<Peer>, Vec<T>)> {
        let me = self.me();
        items.sort_by_key(|t| me.id.distance_to(key(t)));
        let mut groups: Vec<(Vec<Peer>, Vec<T>)> = Vec::new();
        let mut current: Option<(Id, Vec<Peer>)> = None;
        for t in items {
            let id = key(&t);
            let reuse = current.as_ref().is_some_and(|(from, holders)| {
                holders
                    .first()
                    .is_some_and(|r| id == *from || id.in_half_open(*from, r.id))
            });
            if !reuse {
                let Ok(found) = self.ring.lookup(id).await else {
                    current = None;
                    continue;
                };
                current = Some((id, self.placement(&found)));
                if let Some((_, holders)) = &current {
                    groups.push((holders.clone(), Vec::new()));
                }
            }
            if let Some((_, list)) = groups.last_mut() {
                list.push(t);
            }
        }
        groups
    }

    /// Makes sure the responsible peer (`holders[0]`) has our versions of `metas`, then drops
    /// our copies if we are not one of the holders.
    async fn reconcile_with_primary(
        &self,
        me: &Peer,
        holders: &[Peer],
        metas: Vec<FileMeta>,
        done: &mut RepairDone,
    ) {
        let Some(primary) = holders.first() else {
            return;
        };
        if primary.id == me.id {
            return; // our view of the ring is behind; next round
        }
        let have: Vec<(Id, Version)> = metas.iter().map(|m| (m.id, m.version)).collect();
        let Ok(missing) = missing(&*self.blob, &primary.address, have).await else {
            return;
        };
        let keep = holders.iter().any(|h| h.id == me.id);
        let (mut keys, mut bytes) = (0, 0);
        for m in metas {
            let delivered = if missing.contains(&m.id) {
                let ok = self.push(primary, &m).await;
                if ok {
                    debug!(name = %m.name, to = %primary.address, "handed a key to the peer now responsible for it");
                    self.ring.metrics().handoff_bytes.inc_by(m.size);
                    done.keys_handed += 1;
                    keys += 1;
                    bytes += m.size;
                }
                ok
            } else {
                true
            };
            if delivered && !keep {
                debug!(name = %m.name, "dropping a copy this peer no longer holds");
                self.remove_copy(&m).await;
                done.copies_dropped += 1;
            }
        }
        if let Some(fact) = decide::range_handed_off(primary, keys, bytes) {
            self.ring.events().report(fact);
        }
    }

    /// Sends our copy of `m` to `to`; true when `to` now holds that version (or a newer one).
    pub(super) async fn push(&self, to: &Peer, m: &FileMeta) -> bool {
        let body = if !m.has_content() {
            None
        } else {
            let store = Arc::clone(&self.store);
            let id = m.id;
            match tokio::task::spawn_blocking(move || store.open_content(id)).await {
                Ok(Ok(Some((meta, path)))) if meta.version == m.version => {
                    Some(Body::from_file(path, meta.size))
                }
                _ => return false,
            }
        };
        match self
            .blob
            .put(&to.address, m.clone(), body, TraceCarrier::current())
            .await
        {
            Ok(reply) => reply.holds(m) || reply.current.version > m.version,
            Err(e) => {
                debug!(name = %m.name, to = %to.address, error = %e, "copy not delivered");
                false
            }
        }
    }

    /// Leaves the ring gracefully: keys to the successor first, then the ring itself.
    pub async fn leave(&self) -> Result<(), ServiceError> {
        let span = info_span!("peer.leave");
        telemetry::mark_trace(&span);
        self.leave_inner().instrument(span).await
    }

    async fn leave_inner(&self) -> Result<(), ServiceError> {
        // From now on this peer refuses new copies (the node decides: it is handing off), so
        // that neighbours leaving at the same moment hand their keys past it.
        if self.ring.begin_hand_off().await {
            self.hand_off().await;
        }
        self.ring.leave().await
    }

    /// Before a graceful leave: give every key to the successor, which takes over our range.
    /// A successor that refuses (it is leaving too) or does not answer is skipped for the next
    /// one in the successor list.
    pub async fn hand_off(&self) {
        let span = info_span!(
            "files.handoff",
            handoff.keys = Empty,
            handoff.failed = Empty
        );
        let (keys, failed) = self.hand_off_inner().instrument(span.clone()).await;
        span.record("handoff.keys", keys);
        span.record("handoff.failed", failed);
    }

    /// The hand-off; how many keys were handed over, and how many could not be.
    async fn hand_off_inner(&self) -> (usize, usize) {
        let me = self.me();
        let mut pending = self.store.list();
        let others: Vec<Peer> = self
            .ring
            .successors()
            .into_iter()
            .filter(|p| p.id != me.id)
            .collect();
        if others.is_empty() {
            // Not a failure: there is nobody to hand anything to.
            if !pending.is_empty() {
                let files = pending.iter().filter(|m| !m.deleted).count();
                info!(
                    files,
                    "the last peer of the ring is leaving: its files leave with it"
                );
            }
            return (0, 0);
        }
        let mut keys = 0;
        for successor in others {
            if pending.is_empty() {
                break;
            }
            let have: Vec<(Id, Version)> = pending.iter().map(|m| (m.id, m.version)).collect();
            let missing = match missing(&*self.blob, &successor.address, have).await {
                Ok(m) => m,
                Err(e) => {
                    warn!(to = %successor.address, error = %e, "hand-off: successor unreachable; trying the next");
                    continue;
                }
            };
            let mut failed = Vec::new();
            let mut bytes = 0;
            for m in pending {
                if !missing.contains(&m.id) {
                    continue;
                }
                if self.push(&successor, &m).await {
                    bytes += m.size;
                } else {
                    failed.push(m);
                }
            }
            let handed = missing.len() - failed.len();
            keys += handed;
            self.ring.metrics().handoff_bytes.inc_by(bytes);
            info!(keys = handed, bytes, to = %successor.address, successor = %successor.id, "key range handed off");
            if let Some(fact) = decide::range_handed_off(&successor, handed as u64, bytes) {
                self.ring.events().report(fact);
            }
            pending = failed;
        }
        if !pending.is_empty() {
            // One line, not one per key; a tombstone that stays behind is no loss of data.
            let files: Vec<&str> = pending
                .iter()
                .filter(|m| !m.deleted)
                .map(|m| m.name.as_str())
                .collect();
            warn!(
                files = files.len(),
                tombstones = pending.len() - files.len(),
                names = ?files.iter().take(10).collect::<Vec<_>>(),
                "hand-off incomplete: no successor took these keys; their other copies remain"
            );
        }
        (keys, pending.len())
    }

    /// Drops our copy of `m` (off the async threads), if it is still that version.
    async fn remove_copy(&self, m: &FileMeta) {
        let store = Arc::clone(&self.store);
        let m = m.clone();
        let _ = tokio::task::spawn_blocking(move || store.remove_if(&m)).await;
        self.update_usage();
    }
}

/// What one repair cycle changed.
#[derive(Default)]
struct RepairDone {
    /// Copies sent to our successors for keys we are responsible for.
    replicas_pushed: u64,
    /// Keys given to the peer now responsible for them.
    keys_handed: u64,
    /// Copies this peer no longer holds, dropped after the responsible peer confirmed them.
    copies_dropped: u64,
    /// Provider records given to the peer now responsible for their key.
    records_moved: u64,
    /// Our keys still short of copies.
    deficit: usize,
    /// Blocks of our live manifests reported still referenced to their holders.
    block_references: usize,
}

impl RepairDone {
    fn changed_anything(&self) -> bool {
        self.replicas_pushed + self.keys_handed + self.copies_dropped + self.records_moved > 0
    }
}
