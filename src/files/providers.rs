//! Files nobody uploaded, fetched from the peers that share them, and only from peers of this
//! ring: a provider record is a claim by whoever sent it, and its address is never contacted
//! unless a lookup of the provider's id ends at that very peer (no requests to a host:port a
//! record picked).
//!
//! A file of more than one block comes block by block, spread over every provider of the same
//! content (same size and whole-file SHA-256; the group most providers agree on first): the
//! manifest (the digest of each block, as the provider hashed it when it indexed the file; past
//! `lists::LIST_THRESHOLD` blocks the digests of its list blocks instead, which come from the
//! providers like data blocks, so the manifest stays small and a file of any size is verified
//! block by block) comes from the first provider that gives one matching its record, then
//! block `i` is asked of provider `i mod n`, verified before a byte of it is passed on, and a
//! provider that fails or sends a block that fails its digest is skipped for the rest of the
//! download (counted in
//! `chordnet_shared_blocks_corrupt_total` and logged) while another sends the block. The whole
//! file's SHA-256 is checked again as it leaves the API, so a lying manifest fails too. A file
//! of at most one block comes whole from one provider and is checked before it is served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tracing::{debug, warn};

use super::blocks::{Fetch, block_meta, read_verified};
use super::download::Download;
use super::lists::{Shape, decode, list_len};
use super::manifest::check_manifest;
use super::ops::{Files, FilesError, lock};
use super::{FileMeta, Layout, ProviderRecord, Version};
use crate::config::MAX_BLOCK_SIZE;
use crate::id::Id;
use crate::ring::Address;
use crate::transport::{BlobAnswer, BlobQuery, Body, ObjectInfo, TraceCarrier};

/// Provider records kept per key (the newest ones; each peer has one per key).
pub const MAX_PER_KEY: usize = 32;

/// The providers a shared file's blocks are fetched from, and which of them are skipped.
pub struct Providers {
    peers: Vec<Address>,
    skipped: Mutex<Vec<bool>>,
}

impl Providers {
    fn new(peers: Vec<Address>) -> Providers {
        let skipped = Mutex::new(vec![false; peers.len()]);
        Providers { peers, skipped }
    }

    fn skip(&self, k: usize) {
        if let Some(s) = lock(&self.skipped).get_mut(k) {
            *s = true;
        }
    }

    fn is_skipped(&self, k: usize) -> bool {
        lock(&self.skipped).get(k).copied().unwrap_or(true)
    }
}

