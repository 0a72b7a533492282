//! The attacks of issue 14, each made with a hand-made peer client (the memory transport's
//! clients, without the shared layers) against a 4-peer in-process ring:
//!
//! - with `security.ring_secret_file` set, every attack is refused however it is dressed up
//!   (no authenticator, another ring's secret, a replay, a stale timestamp, a `from` that is not
//!   the signer) and no routing entry, key or file changes;
//! - with security off, the attacks a shared secret is needed for still succeed (the test can
//!   fail), and the ones the ring's own rules now stop are refused there too;
//! - the ring secret's keys rotate during traffic with zero failed requests.

#[path = "support/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chordnet::id::Id;
use chordnet::metrics::Metrics;
use chordnet::transport::auth::serve::method;
use chordnet::transport::auth::{FIELD, Keyring, RingAuth, digest_json, digest_put};
use chordnet::transport::memory::MemoryTransport;
use chordnet::transport::{
    BlobAnswer, BlobHandler, BlobQuery, Body, BoxFuture, Clients, Handlers, Object, PutReply,
    Refusal, RingHandler, ServeOptions, TraceCarrier, TransportError, TransportFactory,
};
use chordnet::wire::files::{FileMeta, ProviderRecord, Version};
use chordnet::wire::ring::{Rejection, Request, RequestEnvelope, Response, ResponseEnvelope};
use chordnet::wire::{Address, Peer, RingId};
use harness::{Harness, address, content, wait_until};

const RING_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const OTHER_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const NEW_KEY: &str = "3333333333333333333333333333333333333333333333333333333333333333";

/// How an attacker dresses a message up.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dress {
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

const REFUSED: [Dress; 4] = [
    Dress::Unsigned,
    Dress::OtherRing,
    Dress::Stale,
    Dress::NotTheSender,
];

fn secret_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chordnet-sec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("secret dir");
    dir
}

fn write_keys(file: &Path, keys: &[&str]) {
    let text = format!("# ring secret\n{}\n", keys.join("\n"));
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).expect("key file");
    std::fs::rename(&tmp, file).expect("key file");
}

