//! File operations across the ring: upload, download, head, locations, delete; provider
//! records; replica repair; hand-off on leave.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tracing::field::Empty;
use tracing::{Instrument, debug, info, info_span, warn};

use super::shared::{SharedFile, SharedIndex, path_of};
use super::store::{PutOutcome, Store, StoreError};
use super::{FileMeta, NameError, ProviderRecord, Version, sha256_hex, validate_name};
use crate::id::Id;
use crate::ring::{LookupResult, Peer};
use crate::service::{PeerView, Service, ServiceError};
use crate::telemetry;
use crate::transport::{FileHandler, FileTransport, ObjectInfo, PutReply, Transport};

/// Why a file operation failed, as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("file {0:?} not found")]
    NotFound(String),
    #[error("{0}")]
    Ring(#[from] ServiceError),
    #[error("no peer responsible for {name:?} could store it: {detail}")]
    Unavailable { name: String, detail: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The answer to an upload.
#[derive(Clone, Debug, Serialize)]
pub struct Uploaded {
    pub name: String,
    pub id: Id,
    pub size: u64,
    pub sha256: String,
    pub node: PeerView,
    pub replicas: usize,
    /// It replaced an existing version (the API answers 200 rather than 201).
    #[serde(skip)]
    pub replaced: bool,
}

/// `GET /v1/files/{name}/locations`.
#[derive(Clone, Debug, Serialize)]
pub struct Locations {
    pub name: String,
    pub id: Id,
    pub node: PeerView,
    pub replicas: Vec<PeerView>,
    pub providers: Vec<PeerView>,
    pub hops: u32,
}

/// `GET /v1/node/files`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeFiles {
    pub shared: Vec<SharedFile>,
    pub stored: Vec<StoredFile>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoredFile {
    pub name: String,
    pub id: Id,
    pub size: u64,
    pub sha256: String,
}

/// The file layer of one peer.
pub struct Files<T: Transport + FileTransport> {
    ring: Arc<Service<T>>,
    store: Store,
    shared: Mutex<SharedIndex>,
    /// Provider records for keys this peer is responsible for, with their lease expiry.
    providers: Mutex<HashMap<Id, Vec<(ProviderRecord, Instant)>>>,
    /// A graceful leave is under way: refuse new copies.
    leaving: AtomicBool,
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<T: Transport + FileTransport> Files<T> {
    pub fn open(ring: Arc<Service<T>>) -> Result<Arc<Files<T>>, StoreError> {
        let store = Store::open(&ring.config().files.store_dir)?;
        let files = Arc::new(Files {
            ring,
            store,
            shared: Mutex::new(SharedIndex::default()),
            providers: Mutex::new(HashMap::new()),
            leaving: AtomicBool::new(false),
        });
        files.update_usage();
        Ok(files)
    }

    fn replicas(&self) -> usize {
        self.ring.config().ring.replicas.max(1)
    }

    fn me(&self) -> Peer {
        self.ring.me()
    }

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

    // ----- the user's operations ----------------------------------------------------------

    /// The peers that should hold `id`: the responsible one, then its successors.
    fn placement(&self, r: &LookupResult) -> Vec<Peer> {
        let mut out: Vec<Peer> = Vec::new();
        for p in std::iter::once(&r.node).chain(&r.successors) {
            if out.len() >= self.replicas() {
                break;
            }
            if !out.iter().any(|q| q.id == p.id) {
                out.push(p.clone());
            }
        }
        out
    }

    pub async fn upload(&self, name: &str, data: Bytes) -> Result<Uploaded, FilesError> {
        validate_name(name)?;
        let id = Id::hash(name.as_bytes());
        let meta = FileMeta {
            name: name.to_string(),
            id,
            size: data.len() as u64,
            sha256: sha256_hex(&data),
            version: Version {
                millis: now_millis(),
                origin: self.me().id,
            },
            deleted: false,
        };
        let found = self.ring.lookup(id).await?;
        let targets = self.placement(&found);
        let puts = targets
            .iter()
            .map(|t| self.put_at(t, meta.clone(), Some(data.clone())));
        let results = futures_util::future::join_all(puts).await;
        let mut stored_at: Vec<&Peer> = Vec::new();
        let mut replaced = false;
        let mut errors = Vec::new();
        for (t, r) in targets.iter().zip(results) {
            match r {
                Ok(reply) => {
                    replaced |= reply.replaced;
                    stored_at.push(t);
                }
                Err(e) => errors.push(format!("{}: {e}", t.address)),
            }
        }
        let Some(node) = stored_at.first() else {
            return Err(FilesError::Unavailable {
                name: name.to_string(),
                detail: errors.join("; "),
            });
        };
        if !errors.is_empty() {
            warn!(%name, ?errors, "some copies could not be stored; repair will retry");
        }
        info!(%name, %id, size = meta.size, node = %node.address, copies = stored_at.len(), "file stored");
        Ok(Uploaded {
            name: name.to_string(),
            id,
            size: meta.size,
            sha256: meta.sha256,
            node: PeerView::from(*node),
            replicas: stored_at.len() - 1,
            replaced,
        })
    }

    /// Stores at one peer (locally when it is this one).
    async fn put_at(
        &self,
        to: &Peer,
        meta: FileMeta,
        data: Option<Bytes>,
    ) -> Result<PutReply, String> {
        if to.id == self.me().id {
            return self.put_local(meta, data);
        }
        self.ring
            .transport()
            .put_object(&to.address, &meta, data)
            .await
            .map_err(|e| e.to_string())
    }

    fn put_local(&self, meta: FileMeta, data: Option<Bytes>) -> Result<PutReply, String> {
        let outcome = self
            .store
            .put(meta.clone(), data.as_deref())
            .map_err(|e| e.to_string())?;
        self.update_usage();
        Ok(match outcome {
            PutOutcome::Stored { replaced } => PutReply {
                stored: true,
                replaced: replaced.is_some(),
                current: meta,
            },
            PutOutcome::Stale { current } => PutReply {
                stored: false,
                replaced: false,
                current,
            },
        })
    }

    async fn get_at(&self, from: &Peer, id: Id) -> Result<Option<(FileMeta, Bytes)>, String> {
        if from.id == self.me().id {
            return self
                .store
                .read(id)
                .map(|o| o.map(|(m, d)| (m, Bytes::from(d))))
                .map_err(|e| e.to_string());
        }
        self.ring
            .transport()
            .get_object(&from.address, id)
            .await
            .map_err(|e| e.to_string())
    }

    async fn info_at(&self, at: &Peer, id: Id) -> Result<ObjectInfo, String> {
        if at.id == self.me().id {
            return Ok(self.object_info(id));
        }
        self.ring
            .transport()
            .object_info(&at.address, id)
            .await
            .map_err(|e| e.to_string())
    }

    /// Downloads `name`: from the responsible peer, else a replica, else a provider; the
    /// content is checked against its SHA-256 before it is returned.
    pub async fn download(&self, name: &str) -> Result<(FileMeta, Bytes), FilesError> {
        validate_name(name)?;
        let id = Id::hash(name.as_bytes());
        let found = self.ring.lookup(id).await?;
        // Every peer the answer names, not only the first `replicas`: right after peers left,
        // the answer's list may still start with departed ones.
        let holders: Vec<Peer> = std::iter::once(found.node.clone())
            .chain(found.successors.iter().cloned())
            .collect();
        for holder in &holders {
            match self.get_at(holder, id).await {
                Ok(Some((meta, data))) if sha256_hex(&data) == meta.sha256 => {
                    return Ok((meta, data));
                }
                Ok(Some(_)) => warn!(%name, peer = %holder.address, "copy failed its sha256 check"),
                Ok(None) => {}
                Err(e) => debug!(%name, peer = %holder.address, error = %e, "copy unavailable"),
            }
        }
        // No stored copy: ask the providers.
        for holder in &holders {
            let Ok(info) = self.info_at(holder, id).await else {
                continue;
            };
            if info.meta.as_ref().is_some_and(|m| m.deleted) {
                break;
            }
            for p in info.providers {
                if let Some(data) = self.fetch_shared(&p).await {
                    return Ok((provided_meta(&p), data));
                }
            }
            break;
        }
        Err(FilesError::NotFound(name.to_string()))
    }

    async fn fetch_shared(&self, p: &ProviderRecord) -> Option<Bytes> {
        let data = if p.peer_id == self.me().id {
            self.get_shared(&p.name)
        } else {
            let address = crate::ring::Address::new(&p.peer);
            match self.ring.transport().get_shared(&address, &p.name).await {
                Ok(d) => d,
                Err(e) => {
                    debug!(peer = %p.peer, error = %e, "provider unreachable");
                    None
                }
            }
        }?;
        (sha256_hex(&data) == p.sha256).then_some(data)
    }

    /// The metadata of `name` without its content (HEAD).
    pub async fn head(&self, name: &str) -> Result<FileMeta, FilesError> {
        validate_name(name)?;
        let id = Id::hash(name.as_bytes());
        let found = self.ring.lookup(id).await?;
        for holder in self.placement(&found) {
            let Ok(info) = self.info_at(&holder, id).await else {
                continue;
            };
            match info.meta {
                Some(m) if !m.deleted => return Ok(m),
                Some(_) => break,
                None => {}
            }
            if let Some(p) = info.providers.first() {
                return Ok(provided_meta(p));
            }
        }
        Err(FilesError::NotFound(name.to_string()))
    }

    pub async fn locations(&self, name: &str) -> Result<Locations, FilesError> {
        validate_name(name)?;
        let id = Id::hash(name.as_bytes());
        let found = self.ring.lookup(id).await?;
        let holders = self.placement(&found);
        let mut providers = Vec::new();
        let mut replicas = Vec::new();
        let mut any = false;
        for (k, holder) in holders.iter().enumerate() {
            let Ok(info) = self.info_at(holder, id).await else {
                continue;
            };
            let live = info.meta.as_ref().is_some_and(|m| !m.deleted);
            any |= live;
            if k > 0 && live {
                replicas.push(PeerView::from(holder));
            }
            for p in info.providers {
                if !providers.iter().any(|v: &PeerView| v.id == p.peer_id) {
                    any = true;
                    providers.push(PeerView {
                        id: p.peer_id,
                        address: crate::ring::Address::new(&p.peer),
                    });
                }
            }
        }
        if !any {
            return Err(FilesError::NotFound(name.to_string()));
        }
        Ok(Locations {
            name: name.to_string(),
            id,
            node: PeerView::from(&found.node),
            replicas,
            providers,
            hops: found.hops,
        })
    }

    /// Deletes uploaded content: a tombstone goes to every holder.
    pub async fn delete(&self, name: &str) -> Result<(), FilesError> {
        validate_name(name)?;
        let id = Id::hash(name.as_bytes());
        let found = self.ring.lookup(id).await?;
        let holders = self.placement(&found);
        let mut exists = false;
        for holder in &holders {
            if let Ok(info) = self.info_at(holder, id).await
                && info.meta.as_ref().is_some_and(|m| !m.deleted)
            {
                exists = true;
                break;
            }
        }
        if !exists {
            return Err(FilesError::NotFound(name.to_string()));
        }
        let tombstone = FileMeta {
            name: name.to_string(),
            id,
            size: 0,
            sha256: String::new(),
            version: Version {
                millis: now_millis(),
                origin: self.me().id,
            },
            deleted: true,
        };
        let puts = holders
            .iter()
            .map(|h| self.put_at(h, tombstone.clone(), None));
        let results = futures_util::future::join_all(puts).await;
        if results.iter().all(Result::is_err) {
            return Err(FilesError::Unavailable {
                name: name.to_string(),
                detail: "no holder accepted the delete".into(),
            });
        }
        info!(%name, %id, "file deleted");
        Ok(())
    }

    pub fn node_files(&self) -> NodeFiles {
        NodeFiles {
            shared: lock(&self.shared).files(),
            stored: self
                .store
                .list()
                .into_iter()
                .filter(|m| !m.deleted)
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
        self.store.usage().0
    }

    // ----- maintenance ----------------------------------------------------------------------

    /// Re-scans the shared directory and publishes a provider record for every shared file to
    /// the peer responsible for it.
    pub async fn publish_shared(&self) {
        let config = &self.ring.config().files;
        let (dir, max) = (config.shared_dir.clone(), config.max_file_size);
        let files = {
            let mut index = std::mem::take(&mut *lock(&self.shared));
            let index = tokio::task::spawn_blocking(move || {
                index.rescan(&dir, max);
                index
            })
            .await
            .unwrap_or_default();
            let files = index.files();
            *lock(&self.shared) = index;
            files
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
            let result = if found.node.id == me.id {
                self.put_provider(record);
                Ok(())
            } else {
                self.ring
                    .transport()
                    .put_provider(&found.node.address, &record)
                    .await
            };
            if let Err(e) = result {
                debug!(name = %f.name, error = %e, "could not publish a provider record");
            }
        }
    }

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
        if done.changed_anything() {
            span.in_scope(|| {
                info!(
                    replicas_pushed = done.replicas_pushed,
                    keys_handed = done.keys_handed,
                    copies_dropped = done.copies_dropped,
                    replica_deficit = done.deficit,
                    "repair done"
                )
            });
        }
    }

    /// One repair cycle; what it changed.
    async fn repair_round(&self) -> RepairDone {
        let mut done = RepairDone::default();
        let ttl = self.ring.config().files.tombstone_ttl.as_millis() as u64;
        self.store
            .expire_tombstones(now_millis().saturating_sub(ttl));
        let entries = self.store.list();
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
            let Ok(missing) = self.ring.transport().missing(&s.address, &have).await else {
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

        // Keys we are not responsible for (we were, or we hold a copy). In ring order, one
        // lookup serves every following key up to the peer it found (they share that peer),
        // so the cost is one lookup per responsible peer, not one per key.
        let mut others = others;
        others.sort_by_key(|m| me.id.distance_to(m.id));
        let mut groups: Vec<(Vec<Peer>, Vec<FileMeta>)> = Vec::new();
        let mut current: Option<(Id, Vec<Peer>)> = None;
        for m in others {
            let reuse = current.as_ref().is_some_and(|(from, holders)| {
                holders
                    .first()
                    .is_some_and(|r| m.id == *from || m.id.in_half_open(*from, r.id))
            });
            if !reuse {
                let Ok(found) = self.ring.lookup(m.id).await else {
                    current = None;
                    continue;
                };
                current = Some((m.id, self.placement(&found)));
                if let Some((_, holders)) = &current {
                    groups.push((holders.clone(), Vec::new()));
                }
            }
            if let Some((_, list)) = groups.last_mut() {
                list.push(m);
            }
        }
        for (holders, metas) in groups {
            self.reconcile_with_primary(&me, &holders, metas, &mut done)
                .await;
        }
        done
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
        let Ok(missing) = self.ring.transport().missing(&primary.address, &have).await else {
            return;
        };
        let keep = holders.iter().any(|h| h.id == me.id);
        for m in metas {
            let delivered = if missing.contains(&m.id) {
                let ok = self.push(primary, &m).await;
                if ok {
                    debug!(name = %m.name, to = %primary.address, "handed a key to the peer now responsible for it");
                    self.ring.metrics().handoff_bytes.inc_by(m.size);
                    done.keys_handed += 1;
                }
                ok
            } else {
                true
            };
            if delivered && !keep {
                debug!(name = %m.name, "dropping a copy this peer no longer holds");
                self.store.remove(m.id);
                done.copies_dropped += 1;
                self.update_usage();
            }
        }
    }

    /// Sends our copy of `m` to `to`; true when `to` now has it (or something newer).
    async fn push(&self, to: &Peer, m: &FileMeta) -> bool {
        let data = if m.deleted {
            None
        } else {
            match self.store.read(m.id) {
                Ok(Some((_, d))) => Some(Bytes::from(d)),
                _ => return false,
            }
        };
        self.ring
            .transport()
            .put_object(&to.address, m, data)
            .await
            .is_ok()
    }

    /// Leaves the ring gracefully: keys to the successor first, then the ring itself.
    pub async fn leave(&self) -> Result<(), ServiceError> {
        let span = info_span!("peer.leave");
        telemetry::mark_trace(&span);
        self.leave_inner().instrument(span).await
    }

    async fn leave_inner(&self) -> Result<(), ServiceError> {
        if self.ring.is_member() {
            // From now on this peer refuses new copies, so that neighbours leaving at the same
            // moment hand their keys past it.
            self.leaving.store(true, Ordering::SeqCst);
            self.hand_off().await;
        }
        let left = self.ring.leave().await;
        self.leaving.store(false, Ordering::SeqCst);
        left
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
        let mut keys = 0;
        for successor in self.ring.successors().into_iter().filter(|p| p.id != me.id) {
            if pending.is_empty() {
                break;
            }
            let have: Vec<(Id, Version)> = pending.iter().map(|m| (m.id, m.version)).collect();
            let missing = match self
                .ring
                .transport()
                .missing(&successor.address, &have)
                .await
            {
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
            pending = failed;
        }
        for m in &pending {
            warn!(name = %m.name, "hand-off failed; the key's other copies remain");
        }
        (keys, pending.len())
    }

    fn update_usage(&self) {
        let (keys, bytes) = self.store.usage();
        self.ring.metrics().keys_stored.set(keys as i64);
        self.ring.metrics().bytes_stored.set(bytes as i64);
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
    /// Our keys still short of copies.
    deficit: usize,
}

impl RepairDone {
    fn changed_anything(&self) -> bool {
        self.replicas_pushed + self.keys_handed + self.copies_dropped > 0
    }
}

/// The metadata of a file only a provider has: it was never written to the ring, so it has no
/// version of its own.
fn provided_meta(p: &ProviderRecord) -> FileMeta {
    FileMeta {
        name: p.name.clone(),
        id: p.id,
        size: p.size,
        sha256: p.sha256.clone(),
        version: Version {
            millis: 0,
            origin: p.peer_id,
        },
        deleted: false,
    }
}

impl<T: Transport + FileTransport> FileHandler for Files<T> {
    fn put_object(&self, meta: FileMeta, data: Option<Bytes>) -> Result<PutReply, String> {
        // Copies go to ring members only: not to a peer handing its keys over, nor to one that
        // has left (it is about to exit) or has not joined yet.
        if self.leaving.load(Ordering::SeqCst) || !self.ring.is_member() {
            return Err("this peer is not taking copies (leaving, or not a ring member)".into());
        }
        self.put_local(meta, data)
    }

    fn get_object(&self, id: Id) -> Option<(FileMeta, Bytes)> {
        match self.store.read(id) {
            Ok(found) => found.map(|(m, d)| (m, Bytes::from(d))),
            Err(e) => {
                warn!(%id, error = %e, "cannot read a stored object");
                None
            }
        }
    }

    fn object_info(&self, id: Id) -> ObjectInfo {
        let now = Instant::now();
        let providers = lock(&self.providers)
            .get(&id)
            .map(|v| {
                v.iter()
                    .filter(|(_, exp)| *exp > now)
                    .map(|(r, _)| r.clone())
                    .collect()
            })
            .unwrap_or_default();
        ObjectInfo {
            meta: self.store.meta(id),
            providers,
        }
    }

    fn put_provider(&self, record: ProviderRecord) {
        if validate_name(&record.name).is_err() || Id::hash(record.name.as_bytes()) != record.id {
            return;
        }
        let lease = self.ring.config().files.republish_interval * 3;
        let expires = Instant::now() + lease.max(Duration::from_secs(1));
        let mut providers = lock(&self.providers);
        let now = Instant::now();
        let list = providers.entry(record.id).or_default();
        list.retain(|(r, exp)| *exp > now && r.peer_id != record.peer_id);
        list.push((record, expires));
    }

    fn get_shared(&self, name: &str) -> Option<Bytes> {
        let dir = &self.ring.config().files.shared_dir;
        let expected = lock(&self.shared).get(name).cloned()?;
        let data = std::fs::read(path_of(dir, name)?).ok()?;
        (sha256_hex(&data) == expected.sha256).then(|| Bytes::from(data))
    }

    fn missing(&self, have: Vec<(Id, Version)>) -> Vec<Id> {
        // A peer that does not take copies (leaving, not a member) keeps nothing for the ring:
        // to a hand-off or a repair everything is missing here, so they look further.
        if self.leaving.load(Ordering::SeqCst) || !self.ring.is_member() {
            return have.into_iter().map(|(id, _)| id).collect();
        }
        have.into_iter()
            .filter(|(id, v)| self.store.meta(*id).is_none_or(|m| m.version < *v))
            .map(|(id, _)| id)
            .collect()
    }
}