/// The records of `answers`, one per provider, grouped by content (size and SHA-256): the
/// groups most providers agree on first, in the order they were met otherwise.
fn groups(answers: &[(crate::ring::Peer, ObjectInfo)]) -> Vec<Vec<ProviderRecord>> {
    let mut seen = Vec::new();
    let mut groups: Vec<Vec<ProviderRecord>> = Vec::new();
    let mut index: HashMap<(u64, String), usize> = HashMap::new();
    for p in answers.iter().flat_map(|(_, info)| &info.providers) {
        if seen.contains(&p.peer_id) {
            continue;
        }
        seen.push(p.peer_id);
        let k = *index.entry((p.size, p.sha256.clone())).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[k].push(p.clone());
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    groups
}

impl Files {
    /// A file nobody uploaded: from the providers that share it.
    pub(super) async fn fetch_from_providers(
        self: &Arc<Self>,
        name: &str,
        answers: &[(crate::ring::Peer, ObjectInfo)],
    ) -> Result<Download, FilesError> {
        for group in groups(answers) {
            let mut members = Vec::new();
            for p in &group {
                match self.ring_peer(p.peer_id, &p.peer).await {
                    Some(address) => members.push((p, address)),
                    None => {
                        debug!(peer = %p.peer, "a provider record names no peer of this ring; ignored")
                    }
                }
            }
            let Some((first, _)) = members.first() else {
                continue;
            };
            let record = (*first).clone();
            if let Some(manifest) = self.manifest_from_providers(name, &members).await {
                let meta = FileMeta {
                    layout: manifest,
                    ..provided_meta(&record)
                };
                let peers = members.into_iter().map(|(_, a)| a).collect();
                return Ok(Download::provided(
                    meta,
                    Arc::clone(self),
                    Providers::new(peers),
                ));
            }
            for (p, address) in &members {
                if let Some(body) = self.whole_shared(p, address).await {
                    return Ok(Download::whole(provided_meta(p), body));
                }
            }
        }
        Err(FilesError::NotFound(name.to_string()))
    }

    /// The block list of a shared file of more than one block, from the first of `members`
    /// whose manifest matches its record (its block digests, or past the list threshold its
    /// list blocks, which the providers serve too); `None` when the file is one block (or the
    /// providers predate manifests).
    async fn manifest_from_providers(
        &self,
        name: &str,
        members: &[(&ProviderRecord, Address)],
    ) -> Option<Layout> {
        for (p, address) in members {
            let query = BlobQuery::SharedManifest {
                name: name.to_string(),
            };
            let meta = match self
                .blob
                .query(address, query, TraceCarrier::current())
                .await
            {
                Ok(BlobAnswer::Shared { meta: Some(m) }) => m,
                Ok(_) => continue,
                Err(e) => {
                    debug!(peer = %p.peer, error = %e, "no manifest from a provider");
                    continue;
                }
            };
            let matches = meta.name == name && meta.size == p.size && meta.sha256 == p.sha256;
            match (&meta.layout, matches && check_manifest(&meta).is_ok()) {
                (Layout::Blocks { .. } | Layout::Lists { .. }, true) => return Some(meta.layout),
                (Layout::Inline, true) => return None,
                _ => debug!(peer = %p.peer, "a provider's manifest does not match its record"),
            }
        }
        None
    }

    /// A shared file whole from the provider `p`; one of at most a block is read and checked
    /// against its SHA-256 first.
    async fn whole_shared(&self, p: &ProviderRecord, address: &Address) -> Option<Body> {
        let body = match self
            .blob
            .get_shared(address, &p.name, TraceCarrier::current())
            .await
        {
            Ok(Some(body)) if body.len() == p.size => body,
            Ok(_) => return None,
            Err(e) => {
                debug!(peer = %p.peer, error = %e, "provider unreachable");
                return None;
            }
        };
        if p.size > MAX_BLOCK_SIZE {
            return Some(body); // checked as it leaves the API
        }
        match read_verified(body, &p.sha256, p.size).await {
            Ok(data) => Some(Body::from_bytes(data)),
            Err(e) => {
                if matches!(e, Fetch::Corrupt) {
                    self.ring.metrics().shared_blocks_corrupt.inc();
                    warn!(name = %p.name, provider = %p.peer, "a provider sent a file that fails its SHA-256; asking another");
                }
                None
            }
        }
    }

    /// Block `i` of a shared file (`digest`, `len` bytes) from `set`, verified: first from
    /// provider `i mod n`, then the next ones; a provider that fails or sends bad bytes is
    /// skipped from then on.
    pub(super) async fn fetch_provided(
        &self,
        set: &Providers,
        i: u64,
        digest: &str,
        len: u64,
    ) -> Result<Bytes, FilesError> {
        let meta = block_meta(digest, len).map_err(|e| FilesError::Internal(e.to_string()))?;
        let n = set.peers.len();
        let start = usize::try_from(i % n.max(1) as u64).unwrap_or(0);
        let mut errors = Vec::new();
        for k in (0..n).map(|k| (start + k) % n) {
            if set.is_skipped(k) {
                continue;
            }
            let to = &set.peers[k];
            let why = match self.blob.get(to, meta.id, TraceCarrier::current()).await {
                Ok(Some(o)) if o.meta == meta => match read_verified(o.body, digest, len).await {
                    Ok(data) => return Ok(data),
                    Err(e) => {
                        if matches!(e, Fetch::Corrupt) {
                            self.ring.metrics().shared_blocks_corrupt.inc();
                            warn!(block = %digest, provider = %to, "a provider sent a block that fails its digest; skipping it for this download");
                        }
                        e.to_string()
                    }
                },
                Ok(_) => "it does not have the block".to_string(),
                Err(e) => e.to_string(),
            };
            debug!(block = %digest, provider = %to, %why, "a provider could not send a block");
            errors.push(format!("{to}: {why}"));
            set.skip(k);
        }
        Err(FilesError::Unavailable {
            name: digest.to_string(),
            detail: format!(
                "no provider could send block {i} ({}); try again",
                errors.join("; ")
            ),
        })
    }

    /// List block `k` of a shared file's manifest of `shape` (`digest`) from `set`, like a
    /// data block (verified against its digest, spread: list `k` first from provider
    /// `k mod n`), then checked and decoded.
    pub(super) async fn fetch_provided_list(
        &self,
        set: &Providers,
        digest: &str,
        shape: Shape,
        k: u64,
    ) -> Result<Vec<String>, FilesError> {
        let count = shape.count(k);
        let data = self.fetch_provided(set, k, digest, list_len(count)).await?;
        decode(&data, count).map_err(|e| FilesError::Unavailable {
            name: digest.to_string(),
            detail: format!("list block {k} is not a valid list: {e}"),
        })
    }

    /// The address of `id@address` if it is a member of this ring: a well-formed address of
    /// this transport, and the lookup of `id` ends at exactly that peer.
    async fn ring_peer(&self, id: Id, address: &str) -> Option<Address> {
        let address = self.ring.factory().parse_address(address).ok()?;
        let found = self.ring.lookup(id).await.ok()?;
        (found.node.id == id && found.node.address == address).then_some(address)
    }
}

/// The metadata of a file only a provider has: it was never written to the ring, so it has no
/// version of its own.
pub(super) fn provided_meta(p: &ProviderRecord) -> FileMeta {
    FileMeta {
        name: p.name.clone(),
        id: p.id,
        size: p.size,
        sha256: p.sha256.clone(),
        version: Version {
            millis: 0,
            logical: 0,
            origin: p.peer_id,
        },
        deleted: false,
        layout: Default::default(),
    }
}
