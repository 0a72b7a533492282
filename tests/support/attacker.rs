//! The hand-made peer of the security tests: the memory transport's clients without the
//! shared layers, messages dressed up every way an attacker can (unsigned, another ring's key,
//! stale, signed by someone other than their `from`), and what the tests look at.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chordnet::id::Id;
use chordnet::metrics::Metrics;
use chordnet::transport::auth::serve::method;
use chordnet::transport::auth::{FIELD, Keyring, RingAuth, digest_json, digest_put};
use chordnet::transport::memory::MemoryTransport;
use chordnet::transport::{
    BlobAnswer, BlobQuery, Body, ClientOptions, Clients, PutReply, TraceCarrier, TransportError,
    TransportFactory,
};
use chordnet::wire::files::FileMeta;
use chordnet::wire::ring::{Rejection, Request, RequestEnvelope, Response, ResponseEnvelope};
use chordnet::wire::{Address, Peer, RingId};

use super::harness::{Harness, address};

pub const RING_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";
pub const OTHER_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";
pub const NEW_KEY: &str = "3333333333333333333333333333333333333333333333333333333333333333";

/// How an attacker dresses a message up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dress {
    /// No ring secret anywhere (security off): sent as is.
    Plain,
    /// No authenticator.
    Unsigned,
    /// Signed with another ring's secret.
    OtherRing,
    /// Signed with the ring's key (an insider) but ten minutes old.
    Stale,
    /// Signed with the ring's key (an insider) as someone other than the message's `from`.
    NotTheSender,
}

pub const REFUSED: [Dress; 4] = [
    Dress::Unsigned,
    Dress::OtherRing,
    Dress::Stale,
    Dress::NotTheSender,
];

pub fn secret_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chordnet-sec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("secret dir");
    dir
}

pub fn write_keys(file: &Path, keys: &[&str]) {
    let text = format!("# ring secret\n{}\n", keys.join("\n"));
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).expect("key file");
    std::fs::rename(&tmp, file).expect("key file");
}

pub async fn ring(name: &str, secret: Option<&Path>) -> Harness {
    let h = Harness::start(name, 4, |_, c| {
        c.security.ring_secret_file = secret.map(Path::to_owned);
    })
    .await;
    h.converged().await;
    h
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The hand-made peer: raw transport clients and, when dressed so, a key.
pub struct Attacker {
    pub clients: Clients,
}

impl Attacker {
    pub fn new(h: &Harness) -> Attacker {
        let clients = MemoryTransport::new(h.network.clone())
            .clients(ClientOptions::connect_within(Duration::from_secs(2)))
            .expect("clients");
        Attacker { clients }
    }

    pub fn signer(key: &str, as_id: Id) -> RingAuth {
        let path = Path::new("/attacker/keys");
        let keys = Keyring::parse(key, path).expect("key");
        RingAuth::with_keys(
            path,
            keys,
            Duration::from_secs(30),
            as_id,
            Metrics::new().expect("metrics"),
        )
    }

    /// The carrier `dress` gives a message of `method` digesting to `digest`, whose claimed
    /// sender is `from`.
    pub fn carrier(
        dress: Dress,
        method: &str,
        digest: &[u8; 32],
        from: Id,
        ring: Option<Option<RingId>>,
    ) -> TraceCarrier {
        let mut t = TraceCarrier::default();
        let signed = match dress {
            Dress::Plain | Dress::Unsigned => None,
            Dress::OtherRing => Some(Attacker::signer(OTHER_KEY, from).sign(method, digest, ring)),
            Dress::Stale => Some(Attacker::signer(RING_KEY, from).sign_at(
                method,
                digest,
                ring,
                now_ms() - 600_000,
            )),
            Dress::NotTheSender => {
                Some(Attacker::signer(RING_KEY, Id::hash("insider")).sign(method, digest, ring))
            }
        };
        if let Some(s) = signed {
            t.set_field(FIELD, s);
        }
        t
    }

    pub async fn ring(&self, to: &str, dress: Dress, request: RequestEnvelope) -> ResponseEnvelope {
        let digest = digest_json(&request);
        let trace = Attacker::carrier(
            dress,
            &method::ring(&request),
            &digest,
            request.from.id,
            Some(request.ring_id),
        );
        self.clients
            .ring
            .call(&Address::new(to), request, trace)
            .await
            .expect("the victim answers")
    }

    pub async fn put(
        &self,
        to: &str,
        dress: Dress,
        meta: FileMeta,
        data: Option<Vec<u8>>,
    ) -> Result<PutReply, TransportError> {
        let len = data.as_ref().map(|d| d.len() as u64);
        let digest = digest_put(&meta, len);
        let trace = Attacker::carrier(dress, method::PUT, &digest, Id::hash("forger"), None);
        let body = data.map(|d| Body::from_bytes(d.into()));
        self.clients
            .blob
            .put(&Address::new(to), meta, body, trace)
            .await
    }

    pub async fn query(
        &self,
        to: &str,
        dress: Dress,
        q: BlobQuery,
        sender: Id,
    ) -> Result<BlobAnswer, TransportError> {
        let digest = digest_json(&q);
        let trace = Attacker::carrier(dress, method::QUERY, &digest, sender, None);
        self.clients.blob.query(&Address::new(to), q, trace).await
    }
}

/// Every running peer's routing entries.
pub fn routing(h: &Harness) -> Vec<(Option<Id>, Vec<Id>)> {
    h.running()
        .iter()
        .map(|i| {
            let s = h.peer(*i).service.status();
            (
                s.predecessor.as_ref().map(|p| p.id),
                s.successors.iter().map(|p| p.id).collect(),
            )
        })
        .collect()
}

/// Peer indices sorted by id; `victim`'s predecessor and successor in that order.
pub fn neighbours(h: &Harness, victim: usize) -> (usize, usize) {
    let mut order: Vec<usize> = h.running();
    order.sort_by_key(|i| h.id(*i));
    let pos = order
        .iter()
        .position(|i| *i == victim)
        .expect("victim runs");
    let n = order.len();
    (order[(pos + n - 1) % n], order[(pos + 1) % n])
}

pub fn peer(h: &Harness, i: usize) -> Peer {
    Peer::new(h.id(i), Address::new(address(i)))
}

/// An id strictly between two ids (the ring's short way).
pub fn between(a: Id, b: Id) -> Id {
    let gap = a.distance_to(b);
    a.wrapping_add(Id::from_fraction(gap.as_fraction() / 2.0))
}

pub async fn metric(h: &Harness, i: usize, series: &str) -> f64 {
    h.metric(i, series).await
}

/// "`succ` leaves" in `succ`'s name, handing `victim` an empty successor list.
pub fn spoofed_leaving(
    h: &Harness,
    ring_id: Option<RingId>,
    victim: usize,
    succ: usize,
) -> RequestEnvelope {
    RequestEnvelope::new(
        ring_id,
        peer(h, succ),
        Request::Leaving {
            predecessor: Some(peer(h, victim)),
            successors: vec![],
        },
    )
}

pub fn is_refused(r: &ResponseEnvelope) -> bool {
    matches!(
        r.body,
        Response::Rejected {
            reason: Rejection::Unauthenticated
        }
    ) && r.ring_id.is_none()
}
