//! The file layer's periodic work (shared-directory scan and provider publication, repair) and
//! what it shows about this peer's files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::ProviderRecord;
use super::ops::{Files, lock};
use super::outcome::{NodeFiles, StoredFile};
use crate::id::Id;
use crate::transport::{BlobQuery, TraceCarrier};

impl Files {
    /// Starts the periodic work: shared-directory scan + provider republish, and repair. Both
    /// loops end when the ring service stops.
    pub fn start(self: &Arc<Self>) {
        let files = Arc::clone(self);
        let every = self.ring.config().files.republish_interval;
        tokio::spawn(async move {
            let stopped = files.ring.stopped();
            let publish = async {
                // Publish as soon as the peer is in a ring, then every interval.
                let mut last: Option<Instant> = None;
                let mut check = tokio::time::interval(every.min(Duration::from_millis(500)));
                check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    check.tick().await;
                    let due = last.is_none_or(|t| t.elapsed() >= every);
                    if due && files.ring.readiness().is_empty() {
                        files.publish_shared().await;
                        last = Some(Instant::now());
                    }
                }
            };
            tokio::select! {
                _ = stopped => {}
                _ = publish => {}
            }
        });
        let files = Arc::clone(self);
        let every = self.ring.config().files.repair_interval;
        tokio::spawn(async move {
            let stopped = files.ring.stopped();
            let repair = async {
                let mut interval = tokio::time::interval(every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    if files.ring.readiness().is_empty() {
                        files.repair().await;
                    }
                }
            };
            tokio::select! {
                _ = stopped => {}
                _ = repair => {}
            }
        });
    }

    pub fn node_files(&self) -> NodeFiles {
        let usage = self.store.usage();
        NodeFiles {
            blocks: usage.blocks,
            bytes: usage.bytes,
            shared: lock(&self.shared).files(),
            stored: self
                .store
                .list()
                .into_iter()
                .filter(|m| !m.deleted && !m.is_block())
                .map(|m| StoredFile {
                    name: m.name,
                    id: m.id,
                    size: m.size,
                    sha256: m.sha256,
                })
                .collect(),
        }
    }

    pub fn stored_keys(&self) -> u64 {
        self.store.usage().files
    }

    // ----- maintenance ----------------------------------------------------------------------

    /// Re-scans the shared directory and publishes a provider record for every shared file to
    /// the peer responsible for it.
    pub async fn publish_shared(&self) {
        let config = &self.ring.config().files;
        let (dir, max, block, cut) = (
            config.shared_dir.clone(),
            config.max_file_size,
            config.block_size,
            self.lists.cut(),
        );
        let files = {
            // Rescan a copy: the index in use keeps serving the shared files meanwhile (hashing
            // a large new file takes a while), and a scan that fails leaves it as it was.
            let mut index = lock(&self.shared).clone();
            match tokio::task::spawn_blocking(move || {
                index.rescan(&dir, max, block, cut);
                index
            })
            .await
            {
                Ok(index) => {
                    let files = index.files();
                    *lock(&self.shared) = index;
                    files
                }
                Err(e) => {
                    warn!(error = %e, "the shared directory scan failed; the index stays as it was");
                    lock(&self.shared).files()
                }
            }
        };
        let me = self.me();
        for f in files {
            let id = Id::hash(f.name.as_bytes());
            let record = ProviderRecord {
                name: f.name.clone(),
                id,
                size: f.size,
                sha256: f.sha256.clone(),
                peer_id: me.id,
                peer: me.address.to_string(),
            };
            let Ok(found) = self.ring.lookup(id).await else {
                continue;
            };
            let result = self
                .blob
                .query(
                    &found.node.address,
                    BlobQuery::PutProvider { record },
                    TraceCarrier::current(),
                )
                .await;
            if let Err(e) = result {
                debug!(name = %f.name, error = %e, "could not publish a provider record");
            }
        }
    }

    /// Provider records held here for keys this peer is no longer responsible for (a peer
    /// joined before it) go to the peer now responsible: reads ask the holders of a key, and
    /// the old owner may not be one of them any more. Without this a shared file would be
    /// unfindable until its sharer's next republish. Returns how many records moved.
    pub(super) async fn move_provider_records(&self) -> u64 {
        let now = Instant::now();
        let moving: Vec<ProviderRecord> = {
            let mut providers = lock(&self.providers);
            providers.retain(|_, list| {
                list.retain(|(_, expires)| *expires > now);
                !list.is_empty()
            });
            providers
                .iter()
                .filter(|(id, _)| !self.ring.owns(**id))
                .flat_map(|(_, list)| list.iter().map(|(r, _)| r.clone()))
                .collect()
        };
        let me = self.me();
        let mut moved = 0;
        for record in moving {
            let Ok(found) = self.ring.lookup(record.id).await else {
                continue;
            };
            if found.node.id == me.id {
                continue; // our view of the ring is behind; next round
            }
            let (id, peer_id) = (record.id, record.peer_id);
            let query = BlobQuery::PutProvider { record };
            let sent = self
                .blob
                .query(&found.node.address, query, TraceCarrier::current())
                .await;
            match sent {
                Ok(_) => {
                    moved += 1;
                    if let Some(list) = lock(&self.providers).get_mut(&id) {
                        list.retain(|(r, _)| r.peer_id != peer_id);
                    }
                }
                Err(e) => debug!(%id, error = %e, "could not move a provider record"),
            }
        }
        moved
    }
}
