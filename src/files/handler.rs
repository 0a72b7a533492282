//! The serving side of the data plane: what this peer answers when others store, fetch or ask
//! about objects, provider records and shared files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::blocks::{block_meta, check_block_meta};
use super::lists::encode_raw;
use super::manifest::check_manifest;
use super::ops::{Files, lock};
use super::providers::MAX_PER_KEY;
use super::shared::{Served, path_of};
use super::spool::{check_space, hash_file, spool};
use super::store::{PutOutcome, StoreError};
use super::{FileMeta, ProviderRecord, Version, validate_name};
use crate::id::Id;
use crate::transport::{
    BlobAnswer, BlobHandler, BlobQuery, Body, BoxFuture, MAX_BATCH, Object, ObjectInfo, PutReply,
    Refusal, RefusalKind,
};

/// Checks that a record a peer sent names what it claims: a file's id is SHA-1 of its name
/// (and a manifest lists the blocks its size needs); a block is named by its digest and sits
/// at the digest's first 160 bits.
fn check_record(meta: &FileMeta) -> Result<(), Refusal> {
    let invalid = |detail: String| Refusal::new(RefusalKind::Invalid, detail);
    if meta.is_block() {
        return check_block_meta(meta).map_err(|e| invalid(e.to_string()));
    }
    if validate_name(&meta.name).is_err() || Id::hash(meta.name.as_bytes()) != meta.id {
        return Err(invalid("the id is not SHA-1 of the name".into()));
    }
    check_manifest(meta).map_err(|e| invalid(e.to_string()))
}

fn refusal(e: StoreError) -> Refusal {
    let kind = match &e {
        StoreError::Full { .. } => RefusalKind::InsufficientStorage,
        StoreError::Mismatch(_) | StoreError::TooLarge { .. } | StoreError::Corrupt(_) => {
            RefusalKind::Invalid
        }
        StoreError::Body(_) => RefusalKind::Unavailable,
        StoreError::Io { .. } => RefusalKind::Internal,
    };
    Refusal::new(kind, e.to_string())
}

impl Files {
    /// Whether this peer takes copies: not while handing its keys over, nor when it has left
    /// (it is about to exit) or has not joined yet.
    fn taking_copies(&self) -> bool {
        self.ring.status().accepts_keys
    }

    async fn put_object(&self, meta: FileMeta, body: Option<Body>) -> Result<PutReply, Refusal> {
        if !self.taking_copies() {
            return Err(Refusal::new(
                RefusalKind::Unavailable,
                "this peer is not taking copies (leaving, or not a ring member)",
            ));
        }
        check_record(&meta)?;
        self.hlc
            .check(&meta.version)
            .map_err(|e| Refusal::new(RefusalKind::Invalid, e.to_string()))?;
        // A block already here is referenced again (atomically with this check, so garbage
        // collection cannot drop it between the two).
        if let Some(current) = self.store.current_touching(&meta) {
            if let Some(mut body) = body {
                // Read to the end: an answer before the request's body is in breaks the
                // sender's connection (HTTP), and copies of one block arrive concurrently.
                while let Some(Ok(_)) = body.next().await {}
            }
            return Ok(PutReply {
                stored: false,
                replaced: false,
                current,
            });
        }
        let content = match (!meta.has_content(), body) {
            (true, _) => None,
            (false, Some(body)) => {
                let reserve = self.ring.config().files.reserve;
                check_space(self.store.tmp_dir(), body.len(), reserve).map_err(refusal)?;
                Some(
                    spool(self.store.tmp_dir(), body, self.max_file_size())
                        .await
                        .map_err(refusal)?,
                )
            }
            (false, None) => return Err(Refusal::new(RefusalKind::Invalid, "no content")),
        };
        self.hlc.observe(&meta.version);
        let store = Arc::clone(&self.store);
        let m = meta.clone();
        let outcome = tokio::task::spawn_blocking(move || store.put(m, content))
            .await
            .map_err(|e| Refusal::new(RefusalKind::Internal, e.to_string()))?
            .map_err(refusal)?;
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

    async fn get_object(&self, id: Id) -> Result<Option<Object>, Refusal> {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.open_content(id)).await {
            Ok(Ok(None)) => Ok(self.shared_block(id).await),
            Ok(Ok(found)) => Ok(found.map(|(meta, path)| Object {
                body: Body::from_file(path, meta.size),
                meta,
            })),
            Ok(Err(e @ StoreError::Corrupt(_))) => {
                // Dropped: the holders' repair brings a good copy back.
                warn!(%id, error = %e, "a stored block was corrupt");
                self.ring.metrics().blocks_corrupt.inc();
                self.update_usage();
                Ok(None)
            }
            Ok(Err(e)) => {
                warn!(%id, error = %e, "cannot read a stored object");
                Ok(None)
            }
            Err(e) => Err(Refusal::new(RefusalKind::Internal, e.to_string())),
        }
    }

