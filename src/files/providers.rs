//! Files nobody uploaded, fetched from a peer that shares them, and only from a peer of this
//! ring: a provider record is a claim by whoever sent it, and its address is never contacted
//! unless a lookup of the provider's id ends at that very peer (no requests to a host:port a
//! record picked).

use tracing::debug;

use super::download::Download;
use super::ops::{Files, FilesError};
use super::{FileMeta, ProviderRecord, Version};
use crate::id::Id;
use crate::ring::{Address, Peer};
use crate::transport::TraceCarrier;

/// Provider records kept per key (the newest ones; each peer has one per key).
pub const MAX_PER_KEY: usize = 32;

impl Files {
    /// A file nobody uploaded: from a provider that shares it.
    pub(super) async fn fetch_from_providers(
        &self,
        name: &str,
        answers: &[(Peer, crate::transport::ObjectInfo)],
    ) -> Result<Download, FilesError> {
        let mut tried = Vec::new();
        for (_, info) in answers {
            for p in &info.providers {
                if tried.contains(&p.peer_id) {
                    continue;
                }
                tried.push(p.peer_id);
                let Some(address) = self.ring_peer(p.peer_id, &p.peer).await else {
                    debug!(peer = %p.peer, "a provider record names no peer of this ring; ignored");
                    continue;
                };
                match self
                    .blob
                    .get_shared(&address, &p.name, TraceCarrier::current())
                    .await
                {
                    Ok(Some(body)) if body.len() == p.size => {
                        return Ok(Download::whole(provided_meta(p), body));
                    }
                    Ok(_) => {}
                    Err(e) => debug!(peer = %p.peer, error = %e, "provider unreachable"),
                }
            }
        }
        Err(FilesError::NotFound(name.to_string()))
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
