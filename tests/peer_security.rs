//! The attacks of issue 14, each made with a hand-made peer client (the memory transport's
//! clients, without the shared layers) against a 4-peer in-process ring:
//!
//! - with `security.ring_secret_file` set, every attack is refused however it is dressed up
//!   (no authenticator, another ring's secret, a replay, a stale timestamp, a `from` that is not
//!   the signer) and no routing entry, key or file changes;
//! - with security off, the attacks a shared secret is needed for still succeed (the test can
//!   fail), and the ones the ring's own rules now stop are refused there too;

use crate::support::attacker;
use crate::support::harness;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use attacker::*;
use chordnet::id::Id;
use chordnet::transport::auth::digest_json;
use chordnet::transport::auth::serve::method;
use chordnet::transport::memory::MemoryTransport;
use chordnet::transport::{
    BlobAnswer, BlobHandler, BlobQuery, Body, BoxFuture, Handlers, Object, PutReply, Refusal,
    RingHandler, ServeOptions, TraceCarrier, TransportError, TransportFactory,
};
use chordnet::wire::files::{FileMeta, ProviderRecord, Version};
use chordnet::wire::ring::{Request, RequestEnvelope, Response, ResponseEnvelope};
use chordnet::wire::{Address, Peer};
use harness::{Harness, address, content, wait_until};

/// Range hijack, null ring id and spoofed `Leaving`, each dressed every way: with the ring
/// secret nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_attacks_are_refused_with_a_ring_secret() {
    let dir = secret_dir("ring");
    let file = dir.join("ring-secret");
    write_keys(&file, &[RING_KEY]);
    let h = ring("sec-ring", Some(&file)).await;
    let a = Attacker::new(&h);
    let victim = 0;
    let (pred, succ) = neighbours(&h, victim);
    let before = routing(&h);
    let ring_id = h.peer(victim).service.status().ring_id;
    let fake = Peer::new(between(h.id(pred), h.id(victim)), Address::new("evil:1"));
    for dress in REFUSED {
        let notify = RequestEnvelope::new(ring_id, fake.clone(), Request::Notify);
        let r = a.ring(&address(victim), dress, notify).await;
        assert!(is_refused(&r), "{dress:?}: {r:?}");
        let null = RequestEnvelope::new(None, fake.clone(), Request::Notify);
        assert!(
            is_refused(&a.ring(&address(victim), dress, null).await),
            "{dress:?}"
        );
        let leaving = spoofed_leaving(&h, ring_id, victim, succ);
        assert!(
            is_refused(&a.ring(&address(victim), dress, leaving).await),
            "{dress:?}"
        );
        // Even a ping reveals nothing: no ring id, no successor list.
        let ping = RequestEnvelope::new(None, fake.clone(), Request::GetNeighbors);
        let r = a.ring(&address(victim), dress, ping).await;
        assert!(is_refused(&r), "{dress:?}");
        let json = serde_json::to_string(&r).expect("json");
        let shown = ring_id.map(|r| r.to_string()).unwrap_or_default();
        assert!(!json.contains(&shown[..8]), "{json}");
    }
    // A replayed message: captured from the real predecessor (its own harmless notify),
    // accepted once, refused the second time.
    let signer = Attacker::signer(RING_KEY, h.id(pred));
    let captured = RequestEnvelope::new(ring_id, peer(&h, pred), Request::Notify);
    let mut trace = TraceCarrier::default();
    signer.sign_into(
        &mut trace,
        &method::ring(&captured),
        &digest_json(&captured),
        Some(ring_id),
    );
    let to = Address::new(address(victim));
    let first = a
        .clients
        .ring
        .call(&to, captured.clone(), trace.clone())
        .await
        .expect("answer");
    assert_eq!(first.body, Response::Ack);
    let again = a
        .clients
        .ring
        .call(&to, captured, trace)
        .await
        .expect("answer");
    assert!(is_refused(&again), "{again:?}");
    assert_eq!(routing(&h), before, "no routing entry changed");
    for reason in ["missing", "bad_mac", "stale", "spoofed_sender", "replayed"] {
        let series = format!("chordnet_peer_auth_rejections_total{{reason=\"{reason}\"}}");
        assert!(metric(&h, victim, &series).await >= 1.0, "{series}");
    }
    assert!(h.settled().await);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same ring attacks without a secret: a Notify hijacks the range and a spoofed Leaving
