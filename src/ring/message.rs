//! What Chord peers say to each other: peers, ring ids, requests and responses.
//!
//! These types are the wire vocabulary of every transport (serde-serializable), and the
//! vocabulary the simulator's virtual network carries.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::id::Id;

/// A peer-protocol address (`host:port`, DNS names allowed). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(Arc<str>);

impl Address {
    pub fn new(s: impl AsRef<str>) -> Address {
        Address(Arc::from(s.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl From<&str> for Address {
    fn from(s: &str) -> Address {
        Address::new(s)
    }
}

/// A ring member: its identifier and where to reach it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    pub id: Id,
    pub address: Address,
}

/// `id@address`, as log lines show a peer.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.address)
    }
}

impl Peer {
    pub fn new(id: Id, address: Address) -> Peer {
        Peer { id, address }
    }

    /// A peer whose id is the SHA-1 of its advertised address (the default).
    pub fn from_address(address: impl AsRef<str>) -> Peer {
        let address = Address::new(address);
        Peer {
            id: Id::hash(address.as_str()),
            address,
        }
    }
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id.short(), self.address)
    }
}

/// Identity of one ring, created with it; travels in every message so rings never mix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RingId(pub u128);

impl fmt::Display for RingId {
    /// UUID layout: 8-4-4-4-12 hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl std::str::FromStr for RingId {
    type Err = String;

    /// Parses the UUID layout (dashes optional).
    fn from_str(s: &str) -> Result<RingId, String> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return Err(format!("{s:?} is not a ring id (a UUID)"));
        }
        u128::from_str_radix(&hex, 16)
            .map(RingId)
            .map_err(|_| format!("{s:?} is not a ring id (a UUID)"))
    }
}

impl fmt::Debug for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingId({self})")
    }
}

/// Correlates a response (or its absence) with the request a node sent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// A request from one peer to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// One step of an iterative lookup: "is `target` in (you, your successor]? if not, who is
    /// closer?"
    FindSuccessor { target: Id },
    /// Stabilize: "who is your predecessor, what is your successor list, and do you know anyone
    /// between me and you?"
    GetNeighbors,
    /// Rectify: "I believe I am your predecessor."
    Notify,
    /// Liveness check.
    Ping,
    /// Graceful leave: the sender is leaving; here are its neighbours so the ring closes over it.
    Leaving {
        predecessor: Option<Peer>,
        successors: Vec<Peer>,
    },
}

/// A request with who sent it and which ring it belongs to (`None` while joining).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub ring_id: Option<RingId>,
    pub from: Peer,
    pub body: Request,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The target lies in (responder, successor]: `successors[0]` is responsible for it; the rest
    /// of the responder's list follows it.
    Found {
        successors: Vec<Peer>,
    },
    /// The target is further on; these known peers precede it, closest to it first.
    Closer {
        candidates: Vec<Peer>,
    },
    /// The responder's predecessor and successor list, and the closest peer it knows strictly
    /// between the asker and itself (a shortcut that speeds up convergence after mass joins).
    Neighbors {
        predecessor: Option<Peer>,
        successors: Vec<Peer>,
        hint: Option<Peer>,
    },
    Ack,
    Rejected {
        reason: Rejection,
    },
}

/// Why a peer refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    #[error("the peer is not a ring member")]
    NotMember,
    #[error("the peer belongs to another ring ({ring_id})")]
    WrongRing { ring_id: RingId },
}

/// A response with who sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub ring_id: Option<RingId>,
    pub from: Peer,
    pub body: Response,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_id_displays_and_parses_as_uuid() {
        let id = RingId(0x0123456789abcdef0123456789abcdef);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(id.to_string().parse::<RingId>(), Ok(id));
        assert!("xyz".parse::<RingId>().is_err());
        assert!(
            "0123456789abcdef0123456789abcdeg"
                .parse::<RingId>()
                .is_err()
        );
    }

    #[test]
    fn messages_round_trip_through_json() {
        let p = Peer::from_address("10.0.0.1:7000");
        let req = RequestEnvelope {
            ring_id: Some(RingId(7)),
            from: p.clone(),
            body: Request::Leaving {
                predecessor: None,
                successors: vec![p.clone()],
            },
        };
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains("\"type\":\"leaving\""), "{json}");
        assert_eq!(serde_json::from_str::<RequestEnvelope>(&json).unwrap(), req);
        let resp = ResponseEnvelope {
            ring_id: None,
            from: p,
            body: Response::Rejected {
                reason: Rejection::NotMember,
            },
        };
        let json = serde_json::to_string(&resp).unwrap();
        assert_eq!(
            serde_json::from_str::<ResponseEnvelope>(&json).unwrap(),
            resp
        );
    }
}