async fn ring(name: &str, secret: Option<&Path>) -> Harness {
    let h = Harness::start(name, 4, |_, c| {
        c.security.ring_secret_file = secret.map(Path::to_owned);
    })
    .await;
    h.converged().await;
    h
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The hand-made peer: raw transport clients and, when dressed so, a key.
struct Attacker {
    clients: Clients,
}

impl Attacker {
    fn new(h: &Harness) -> Attacker {
        let clients = MemoryTransport::new(h.network.clone())
            .clients(Duration::from_secs(2))
            .expect("clients");
        Attacker { clients }
    }

    fn signer(key: &str, as_id: Id) -> RingAuth {
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
    fn carrier(
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

    async fn ring(&self, to: &str, dress: Dress, request: RequestEnvelope) -> ResponseEnvelope {
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

    async fn put(
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

    async fn query(
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
fn routing(h: &Harness) -> Vec<(Option<Id>, Vec<Id>)> {
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
fn neighbours(h: &Harness, victim: usize) -> (usize, usize) {
    let mut order: Vec<usize> = h.running();
    order.sort_by_key(|i| h.id(*i));
    let pos = order
        .iter()
        .position(|i| *i == victim)
        .expect("victim runs");
    let n = order.len();
    (order[(pos + n - 1) % n], order[(pos + 1) % n])
}

fn peer(h: &Harness, i: usize) -> Peer {
    Peer::new(h.id(i), Address::new(address(i)))
}

/// An id strictly between two ids (the ring's short way).
fn between(a: Id, b: Id) -> Id {
    let gap = a.distance_to(b);
    a.wrapping_add(Id::from_fraction(gap.as_fraction() / 2.0))
}

async fn metric(h: &Harness, i: usize, series: &str) -> f64 {
    h.metric(i, series).await
}

/// "`succ` leaves" in `succ`'s name, handing `victim` an empty successor list.
fn spoofed_leaving(
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

fn is_refused(r: &ResponseEnvelope) -> bool {
    matches!(
        r.body,
        Response::Rejected {
            reason: Rejection::Unauthenticated
        }
    ) && r.ring_id.is_none()
}

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

/// Install a new key everywhere, sign with it, remove the old one, while uploads and
/// downloads go on: no request fails, the ring stays one ring, and the old key is refused
/// at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_during_traffic_without_a_failed_request() {
    let dir = secret_dir("rotate");
    let file = dir.join("ring-secret");
    write_keys(&file, &[RING_KEY]);
    let h = Arc::new(ring("sec-rotate", Some(&file)).await);
    for k in 0..8 {
        let name = format!("f{k}.bin");
        assert_eq!(h.put(k % 4, &name, content(k, 0, 2000)).await.status(), 201);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (h, stop) = (Arc::clone(&h), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, Vec::new());
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let k = n % 8;
                let via = n % 4;
                let name = format!("f{k}.bin");
                let (status, body) = h.get(via, &name).await;
                if status == 200 && body == content(k, 0, 2000) {
                    ok += 1;
                } else {
                    failed.push(format!("GET {name} via {via}: {status}"));
                }
                if n % 5 == 0 {
                    let new = format!("n{n}.bin");
                    let s = h.put(via, &new, content(n, 1, 500)).await.status().as_u16();
                    if s == 201 {
                        ok += 1
                    } else {
                        failed.push(format!("PUT {new}: {s}"))
                    }
                }
                n += 1;
            }
            (ok, failed)
        })
    };
    let steps: [&[&str]; 3] = [&[RING_KEY, NEW_KEY], &[NEW_KEY, RING_KEY], &[NEW_KEY]];
    for (k, keys) in steps.iter().enumerate() {
        write_keys(&file, keys);
        let want = (k + 1) as f64;
        for i in 0..4 {
            let series = "chordnet_ring_secret_reloads_total{outcome=\"changed\"}";
            wait_until(
                "every peer reloads its keys",
                Duration::from_secs(20),
                || async { metric(&h, i, series).await >= want },
            )
            .await;
        }
        // Traffic under each step's keys for a while (counted by requests, not by time).
        let before = metric(
            &h,
            0,
            "chordnet_peer_rpcs_total{method=\"find_successor\",outcome=\"ok\"}",
        )
        .await;
        wait_until(
            "traffic under the new keys",
            Duration::from_secs(30),
            || async {
                metric(
                    &h,
                    0,
                    "chordnet_peer_rpcs_total{method=\"find_successor\",outcome=\"ok\"}",
                )
                .await
                    >= before + 20.0
            },
        )
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = traffic.await.expect("traffic");
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(ok >= 20, "{ok} requests");
    let mut rejected = 0.0;
    for i in 0..4 {
        for reason in ["bad_mac", "missing"] {
            let series = format!("chordnet_peer_auth_rejections_total{{reason=\"{reason}\"}}");
            rejected += metric(&h, i, &series).await;
        }
    }
    assert_eq!(rejected, 0.0, "no peer refused another during the rotation");
    assert!(h.settled().await, "one ring");
    // The old key is gone: a message signed with it is refused.
    let a = Attacker::new(&h);
    let ring_id = h.peer(0).service.status().ring_id;
    let ping = RequestEnvelope::new(ring_id, peer(&h, 1), Request::Ping);
    let signer = Attacker::signer(RING_KEY, h.id(1));
    let mut trace = TraceCarrier::default();
    signer.sign_into(
        &mut trace,
        &method::ring(&ping),
        &digest_json(&ping),
        Some(ring_id),
    );
    let r = a
        .clients
        .ring
        .call(&Address::new(address(0)), ping, trace)
        .await
        .expect("answer");
    assert!(is_refused(&r), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A key file that cannot be used stops the peer at start with an error naming the file, not
/// the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_or_missing_key_file_stops_the_peer_with_a_clear_error() {
    let dir = secret_dir("bad");
    let file = dir.join("ring-secret");
    std::fs::write(&file, "abcdef0123\n").expect("file");
    let mut c = chordnet::config::Config::default();
    c.transport.kind = chordnet::config::TransportKind::Memory;
    c.node.advertise = "lonely:1".into();
    c.api.listen = "127.0.0.1:0".parse().expect("address");
    c.files.shared_dir = dir.join("shared");
    c.files.store_dir = dir.join("data");
    c.security.ring_secret_file = Some(file.clone());
    let factory = Arc::new(MemoryTransport::new(
        chordnet::transport::memory::MemoryNetwork::new(),
    ));
    let e = chordnet::peer::start_with(c.clone(), factory.clone())
        .await
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("ring_secret_file") && text.contains("5 bytes"),
        "{text}"
    );
    assert!(!text.contains("abcdef0123"), "{text}");
    c.security.ring_secret_file = Some(dir.join("absent"));
    let e = chordnet::peer::start_with(c, factory)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("absent"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