/// drops the successor (the attacks succeed: this test can fail); a null ring id no longer
/// skips the ring check, and an empty successor list no longer empties the victim's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_notify_and_leaving_attacks_succeed_but_the_ring_rules_hold() {
    let h = ring("sec-open-ring", None).await;
    let a = Attacker::new(&h);
    let victim = 0;
    let (pred, succ) = neighbours(&h, victim);
    let fake = Peer::new(between(h.id(pred), h.id(victim)), Address::new("evil:1"));
    // The ring id is not secret without a ring secret: any ping answers with it.
    let ping = RequestEnvelope::new(None, fake.clone(), Request::Ping);
    let ring_id = a.ring(&address(victim), Dress::Plain, ping).await.ring_id;
    assert!(ring_id.is_some());

    let changes = "chordnet_predecessor_changes_total";
    let before = metric(&h, victim, changes).await;
    let null = RequestEnvelope::new(None, fake.clone(), Request::Notify);
    let r = a.ring(&address(victim), Dress::Plain, null).await;
    assert!(matches!(r.body, Response::Rejected { .. }), "{r:?}");
    let status = h.peer(victim).service.status();
    assert_eq!(status.predecessor.as_ref().map(|p| p.id), Some(h.id(pred)));
    assert_eq!(metric(&h, victim, changes).await, before);

    let left = "chordnet_peer_leaves_seen_total";
    let seen = metric(&h, victim, left).await;
    let leaving = spoofed_leaving(&h, ring_id, victim, succ);
    assert_eq!(
        a.ring(&address(victim), Dress::Plain, leaving).await.body,
        Response::Ack
    );
    wait_until(
        "the spoofed leave is taken",
        Duration::from_secs(5),
        || async { metric(&h, victim, left).await > seen },
    )
    .await;
    // The victim never ends up alone: its own list follows the (empty) one it was handed.
    let s = h.peer(victim).service.status();
    assert!(
        s.successors.iter().any(|p| p.id != h.id(victim)),
        "{:?}",
        s.successors
    );

    let notify = RequestEnvelope::new(ring_id, fake.clone(), Request::Notify);
    assert_eq!(
        a.ring(&address(victim), Dress::Plain, notify).await.body,
        Response::Ack
    );
    wait_until("the range is hijacked", Duration::from_secs(5), || async {
        metric(&h, victim, changes).await > before
    })
    .await;
    // The fake peer never answers: the ring heals.
    h.converged().await;
}

