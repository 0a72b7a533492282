//! An operator's merge (`POST /v1/ring/merge`): bring the ring of another peer into this one.
//!
//! The peer is asked who it is and which ring it belongs to (a ping without a ring id, which
//! any member answers). Then:
//! - same ring id, and a lookup of its id here finds it: already one ring, nothing to do;
//! - same ring id, not found here: two rings that drifted apart (a partition the passive
//!   probes have not caught): ring unification through it ([`crate::ring::Node::merge_with`]);
//! - another ring id: its ring takes this ring's id over and zips in
//!   ([`crate::ring::Node::absorb_ring`], `ring/rename.rs`).
//!
//! The decisions are the node's; this only gathers what it needs and reports.

use serde::Serialize;

use super::commands::Command;
use super::{Service, ServiceError};
use crate::id::Id;
use crate::ring::{Rejection, Request, RequestEnvelope, Response};
use crate::transport::TransportError;

/// What a merge request did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MergeReport {
    /// `already_one_ring`, `unification_started` or `rename_started`.
    pub outcome: &'static str,
    /// This ring's id (the id the merged ring keeps).
    pub ring_id: Option<String>,
    /// The peer asked, as it answered.
    pub peer: String,
    pub peer_id: String,
    /// The ring the peer belonged to when asked.
    pub peer_ring_id: Option<String>,
}

/// Why a merge could not start.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{0}")]
    BadPeer(String),
    /// The peer did not answer, or not as a peer of this one.
    #[error("{0}")]
    Unreachable(String),
    /// The peer answered, but cannot be merged with (not a member, leaving, ...).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl Service {
    /// Merges the ring of the peer at `peer` into this node's ring (see the module docs).
    pub async fn merge(&self, peer: &str) -> Result<MergeReport, MergeError> {
        let address = self
            .factory
            .parse_address(peer)
            .map_err(|e| MergeError::BadPeer(format!("peer {peer:?}: {e}")))?;
        let status = self.status();
        if status.membership != crate::ring::Membership::Member {
            return Err(ServiceError::NotMember.into());
        }
        if address == status.me.address {
            return Err(MergeError::BadPeer(
                "a ring cannot be merged with itself: name a peer of the other ring".into(),
            ));
        }
        let ping = RequestEnvelope::new(None, status.me.clone(), Request::Ping);
        let answer = self
            .call(&address, ping)
            .await
            .map_err(|e| unreachable(peer, e))?;
        if let Response::Rejected { reason } = &answer.body {
            return Err(match reason {
                Rejection::Unauthenticated => MergeError::Unreachable(format!(
                    "{peer} refused this peer's messages: both rings need the same ring secret (security.ring_secret_file; each may accept the other's key during the merge)"
                )),
                other => MergeError::Refused(format!("{peer} cannot be merged with: {other}")),
            });
        }
        let contact = answer.from.clone();
        let theirs = answer.ring_id;
        let report = |outcome| MergeReport {
            outcome,
            ring_id: status.ring_id.map(|r| r.to_string()),
            peer: contact.address.to_string(),
            peer_id: contact.id.to_string(),
            peer_ring_id: theirs.map(|r| r.to_string()),
        };
        let Some(theirs) = theirs else {
            return Err(MergeError::Refused(format!("{peer} is not a ring member")));
        };
        if Some(theirs) == status.ring_id || Some(theirs) == status.ring_alias {
            if self.finds(contact.id).await? {
                return Ok(report("already_one_ring"));
            }
            self.start_merge(|reply| Command::Merge {
                contact: contact.clone(),
                reply,
            })
            .await?;
            return Ok(report("unification_started"));
        }
        self.start_merge(|reply| Command::Absorb {
            contact: contact.address.clone(),
            ring_id: theirs,
            reply,
        })
        .await?;
        Ok(report("rename_started"))
    }

    /// Whether a lookup of `id` in this ring ends at that very peer.
    async fn finds(&self, id: Id) -> Result<bool, ServiceError> {
        Ok(self.lookup(id).await?.node.id == id)
    }

    async fn start_merge(
        &self,
        command: impl FnOnce(tokio::sync::oneshot::Sender<bool>) -> Command,
    ) -> Result<(), MergeError> {
        if self
            .mailbox
            .ask(command)
            .await
            .map_err(ServiceError::from)?
        {
            Ok(())
        } else {
            Err(MergeError::Refused(
                "this peer cannot start a merge now (not a member, or merges already under way): try again in a moment".into(),
            ))
        }
    }
}

fn unreachable(peer: &str, e: TransportError) -> MergeError {
    MergeError::Unreachable(format!("{peer} did not answer: {e}"))
}
