//! What Chord peers say to each other lives in [`crate::wire`]; the ring re-exports it and adds
//! its own correlation of requests with answers.

use serde::{Deserialize, Serialize};

pub use crate::wire::ring::{
    Member, Rejection, Request, RequestEnvelope, Response, ResponseEnvelope,
};
pub use crate::wire::{Address, Peer, RingId};

/// Correlates a response (or its absence) with the request a node sent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);
