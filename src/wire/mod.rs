//! The vocabulary every side of the peer protocol speaks: addresses, peers, ring ids, the ring's
//! request/response envelopes ([`ring`]) and the file layer's records ([`files`]).
//!
//! A leaf module: it depends only on [`crate::id`]. Every transport carries these types (serde
//! serializable), the simulator's virtual network carries the ring envelopes, and no other
//! module defines a type that crosses the network.

pub mod files;
pub mod ring;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::id::Id;

/// The peer-protocol version this build speaks. Every envelope carries one; a peer answers a
/// message outside [`PROTOCOL_MIN`]`..=`[`PROTOCOL_VERSION`] with a rejection that names the
/// range it supports (rolling upgrades meet mixed versions: the older side says so clearly).
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest peer-protocol version this build still understands.
pub const PROTOCOL_MIN: u16 = 1;

/// Envelopes from builds that predate the field are version 1.
pub(crate) fn legacy_protocol() -> u16 {
    1
}

/// Whether this build understands peer-protocol version `v`.
pub fn protocol_supported(v: u16) -> bool {
    (PROTOCOL_MIN..=PROTOCOL_VERSION).contains(&v)
}

/// A peer-protocol address. Opaque here: the transport that owns it parses and validates it
/// (`host:port` for HTTP and gRPC, DNS names allowed; a subject for a broker). Cheap to clone.
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

/// A ring id as UUID text, for places where serde buffers the value (internally tagged enums
/// such as [`ring::Rejection`]): there a 128-bit number cannot be read back ("u128 is not
/// supported"), so such fields are written as text. Reading also takes a number that fits 64
/// bits (what a buffered number can be).
pub mod ring_id_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::RingId;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(u64),
    }

    fn read(e: Either) -> Result<RingId, String> {
        match e {
            Either::Text(s) => s.parse(),
            Either::Number(n) => Ok(RingId(u128::from(n))),
        }
    }

    pub fn serialize<S: Serializer>(id: &RingId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RingId, D::Error> {
        read(Either::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    /// The same for an optional ring id.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        use super::{Either, RingId, read};

        pub fn serialize<S: Serializer>(id: &Option<RingId>, s: S) -> Result<S::Ok, S::Error> {
            match id {
                Some(id) => s.collect_str(id),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RingId>, D::Error> {
            Option::<Either>::deserialize(d)?
                .map(read)
                .transpose()
                .map_err(serde::de::Error::custom)
        }
    }
}

impl fmt::Debug for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingId({self})")
    }
}