    pub(super) fn object_info(&self, id: Id) -> ObjectInfo {
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

    pub(super) fn put_provider(&self, record: ProviderRecord) {
        if validate_name(&record.name).is_err() || Id::hash(record.name.as_bytes()) != record.id {
            return;
        }
        // A record names a peer by an address of this ring's transport (checked again, against
        // the ring, before anyone contacts it).
        if self.ring.factory().parse_address(&record.peer).is_err() {
            return;
        }
        let lease = self.ring.config().files.republish_interval * 3;
        let expires = Instant::now() + lease.max(Duration::from_secs(1));
        let mut providers = lock(&self.providers);
        let now = Instant::now();
        let list = providers.entry(record.id).or_default();
        list.retain(|(r, exp)| *exp > now && r.peer_id != record.peer_id);
        list.push((record, expires));
        // Bounded: the records that expire last stay.
        if list.len() > MAX_PER_KEY {
            list.sort_by_key(|(_, exp)| std::cmp::Reverse(*exp));
            list.truncate(MAX_PER_KEY);
        }
    }

    async fn get_shared_file(&self, name: &str) -> Option<Body> {
        let dir = &self.ring.config().files.shared_dir;
        let expected = lock(&self.shared).get(name).cloned()?;
        let path = path_of(dir, name)?;
        let check = path.clone();
        let (size, sha) = tokio::task::spawn_blocking(move || hash_file(&check))
            .await
            .ok()?
            .ok()?;
        (sha == expected.sha256).then(|| Body::from_file(path, size))
    }

    /// The block at `id` of a file in the shared directory, as read from the file now (not
    /// hashed again here: the downloader verifies every block, and a provider is untrusted to
    /// it anyway), or a list block of a shared file's manifest, made from the index.
    async fn shared_block(&self, id: Id) -> Option<Object> {
        let served = lock(&self.shared).block(id)?;
        let block = match served {
            Served::Data(block) => block,
            Served::List {
                digest,
                digests,
                range,
            } => {
                let data = encode_raw(digests.get(range)?).ok()?;
                let meta = block_meta(&digest, data.len() as u64).ok()?;
                self.ring.metrics().shared_list_blocks_served.inc();
                return Some(Object {
                    meta,
                    body: Body::from_bytes(data),
                });
            }
        };
        let meta = block_meta(&block.digest, block.len).ok()?;
        let path = path_of(&self.ring.config().files.shared_dir, &block.name)?;
        let read = tokio::task::spawn_blocking(move || read_at(&path, block.offset, block.len));
        match read.await {
            Ok(Ok(data)) => {
                self.ring.metrics().shared_blocks_served.inc();
                Some(Object {
                    meta,
                    body: Body::from_bytes(data.into()),
                })
            }
            Ok(Err(e)) => {
                warn!(name = %block.name, error = %e, "cannot read a block of a shared file");
                None
            }
            Err(_) => None,
        }
    }

    /// The manifest of the shared file `name` as this peer hashed it (see
    /// [`super::shared::SharedFile::manifest`]).
    fn shared_manifest(&self, name: &str) -> Option<FileMeta> {
        let origin = self.me().id;
        lock(&self.shared).get(name).map(|f| f.manifest(origin))
    }

    fn missing(&self, have: Vec<(Id, Version)>) -> Vec<Id> {
        // A peer that does not take copies (leaving, not a member) keeps nothing for the ring:
        // to a hand-off or a repair everything is missing here, so they look further.
        if !self.taking_copies() {
            return have.into_iter().map(|(id, _)| id).collect();
        }
        have.into_iter()
            .filter(|(id, v)| self.store.meta(*id).is_none_or(|m| m.version < *v))
            .map(|(id, _)| id)
            .collect()
    }
}

/// `len` bytes of the file at `path` from `offset` (a block: at most 16 MiB).
fn read_at(path: &std::path::Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
    f.read_exact(&mut data)?;
    Ok(data)
}

/// The data plane's handler: `Arc<Files>` so the transport can hold it.
pub struct FilesHandler(pub Arc<Files>);

impl BlobHandler for FilesHandler {
    fn put(&self, meta: FileMeta, body: Option<Body>) -> BoxFuture<'_, Result<PutReply, Refusal>> {
        Box::pin(self.0.put_object(meta, body))
    }

    fn get(&self, id: Id) -> BoxFuture<'_, Result<Option<Object>, Refusal>> {
        Box::pin(self.0.get_object(id))
    }

    fn get_shared<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Body>, Refusal>> {
        Box::pin(async move { Ok(self.0.get_shared_file(name).await) })
    }

    fn query(&self, query: BlobQuery) -> BoxFuture<'_, Result<BlobAnswer, Refusal>> {
        let too_long = match &query {
            BlobQuery::Missing { have } => have.len() > MAX_BATCH,
            BlobQuery::Referenced { ids } => ids.len() > MAX_BATCH,
            _ => false,
        };
        if too_long {
            let detail = format!("at most {MAX_BATCH} entries per query");
            return Box::pin(std::future::ready(Err(Refusal::new(
                RefusalKind::Invalid,
                detail,
            ))));
        }
        let answer = match query {
            BlobQuery::Info { id } => BlobAnswer::Info(self.0.object_info(id)),
            BlobQuery::PutProvider { record } => {
                self.0.put_provider(record);
                BlobAnswer::Done
            }
            BlobQuery::Missing { have } => BlobAnswer::Missing {
                ids: self.0.missing(have),
            },
            BlobQuery::Referenced { ids } => {
                self.0.store.touch(&ids);
                BlobAnswer::Done
            }
            BlobQuery::SharedManifest { name } => BlobAnswer::Shared {
                meta: self.0.shared_manifest(&name),
            },
        };
        Box::pin(std::future::ready(Ok(answer)))
    }
}