/// Forged newer content, a far-future version, a tombstone, an id that is not SHA-1 of the
/// name, a forged provider record (SSRF): refused every way with a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_attacks_are_refused_with_a_ring_secret() {
    let dir = secret_dir("data");
    let file = dir.join("ring-secret");
    write_keys(&file, &[RING_KEY]);
    let h = ring("sec-data", Some(&file)).await;
    let data = content(1, 1, 3000);
    assert_eq!(h.put(0, "report.txt", data.clone()).await.status(), 201);
    let holders = h.holders(0, "report.txt").await;
    assert!(!holders.is_empty());
    let a = Attacker::new(&h);
    let forged = forgeries("report.txt", b"attacker bytes");
    let ssrf = Ssrf::serve(&h).await;
    for dress in REFUSED.into_iter().filter(|d| *d != Dress::NotTheSender) {
        for (what, meta, body) in &forged {
            for holder in &holders {
                let r = a
                    .put(&address(*holder), dress, meta.clone(), body.clone())
                    .await;
                let refused = r.as_ref().err().and_then(TransportError::refusal).is_some();
                assert!(refused, "{what} {dress:?}: {r:?}");
            }
        }
        let q = ssrf.record_query("never-uploaded.bin");
        let r = a.query(&address(0), dress, q, ssrf.id).await;
        assert!(r.is_err(), "provider record {dress:?}: {r:?}");
    }
    // A signed provider record must name its signer.
    let q = ssrf.record_query("never-uploaded.bin");
    let r = a.query(&address(0), Dress::NotTheSender, q, ssrf.id).await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(h.get(1, "report.txt").await, (200, data));
    assert_eq!(h.get(2, "never-uploaded.bin").await.0, 404);
    assert_eq!(
        ssrf.contacted.load(Ordering::SeqCst),
        0,
        "no request to the record's address"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a secret, forged newer content and a tombstone still win (a ring secret is what
/// stops them: the test can fail), while the validation every path now has still refuses a
/// far-future version and an id that is not SHA-1 of the name, and a provider record naming
/// a host that is not a ring peer is never contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_forged_writes_win_but_validation_and_provider_checks_hold() {
    let h = ring("sec-open-data", None).await;
    let data = content(2, 1, 3000);
    assert_eq!(h.put(0, "report.txt", data.clone()).await.status(), 201);
    assert_eq!(h.put(0, "other.txt", data.clone()).await.status(), 201);
    let holders = h.holders(0, "report.txt").await;
    let a = Attacker::new(&h);
    let forged = forgeries("report.txt", b"attacker bytes");
    for (what, meta, body) in &forged {
        let r = a
            .put(
                &address(holders[0]),
                Dress::Plain,
                meta.clone(),
                body.clone(),
            )
            .await;
        match *what {
            "newer content" => assert!(r.is_ok_and(|p| p.stored), "{what}"),
            "far-future version" | "id mismatch" => {
                assert!(
                    r.as_ref().err().and_then(TransportError::refusal).is_some(),
                    "{what}: {r:?}"
                )
            }
            _ => {}
        }
    }
    wait_until(
        "the forged content is served",
        Duration::from_secs(20),
        || async { h.get(1, "report.txt").await == (200, b"attacker bytes".to_vec()) },
    )
    .await;
    let tomb = forgeries("other.txt", b"")
        .into_iter()
        .find(|f| f.0 == "tombstone")
        .expect("tombstone");
    for holder in h.holders(0, "other.txt").await {
        let _ = a
            .put(&address(holder), Dress::Plain, tomb.1.clone(), None)
            .await;
    }
    assert_eq!(
        h.get(1, "other.txt").await.0,
        404,
        "one forged tombstone deletes a file"
    );

    let ssrf = Ssrf::serve(&h).await;
    let name = "never-uploaded.bin";
    let responsible = (0..4)
        .find(|i| h.id(*i) == h.true_successor(Id::hash(name)))
        .expect("owner");
    let q = ssrf.record_query(name);
    assert!(
        a.query(&address(responsible), Dress::Plain, q, ssrf.id)
            .await
            .is_ok()
    );
    assert_eq!(h.get(2, name).await.0, 404);
    assert_eq!(
        ssrf.contacted.load(Ordering::SeqCst),
        0,
        "no request to the record's address"
    );
}

/// `(what, metadata, body)` of each forged write of `name`.
fn forgeries(name: &str, bytes: &[u8]) -> Vec<(&'static str, FileMeta, Option<Vec<u8>>)> {
    use sha2::Digest;
    let sha = |b: &[u8]| {
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let version = |millis| Version {
        millis,
        logical: 0,
        origin: Id::hash("forger"),
    };
    let live = FileMeta {
        name: name.to_string(),
        id: Id::hash(name),
        size: bytes.len() as u64,
        sha256: sha(bytes),
        version: version(now_ms() + 1000),
        deleted: false,
        layout: Default::default(),
    };
    let far = FileMeta {
        version: version(u64::MAX),
        ..live.clone()
    };
    let tomb = FileMeta {
        size: 0,
        sha256: String::new(),
        deleted: true,
        ..live.clone()
    };
    let wrong_id = FileMeta {
        name: "../../etc/passwd".into(),
        ..live.clone()
    };
    vec![
        ("newer content", live, Some(bytes.to_vec())),
        ("far-future version", far, Some(bytes.to_vec())),
        ("tombstone", tomb, None),
        ("id mismatch", wrong_id, Some(bytes.to_vec())),
    ]
}

/// A host that is not a ring peer, serving whatever is asked of it and counting the asks.
struct Ssrf {
    id: Id,
    contacted: Arc<AtomicUsize>,
}

struct Counting(Arc<AtomicUsize>);

impl RingHandler for Counting {
    fn handle(&self, r: RequestEnvelope, _: TraceCarrier) -> BoxFuture<'_, ResponseEnvelope> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(ResponseEnvelope::new(
            None,
            r.from,
            Response::Ack,
        )))
    }
}

impl BlobHandler for Counting {
    fn put(&self, meta: FileMeta, _: Option<Body>) -> BoxFuture<'_, Result<PutReply, Refusal>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let reply = PutReply {
            stored: true,
            replaced: false,
            current: meta,
        };
        Box::pin(std::future::ready(Ok(reply)))
    }
    fn get(&self, _: Id) -> BoxFuture<'_, Result<Option<Object>, Refusal>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(Ok(None)))
    }
    fn get_shared<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Body>, Refusal>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let body = Body::from_bytes(bytes::Bytes::from_static(b"ssrf"));
        Box::pin(std::future::ready(Ok(Some(body))))
    }
    fn query(&self, _: BlobQuery) -> BoxFuture<'_, Result<BlobAnswer, Refusal>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(Ok(BlobAnswer::Done)))
    }
}

