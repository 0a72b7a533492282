//! File operations across the ring: upload, download, head, locations, delete, and the
//! shared-directory publication. Writes are stamped by a hybrid logical clock and acknowledged
//! only once `files.write_quorum` holders durably hold them; reads ask `files.read_quorum`
//! holders and serve the newest version (a tombstone included), repairing stale copies.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tracing::{debug, info, warn};

use super::download::Download;
use super::hlc::Hlc;
use super::outcome::{Locations, Uploaded};
use super::providers::provided_meta;
use super::shared::SharedIndex;
use super::spool::Spooled;
use super::store::{Store, StoreError};
use super::{FileMeta, Layout, NameError, ProviderRecord, Version, validate_name};
use crate::events::decide::{self, Written};
use crate::id::Id;
use crate::ring::{LookupResult, Peer};
use crate::runtime::{Service, ServiceError};
use crate::transport::{BlobClient, Body, PutReply, RefusalKind, TraceCarrier, info};

/// Why a file operation failed, as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("file {0:?} not found")]
    NotFound(String),
    /// Nothing was uploaded under the name, but peers share a file of that name from their
    /// shared directories: only they can remove it.
    #[error(
        "file {name:?} was not uploaded to the ring, so there is nothing to delete: it is shared \
         from the shared directory of {sharers}, and is removed by deleting it there"
    )]
    SharedOnly { name: String, sharers: String },
    #[error("{0}")]
    Ring(#[from] ServiceError),
    /// Fewer holders than the quorum answered or stored it; nothing was acknowledged.
    #[error("{name:?}: {detail}")]
    Unavailable { name: String, detail: String },
    /// The holders' disks are full: the write quorum cannot be met.
    #[error("{name:?}: not enough storage on the peers that hold it: {detail}")]
    InsufficientStorage { name: String, detail: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The content a write sends with its record.
pub(super) enum Content<'a> {
    /// None (a tombstone, a manifest).
    None,
    /// Spooled to a file.
    File(&'a Spooled),
    /// In memory (a block).
    Bytes(bytes::Bytes),
}

impl Content<'_> {
    fn body(&self) -> Option<Body> {
        match self {
            Content::None => None,
            Content::File(s) => Some(Body::from_file(s.path.clone(), s.size)),
            Content::Bytes(b) => Some(super::blocks::body_of(b.clone())),
        }
    }
}

/// The file layer of one peer.
pub struct Files {
    pub(super) ring: Arc<Service>,
    pub(super) blob: Arc<dyn BlobClient>,
    pub(super) store: Arc<Store>,
    pub(super) hlc: Hlc,
    pub(super) shared: Mutex<SharedIndex>,
    /// Provider records for keys this peer is responsible for, with their lease expiry.
    pub(super) providers: Mutex<HashMap<Id, Vec<(ProviderRecord, Instant)>>>,
    /// A graceful leave is under way: refuse new copies.
    /// Read repairs under way (one per key and version, however many reads find it stale).
    repairing: Arc<Mutex<HashSet<(Id, Version)>>>,
    /// The blocks of uploads whose manifest is not written yet (their leases are ours).
    pub(super) uploading: Arc<super::upload::Uploading>,
    /// When uploads here switch to list blocks (tests set smaller ones).
    pub(super) lists: super::lists::ListKnobs,
}

pub(super) fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many copies a write needs: the quorum, or every holder when there are fewer.
fn needed(quorum: usize, holders: usize) -> usize {
    quorum.min(holders).max(1)
}

/// The newest of some versions (a tombstone counts).
fn newest(metas: impl IntoIterator<Item = FileMeta>) -> Option<FileMeta> {
    metas.into_iter().max_by_key(|m| m.version)
}

impl Files {
    pub fn open(ring: Arc<Service>, blob: Arc<dyn BlobClient>) -> Result<Arc<Files>, StoreError> {
        let store = Store::open(&ring.config().files.store_dir)?;
        let hlc = Hlc::new(ring.me().id, ring.config().files.max_clock_skew);
        // Versions this peer stored were issued or seen: the clock starts past them.
        for m in store.list() {
            hlc.observe(&m.version);
        }
        let files = Arc::new(Files {
            ring,
            blob,
            store: Arc::new(store),
            hlc,
            shared: Mutex::new(SharedIndex::default()),
            providers: Mutex::new(HashMap::new()),
            repairing: Arc::new(Mutex::new(HashSet::new())),
            uploading: Arc::default(),
            lists: Default::default(),
        });
        files.update_usage();
        Ok(files)
    }

    pub(super) fn replicas(&self) -> usize {
        self.ring.config().ring.replicas.max(1)
    }

    pub(super) fn me(&self) -> Peer {
        self.ring.me()
    }

    /// Where uploads are spooled before they go to their holders.
    pub fn spool_dir(&self) -> &std::path::Path {
        self.store.tmp_dir()
    }

    /// Shifts this peer's version clock by `ms` (tests of clock skew in one process).
    #[doc(hidden)]
    pub fn shift_clock(&self, ms: i64) {
        self.hlc.shift(ms);
    }

    pub fn max_file_size(&self) -> u64 {
        self.ring.config().files.max_file_size
    }

    // ----- the user's operations ----------------------------------------------------------

    /// The peers that should hold `id`: the responsible one, then its successors.
    pub(super) fn placement(&self, r: &LookupResult) -> Vec<Peer> {
        crate::ring::placement::placement_of(r, self.replicas())
    }

    /// What each of `holders` knows about `id` (in their order; `None` = no answer).
    async fn ask(&self, holders: &[Peer], id: Id) -> Vec<Option<crate::transport::ObjectInfo>> {
        let asks = holders.iter().map(|h| info(&*self.blob, &h.address, id));
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .map(Result::ok)
            .collect()
    }

    /// The newest version `holders` report, and who answered; fails without a read quorum
    /// when `quorum` (a write only needs a version to supersede: a holder with a newer one
    /// refuses it, so the write quorum still catches a version computed from too few answers).
    async fn read_versions(
        &self,
        name: &str,
        holders: &[Peer],
        id: Id,
        quorum: bool,
    ) -> Result<(Option<FileMeta>, Vec<(Peer, crate::transport::ObjectInfo)>), FilesError> {
        let answers: Vec<(Peer, crate::transport::ObjectInfo)> = holders
            .iter()
            .cloned()
            .zip(self.ask(holders, id).await)
            .filter_map(|(p, a)| a.map(|a| (p, a)))
            .collect();
        let want = needed(self.ring.config().files.read_quorum, holders.len());
        if quorum && answers.len() < want {
            return Err(FilesError::Unavailable {
                name: name.to_string(),
                detail: format!(
                    "{} of {} holders answered, {want} needed; try again",
                    answers.len(),
                    holders.len()
                ),
            });
        }
        // Every holder checked the version against its own clock when it stored it: a reader
        // whose clock is behind must not take those versions for forgeries.
        let stored = answers.iter().filter_map(|(_, a)| a.meta.clone());
        Ok((newest(stored), answers))
    }

    /// Stores `meta` (content from `spooled`) on `targets`; succeeds once the write quorum
    /// holds it. Returns who holds it and whether a live version was replaced.
    pub(super) async fn write(
        &self,
        meta: &FileMeta,
        content: Content<'_>,
        targets: &[Peer],
    ) -> Result<(Vec<Peer>, bool), FilesError> {
        let puts = targets.iter().map(|t| {
            let body = content.body();
            self.blob
                .put(&t.address, meta.clone(), body, TraceCarrier::current())
        });
        let results = futures_util::future::join_all(puts).await;
        let mut held = Vec::new();
        let mut replaced = false;
        let mut errors = Vec::new();
        let mut full = false;
        for (t, r) in targets.iter().zip(results) {
            match r {
                Ok(reply) if reply.holds(meta) => {
                    replaced |= reply.replaced;
                    held.push(t.clone());
                }
                Ok(PutReply { current, .. }) => errors.push(format!(
                    "{} holds a newer version ({:?})",
                    t.address, current.version
                )),
                Err(e) => {
                    full |= e
                        .refusal()
                        .is_some_and(|r| r.kind == RefusalKind::InsufficientStorage);
                    errors.push(format!("{}: {e}", t.address));
                }
            }
        }
        let want = needed(self.ring.config().files.write_quorum, targets.len());
        if held.len() >= want {
            if !errors.is_empty() {
                warn!(name = %meta.name, ?errors, "some copies could not be stored; repair will retry");
            }
            return Ok((held, replaced));
        }
        self.ring
            .metrics()
            .write_quorum_failures
            .with_label_values(&[if meta.deleted { "delete" } else { "upload" }])
            .inc();
        let detail = format!(
            "{} of {} copies stored, {want} needed ({})",
            held.len(),
            targets.len(),
            errors.join("; ")
        );
        warn!(name = %meta.name, %detail, "write quorum not met; not acknowledged");
        if full {
            Err(FilesError::InsufficientStorage {
                name: meta.name.clone(),
                detail,
            })
        } else {
            Err(FilesError::Unavailable {
                name: meta.name.clone(),
                detail,
            })
        }
    }

    /// Uploads spooled content under `name` (stored inline: one object on the name's holders).
    pub async fn upload(&self, name: &str, content: Spooled) -> Result<Uploaded, FilesError> {
        let (size, sha256) = (content.size, content.sha256.clone());
        self.write_file(name, size, sha256, Layout::Inline, Content::File(&content))
            .await
    }

    /// Writes the record of `name` (a new version after the newest its holders report) with
    /// its content, acknowledged at the write quorum.
    pub(super) async fn write_file(
        &self,
        name: &str,
        size: u64,
        sha256: String,
        layout: Layout,
        content: Content<'_>,
    ) -> Result<Uploaded, FilesError> {
        validate_name(name)?;
        let id = Id::hash(name.as_bytes());
        let found = self.ring.lookup(id).await?;
        let targets = self.placement(&found);
        let (current, _) = self.read_versions(name, &targets, id, false).await?;
        let meta = FileMeta {
            name: name.to_string(),
            id,
            size,
            sha256,
            version: self.hlc.next_after(current.as_ref().map(|m| &m.version)),
            deleted: false,
            layout,
        };
        let (held, replaced) = self.write(&meta, content, &targets).await?;
        let node = held.first().cloned().unwrap_or_else(|| found.node.clone());
        let blocks = meta.block_count();
        info!(%name, %id, size = meta.size, blocks, node = %node.address, copies = held.len(), "file stored");
        let written = Written {
            name,
            key: id,
            version: meta.version,
        };
        let replicas = held.len().saturating_sub(1);
        self.ring
            .events()
            .report(decide::file_stored(written, meta.size, &node, replicas));
        Ok(Uploaded {
            name: name.to_string(),
            id,
            size: meta.size,
            sha256: meta.sha256,
            node,
            replicas,
            replaced: replaced || current.is_some_and(|c| !c.deleted),
        })
    }

    /// Downloads `name`: the newest version the read quorum reports, from a holder that has
    /// it (a manifest: from its blocks, fetched as the body is read); else (nothing stored)
    /// from a provider. Stale holders are repaired in the background.
    pub async fn download(self: &Arc<Self>, name: &str) -> Result<Download, FilesError> {
        validate_name(name)?;
        let id = Id::hash(name.as_bytes());
        let found = self.ring.lookup(id).await?;
        let targets = self.placement(&found);
        let (newest, answers) = self.read_versions(name, &targets, id, true).await?;
        match newest {
            Some(m) if m.deleted => {
                self.read_repair(&m, &answers);
                Err(FilesError::NotFound(name.to_string()))
            }
            Some(m) if !m.has_content() => {
                self.read_repair(&m, &answers);
                Ok(Download::blocks(m, Arc::clone(self)))
            }
            Some(m) => {
                let mut holders: Vec<Peer> = answers
                    .iter()
                    .filter(|(_, a)| a.meta.as_ref().is_some_and(|x| x.version == m.version))
                    .map(|(p, _)| p.clone())
                    .collect();
                // The holder that is this peer first: no network.
                holders.sort_by_key(|p| p.id != self.me().id);
                for h in &holders {
                    match self.blob.get(&h.address, id, TraceCarrier::current()).await {
                        Ok(Some(o)) if o.meta.version == m.version => {
                            self.read_repair(&m, &answers);
                            return Ok(Download::whole(o.meta, o.body));
                        }
                        Ok(_) => {}
                        Err(e) => debug!(%name, peer = %h.address, error = %e, "copy unavailable"),
                    }
                }
                Err(FilesError::Unavailable {
                    name: name.to_string(),
                    detail: "no holder of the newest version could send it; try again".into(),
                })
            }
            None => self.fetch_from_providers(name, &answers).await,
        }
    }

    /// Sends `newest` to the holders that answered with something older, in the background.
    fn read_repair(&self, newest: &FileMeta, answers: &[(Peer, crate::transport::ObjectInfo)]) {
        let stale: Vec<Peer> = answers
            .iter()
            .filter(|(_, a)| a.meta.as_ref().is_none_or(|m| m.version < newest.version))
            .map(|(p, _)| p.clone())
            .collect();
        if stale.is_empty() {
            return;
        }
        let Some(source) = answers
            .iter()
            .find(|(_, a)| a.meta.as_ref().is_some_and(|m| m.version == newest.version))
            .map(|(p, _)| p.clone())
        else {
            return;
        };
        let key = (newest.id, newest.version);
        if !lock(&self.repairing).insert(key) {
            return; // already being repaired
        }
        self.ring.metrics().read_repairs.inc_by(stale.len() as u64);
        let repairing = Arc::clone(&self.repairing);
        let blob = Arc::clone(&self.blob);
        let meta = newest.clone();
        let spool_dir = self.store.tmp_dir().to_path_buf();
        let limit = self.max_file_size();
        tokio::spawn(async move {
            let _done = RepairDone(repairing, key);
            for to in stale {
                let body = if !meta.has_content() {
                    None
                } else {
                    match blob
                        .get(&source.address, meta.id, TraceCarrier::current())
                        .await
                    {
                        Ok(Some(o)) if o.meta.version == meta.version => {
                            match super::spool::spool(&spool_dir, o.body, limit).await {
                                Ok(s) if s.sha256 == meta.sha256 => Some(s),
                                _ => return,
                            }
                        }
                        _ => return,
                    }
                };
                let content = body
                    .as_ref()
                    .map(|s| Body::from_file(s.path.clone(), s.size));
                match blob
                    .put(&to.address, meta.clone(), content, TraceCarrier::current())
                    .await
                {
                    Ok(_) => debug!(name = %meta.name, to = %to.address, "read repair"),
                    Err(e) => {
                        debug!(name = %meta.name, to = %to.address, error = %e, "read repair failed")
                    }
                }
            }
        });
    }

    /// The metadata of `name` without its content (HEAD).
    pub async fn head(&self, name: &str) -> Result<FileMeta, FilesError> {
        validate_name(name)?;
        let id = Id::hash(name.as_bytes());
        let found = self.ring.lookup(id).await?;
        let targets = self.placement(&found);
        let (newest, answers) = self.read_versions(name, &targets, id, true).await?;
        match newest {
            Some(m) if m.deleted => Err(FilesError::NotFound(name.to_string())),
            Some(m) => Ok(m),
            None => answers
                .iter()
                .find_map(|(_, a)| a.providers.first().map(provided_meta))
                .ok_or_else(|| FilesError::NotFound(name.to_string())),
        }
    }

    /// Where `name` lives; with `with_blocks`, also each block's digest and holders.
    pub async fn locations(&self, name: &str, with_blocks: bool) -> Result<Locations, FilesError> {
        validate_name(name)?;
        let id = Id::hash(name.as_bytes());
        let found = self.ring.lookup(id).await?;
        let holders = self.placement(&found);
        let answers = self.ask(&holders, id).await;
        let live =
            newest(answers.iter().flatten().filter_map(|a| a.meta.clone())).filter(|m| !m.deleted);
        let live_version = live.as_ref().map(|m| m.version);
        let block_count = live.as_ref().map_or(0, |m| m.block_count());
        let blocks = match live {
            Some(m) if with_blocks => Some(self.block_holders(&self.all_digests(&m).await?).await),
            _ if with_blocks => Some(Vec::new()),
            _ => None,
        };
        let mut providers = Vec::new();
        let mut replicas = Vec::new();
        let mut any = live_version.is_some();
        for (k, (holder, info)) in holders.iter().zip(&answers).enumerate() {
            let Some(info) = info else { continue };
            let live = info
                .meta
                .as_ref()
                .is_some_and(|m| Some(m.version) == live_version);
            if k > 0 && live {
                replicas.push(holder.clone());
            }
            for p in &info.providers {
                if !providers.iter().any(|v: &Peer| v.id == p.peer_id) {
                    any = true;
                    providers.push(Peer {
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
            node: found.node.clone(),
            replicas,
            providers,
            hops: found.hops,
            block_count: usize::try_from(block_count).unwrap_or(usize::MAX),
            blocks,
        })
    }

    /// Deletes uploaded content: a tombstone, acknowledged once the write quorum holds it.
    pub async fn delete(&self, name: &str) -> Result<(), FilesError> {
        validate_name(name)?;
        let id = Id::hash(name.as_bytes());
        let found = self.ring.lookup(id).await?;
        let targets = self.placement(&found);
        let (current, answers) = self.read_versions(name, &targets, id, true).await?;
        let Some(current) = current.filter(|m| !m.deleted) else {
            // Nothing uploaded; a file some peer shares from its directory is its owner's.
            let mut sharers: Vec<String> = answers
                .iter()
                .flat_map(|(_, a)| a.providers.iter().map(|p| p.peer.clone()))
                .collect();
            sharers.sort();
            sharers.dedup();
            if sharers.is_empty() {
                return Err(FilesError::NotFound(name.to_string()));
            }
            return Err(FilesError::SharedOnly {
                name: name.to_string(),
                sharers: sharers.join(", "),
            });
        };
        let tombstone = FileMeta {
            name: name.to_string(),
            id,
            size: 0,
            sha256: String::new(),
            version: self.hlc.next_after(Some(&current.version)),
            deleted: true,
            layout: Default::default(),
        };
        self.write(&tombstone, Content::None, &targets).await?;
        info!(%name, %id, "file deleted");
        self.ring.events().report(decide::file_deleted(Written {
            name,
            key: id,
            version: tombstone.version,
        }));
        Ok(())
    }

    pub(super) fn update_usage(&self) {
        let usage = self.store.usage();
        self.ring.metrics().keys_stored.set(usage.files as i64);
        self.ring.metrics().bytes_stored.set(usage.bytes as i64);
        self.ring.metrics().blocks_stored.set(usage.blocks as i64);
    }
}

/// Forgets a finished read repair, however its task ended.
struct RepairDone(Arc<Mutex<HashSet<(Id, Version)>>>, (Id, Version));

impl Drop for RepairDone {
    fn drop(&mut self) {
        lock(&self.0).remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_rings_need_every_holder_and_big_ones_the_quorum() {
        assert_eq!(needed(2, 1), 1);
        assert_eq!(needed(2, 2), 2);
        assert_eq!(needed(2, 3), 2);
        assert_eq!(needed(3, 3), 3);
    }
}