impl Ssrf {
    const ADDRESS: &str = "internal-service:80";

    async fn serve(h: &Harness) -> Ssrf {
        let contacted = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(Counting(Arc::clone(&contacted)));
        let (_, ready) = tokio::sync::watch::channel(true);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        std::mem::forget(stop); // served for the whole test
        let options = ServeOptions {
            listen: "127.0.0.1:0".parse().expect("address"),
            advertise: Address::new(Ssrf::ADDRESS),
            max_body: 1 << 20,
            ready,
        };
        let handlers = Handlers {
            ring: handler.clone(),
            blob: handler,
        };
        MemoryTransport::new(h.network.clone())
            .serve(options, handlers, shutdown)
            .await
            .expect("serves");
        Ssrf {
            id: Id::hash(Ssrf::ADDRESS),
            contacted,
        }
    }

    fn record_query(&self, name: &str) -> BlobQuery {
        BlobQuery::PutProvider {
            record: ProviderRecord {
                name: name.into(),
                id: Id::hash(name),
                size: 4,
                sha256: String::new(),
                peer_id: self.id,
                peer: Ssrf::ADDRESS.into(),
            },
        }
    }
}

/// A fake ring that answers every question as if it were one (a lookup ends at it, its
/// neighbours are itself), in another ring's name and without the key.
struct Lure {
    me: Peer,
}

impl RingHandler for Lure {
    fn handle(&self, r: RequestEnvelope, _: TraceCarrier) -> BoxFuture<'_, ResponseEnvelope> {
        let body = match r.body {
            Request::FindSuccessor { .. } => Response::Found {
                successors: vec![self.me.clone()],
                owns_after: None,
            },
            Request::GetNeighbors => Response::Neighbors {
                predecessor: Some(self.me.clone()),
                successors: vec![self.me.clone()],
                hint: None,
            },
            _ => Response::Ack,
        };
        let answer = ResponseEnvelope::new(Some(chordnet::wire::RingId(99)), self.me.clone(), body);
        Box::pin(std::future::ready(answer))
    }
}

/// `POST /v1/ring/join` towards a fake ring: joined without a secret (the attack works), no
/// answer at all with one (answers must be signed by a key holder, for the request they
/// answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_ring_lures_a_peer_only_without_a_secret() {
    let dir = secret_dir("lure");
    let file = dir.join("ring-secret");
    write_keys(&file, &[RING_KEY]);
    for secret in [None, Some(file.as_path())] {
        let h = Harness::start("sec-lure", 2, |_, c| {
            c.security.ring_secret_file = secret.map(Path::to_owned);
        })
        .await;
        h.converged().await;
        let lure = Address::new("lure:1");
        let me = Peer::new(Id::hash("lure:1"), lure.clone());
        let (_, ready) = tokio::sync::watch::channel(true);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let options = ServeOptions {
            listen: "127.0.0.1:0".parse().expect("address"),
            advertise: lure,
            max_body: 1 << 20,
            ready,
        };
        let counting: Arc<dyn BlobHandler> = Arc::new(Counting(Arc::new(AtomicUsize::new(0))));
        let handlers = Handlers {
            ring: Arc::new(Lure { me }),
            blob: counting,
        };
        MemoryTransport::new(h.network.clone())
            .serve(options, handlers, shutdown)
            .await
            .expect("serves");
        let left = h
            .http
            .post(h.url(1, "/v1/ring/leave"))
            .send()
            .await
            .expect("leave");
        assert_eq!(left.status(), 200);
        let join = h
            .http
            .post(h.url(1, "/v1/ring/join"))
            .json(&serde_json::json!({"bootstrap": "lure:1"}))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        let ring = h.peer(1).service.status().ring_id;
        if secret.is_none() {
            assert_eq!(join, 200, "the lure works without a secret");
            assert_eq!(ring, Some(chordnet::wire::RingId(99)));
        } else {
            assert_ne!(join, 200, "no join through unsigned answers");
            assert_ne!(ring, Some(chordnet::wire::RingId(99)));
            let refused = "chordnet_peer_auth_rejections_total{reason=\"missing\"}";
            assert!(h.metric(1, refused).await >= 1.0);
        }
        let _ = stop.send(true);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
