//! The transport conformance suite: the same checks for every transport, through the shared
//! layers, against test handlers. A transport passes when every check here passes on it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chordnet::config::Config;
use chordnet::id::Id;
use chordnet::metrics::Metrics;
use chordnet::transport::layers::{Layered, serving};
use chordnet::transport::{
    BlobAnswer, BlobClient, BlobHandler, BlobQuery, Body, BodyError, BoxFuture, Handlers, Object,
    ObjectInfo, PutReply, Refusal, RefusalKind, RingClient, RingHandler, ServeOptions,
    TraceCarrier, TransportError, TransportFactory,
};
use chordnet::wire::Peer;
use chordnet::wire::files::{FileMeta, Version};
use chordnet::wire::ring::{Request, RequestEnvelope, Response, ResponseEnvelope};
use futures_util::StreamExt;
use futures_util::stream;

/// How a transport under test names its peers.
pub trait Under: Send + Sync {
    fn factory(&self) -> Arc<dyn TransportFactory>;
    /// Where the `i`-th test server listens and what it advertises.
    fn endpoint(&self, i: usize) -> (SocketAddr, String);
    /// An address nobody serves.
    fn nobody(&self) -> String;
}

/// The largest body the test servers accept.
pub const MAX_BODY: u64 = 96 << 20;

/// What the test handlers saw.
#[derive(Default)]
pub struct Seen {
    pub traces: Mutex<Vec<Vec<(String, String)>>>,
    /// Per put: bytes read and whether the stream ended cleanly.
    pub puts: Mutex<Vec<(u64, Result<(), BodyError>)>>,
    /// Bytes the handler consumed of the put in progress.
    pub consumed: AtomicU64,
    /// Content the handler keeps (small objects only).
    pub objects: Mutex<HashMap<Id, (FileMeta, Bytes)>>,
}

struct TestRing {
    me: Peer,
    seen: Arc<Seen>,
}

impl RingHandler for TestRing {
    fn handle(
        &self,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'_, ResponseEnvelope> {
        Box::pin(async move {
            let fields = trace
                .fields()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            self.seen
                .traces
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(fields);
            let body = match request.body {
                // Notify answers late: the caller's deadline is what ends it.
                Request::Notify => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Response::Ack
                }
                Request::FindSuccessor { .. } => Response::Found {
                    successors: vec![request.from.clone(), self.me.clone()],
                },
                _ => Response::Ack,
            };
            ResponseEnvelope::new(request.ring_id, self.me.clone(), body)
        })
    }
}

struct TestBlob {
    seen: Arc<Seen>,
    /// Consume put bodies this slowly (per 64 KiB), to show back-pressure.
    slow: Option<Duration>,
}

/// Deterministic content of `len` bytes, produced as it is read; counts what was produced.
pub fn pattern(len: u64, produced: Arc<AtomicU64>) -> Body {
    const PIECE: u64 = 64 * 1024;
    let chunks = stream::unfold(0u64, move |at| {
        let produced = Arc::clone(&produced);
        async move {
            if at >= len {
                return None;
            }
            let n = PIECE.min(len - at);
            let data: Vec<u8> = (at..at + n).map(|i| (i % 251) as u8).collect();
            produced.fetch_add(n, Ordering::SeqCst);
            Some((Ok(Bytes::from(data)), at + n))
        }
    });
    Body::new(len, chunks.boxed())
}

/// The object `get` serves for ids made with [`big_id`]: `size` bytes of [`pattern`].
pub fn big_id(size: u64) -> Id {
    Id::from_parts(0x00b1_6000, u128::from(size))
}

fn size_of_big(id: Id) -> Option<u64> {
    let hex = id.to_string();
    hex.starts_with("00b16000")
        .then(|| u64::from_str_radix(&hex[8..], 16).ok())?
}

impl BlobHandler for TestBlob {
    fn put(&self, meta: FileMeta, body: Option<Body>) -> BoxFuture<'_, Result<PutReply, Refusal>> {
        Box::pin(async move {
            if meta.name == "full" {
                return Err(Refusal::new(RefusalKind::InsufficientStorage, "disk full"));
            }
            let mut got = 0u64;
            let mut kept = Vec::new();
            let mut outcome = Ok(());
            if let Some(mut body) = body {
                self.seen.consumed.store(0, Ordering::SeqCst);
                while let Some(chunk) = body.next().await {
                    match chunk {
                        Ok(c) => {
                            got += c.len() as u64;
                            self.seen.consumed.store(got, Ordering::SeqCst);
                            if kept.len() < (1 << 20) {
                                kept.extend_from_slice(&c);
                            }
                            if let Some(d) = self.slow {
                                tokio::time::sleep(d).await;
                            }
                        }
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                }
            }
            let ok = outcome.is_ok();
            self.seen
                .puts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((got, outcome));
            if !ok {
                return Err(Refusal::new(RefusalKind::Unavailable, "transfer failed"));
            }
            if got <= (1 << 20) {
                self.seen
                    .objects
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(meta.id, (meta.clone(), Bytes::from(kept)));
            }
            Ok(PutReply {
                stored: true,
                replaced: false,
                current: meta,
            })
        })
    }

    fn get(&self, id: Id) -> BoxFuture<'_, Result<Option<Object>, Refusal>> {
        Box::pin(async move {
            if let Some(size) = size_of_big(id) {
                let meta = meta_of("big", id, size);
                return Ok(Some(Object {
                    meta,
                    body: pattern(size, Arc::new(AtomicU64::new(0))),
                }));
            }
            let found = self
                .seen
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned();
            Ok(found.map(|(meta, data)| Object {
                meta,
                body: Body::from_bytes(data),
            }))
        })
    }

    fn get_shared<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Body>, Refusal>> {
        Box::pin(async move {
            Ok((name == "shared ünïcode.txt")
                .then(|| Body::from_bytes(Bytes::from_static(b"shared!"))))
        })
    }

    fn query(&self, query: BlobQuery) -> BoxFuture<'_, Result<BlobAnswer, Refusal>> {
        Box::pin(async move {
            Ok(match query {
                BlobQuery::Info { id } => BlobAnswer::Info(ObjectInfo {
                    meta: self
                        .seen
                        .objects
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&id)
                        .map(|(m, _)| m.clone()),
                    providers: Vec::new(),
                }),
                BlobQuery::PutProvider { .. } => BlobAnswer::Done,
                BlobQuery::Missing { have } => BlobAnswer::Missing {
                    ids: have.into_iter().map(|(id, _)| id).collect(),
                },
            })
        })
    }
}

pub fn meta_of(name: &str, id: Id, size: u64) -> FileMeta {
    FileMeta {
        name: name.into(),
        id,
        size,
        sha256: String::new(),
        version: Version {
            millis: 1,
            logical: 0,
            origin: Id::ZERO,
        },
        deleted: false,
    }
}

/// One test server and a client (through the shared layers) that calls it.
pub struct Bench {
    pub server: Peer,
    pub client: Arc<Layered>,
    pub seen: Arc<Seen>,
    pub nobody: String,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub fn config() -> Config {
    let mut c = Config::default();
    c.ring.rpc_timeout = Duration::from_millis(300);
    c.transport.progress_timeout = Duration::from_millis(800);
    c.transport.bulk_floor = Duration::from_secs(2);
    c
}

/// Starts a test server on `under` (its `slot`-th endpoint), and a client.
pub async fn bench(under: &dyn Under, slot: usize, slow: Option<Duration>) -> Bench {
    let factory = under.factory();
    let (listen, advertise) = under.endpoint(slot);
    let address = factory.parse_address(&advertise).expect("valid address");
    let server = Peer::new(Id::hash(advertise.as_bytes()), address.clone());
    let seen = Arc::new(Seen::default());
    let config = config();
    let metrics = Metrics::new().expect("metrics");
    let handlers = Handlers {
        ring: Arc::new(TestRing {
            me: server.clone(),
            seen: Arc::clone(&seen),
        }),
        blob: Arc::new(TestBlob {
            seen: Arc::clone(&seen),
            slow,
        }),
    };
    let handlers = serving(handlers, server.clone(), &config, metrics.clone());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let options = ServeOptions {
        listen,
        advertise: address,
        max_body: MAX_BODY,
    };
    factory.serve(options, handlers, rx).await.expect("serve");
    let clients = factory.clients(config.ring.rpc_timeout).expect("clients");
    // The client's own address differs from the server's: no loopback shortcut.
    let me = factory.parse_address(&under.nobody()).expect("address");
    let client = Layered::new(clients, me, &config, metrics);
    Bench {
        server,
        client,
        seen,
        nobody: under.nobody(),
        stop,
    }
}

fn ping(from: &Peer) -> RequestEnvelope {
    RequestEnvelope::new(None, from.clone(), Request::Ping)
}

// ----- the checks ---------------------------------------------------------------------------

pub async fn request_response(under: &dyn Under) {
    let b = bench(under, 0, None).await;
    let me = Peer::from_address(&b.nobody);
    let answer = b
        .client
        .call(&b.server.address, ping(&me), TraceCarrier::default())
        .await
        .expect("answer");
    assert_eq!(answer.body, Response::Ack);
    assert_eq!(answer.from, b.server);
    let target = Id::hash("k");
    let req = RequestEnvelope::new(None, me.clone(), Request::FindSuccessor { target });
    let answer = b
        .client
        .call(&b.server.address, req, TraceCarrier::default())
        .await
        .expect("answer");
    assert_eq!(
        answer.body,
        Response::Found {
            successors: vec![me, b.server.clone()]
        }
    );
}

pub async fn control_calls_time_out_at_the_rpc_timeout(under: &dyn Under) {
    let b = bench(under, 0, None).await;
    let me = Peer::from_address(&b.nobody);
    let started = Instant::now();
    let req = RequestEnvelope::new(None, me, Request::Notify);
    let answer = b
        .client
        .call(&b.server.address, req, TraceCarrier::default())
        .await;
    let took = started.elapsed();
    assert_eq!(
        answer,
        Err(TransportError::Timeout(Duration::from_millis(300)))
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

pub async fn refused_peers_fail_at_once(under: &dyn Under) {
    let b = bench(under, 0, None).await;
    let me = Peer::from_address(&b.nobody);
    let nobody = chordnet::wire::Address::new(&b.nobody);
    let answer = b
        .client
        .call(&nobody, ping(&me), TraceCarrier::default())
        .await;
    assert!(
        matches!(answer, Err(TransportError::Unreachable(_))),
        "{answer:?}"
    );
    let got = b
        .client
        .get(&nobody, Id::hash("x"), TraceCarrier::default())
        .await;
    assert!(
        matches!(got, Err(TransportError::Unreachable(_))),
        "{:?}",
        got.err()
    );
}

pub async fn refusals_keep_their_kind(under: &dyn Under) {
    let b = bench(under, 0, None).await;
    let meta = meta_of("full", Id::hash("full"), 3);
    let body = Some(Body::from_bytes(Bytes::from_static(b"abc")));
    let answer = b
        .client
        .put(&b.server.address, meta, body, TraceCarrier::default())
        .await;
    match answer {
        Err(TransportError::Refused(r)) => {
            assert_eq!(r.kind, RefusalKind::InsufficientStorage);
            assert!(r.detail.contains("disk full"), "{r}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub async fn objects_round_trip_with_queries(under: &dyn Under) {
    let b = bench(under, 0, None).await;
    let id = Id::hash("small ünïcode name");
    let meta = meta_of("small ünïcode name", id, 5);
    let reply = b
        .client
        .put(
            &b.server.address,
            meta.clone(),
            Some(Body::from_bytes(Bytes::from_static(b"hello"))),
            TraceCarrier::default(),
        )
        .await
        .expect("put");
    assert!(reply.holds(&meta));
    let o = b
        .client
        .get(&b.server.address, id, TraceCarrier::default())
        .await
        .expect("get")
        .expect("found");
    assert_eq!(o.meta, meta);
    assert_eq!(o.body.collect(100).await.expect("body"), &b"hello"[..]);
    let none = b
        .client
        .get(&b.server.address, Id::hash("nope"), TraceCarrier::default())
        .await
        .expect("get");
    assert!(none.is_none());
    let info = chordnet::transport::info(&*b.client, &b.server.address, id)
        .await
        .expect("info");
    assert_eq!(info.meta, Some(meta.clone()));
    let missing =
        chordnet::transport::missing(&*b.client, &b.server.address, vec![(id, meta.version)])
            .await
            .expect("missing");
    assert_eq!(missing, vec![id]);
    let shared = b
        .client
        .get_shared(
            &b.server.address,
            "shared ünïcode.txt",
            TraceCarrier::default(),
        )
        .await
        .expect("shared")
        .expect("found");
    assert_eq!(shared.collect(100).await.expect("body"), &b"shared!"[..]);
    // A tombstone travels without content.
    let tomb = FileMeta {
        deleted: true,
        size: 0,
        ..meta_of("t", Id::hash("t"), 0)
    };
    let reply = b
        .client
        .put(
            &b.server.address,
            tomb.clone(),
            None,
            TraceCarrier::default(),
        )
        .await
        .expect("tombstone");
    assert!(reply.holds(&tomb));
}

/// 64 MiB each way, streamed: the receiver sees every byte, in order.
pub async fn large_bodies_stream_both_ways(under: &dyn Under) {
    let b = bench(under, 0, None).await;
    let size = 64u64 << 20;
    let produced = Arc::new(AtomicU64::new(0));
    let meta = meta_of("big-put", Id::hash("big-put"), size);
    b.client
        .put(
            &b.server.address,
            meta,
            Some(pattern(size, Arc::clone(&produced))),
            TraceCarrier::default(),
        )
        .await
        .expect("put");
    let puts = b
        .seen
        .puts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(puts, vec![(size, Ok(()))]);
    let o = b
        .client
        .get(&b.server.address, big_id(size), TraceCarrier::default())
        .await
        .expect("get")
        .expect("found");
    assert_eq!(o.meta.size, size);
    let mut body = o.body;
    let mut at = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("chunk");
        for (k, byte) in chunk.iter().enumerate() {
            assert_eq!(
                *byte,
                ((at + k as u64) % 251) as u8,
                "byte {}",
                at + k as u64
            );
        }
        at += chunk.len() as u64;
    }
    assert_eq!(at, size);
}

/// A slow receiver slows the sender: the sender runs at most a few MiB ahead.
pub async fn back_pressure_bounds_what_the_sender_buffers(under: &dyn Under) {
    let b = bench(under, 0, Some(Duration::from_millis(2))).await;
    let size = 64u64 << 20;
    let produced = Arc::new(AtomicU64::new(0));
    let meta = meta_of("slow", Id::hash("slow"), size);
    let client = Arc::clone(&b.client);
    let to = b.server.address.clone();
    let body = pattern(size, Arc::clone(&produced));
    let put = tokio::spawn(async move {
        client
            .put(&to, meta, Some(body), TraceCarrier::default())
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut max_ahead = 0u64;
    while b.seen.consumed.load(Ordering::SeqCst) < (8 << 20) {
        assert!(Instant::now() < deadline, "the receiver never got 8 MiB");
        let ahead = produced
            .load(Ordering::SeqCst)
            .saturating_sub(b.seen.consumed.load(Ordering::SeqCst));
        max_ahead = max_ahead.max(ahead);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    put.abort();
    eprintln!(
        "sender ran at most {} KiB ahead of the receiver",
        max_ahead >> 10
    );
    assert!(max_ahead < (16 << 20), "sender ran {max_ahead} bytes ahead");
}

/// A caller that goes away mid-transfer: the receiver sees the stream fail, never complete.
pub async fn cancelled_transfers_end_at_the_receiver(under: &dyn Under) {
    let b = bench(under, 0, Some(Duration::from_millis(1))).await;
    let size = 64u64 << 20;
    let meta = meta_of("cancel", Id::hash("cancel"), size);
    let client = Arc::clone(&b.client);
    let to = b.server.address.clone();
    let body = pattern(size, Arc::new(AtomicU64::new(0)));
    let put = tokio::spawn(async move {
        client
            .put(&to, meta, Some(body), TraceCarrier::default())
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.seen.consumed.load(Ordering::SeqCst) < (1 << 20) {
        assert!(Instant::now() < deadline, "the transfer never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    put.abort();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let puts = b
            .seen
            .puts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((got, outcome)) = puts.first() {
            assert!(outcome.is_err(), "a cancelled transfer completed");
            assert!(*got < size);
            break;
        }
        assert!(Instant::now() < deadline, "the receiver never noticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A sender that stalls: the receiver gives up after the progress time-out.
pub async fn stalled_transfers_fail_after_the_progress_timeout(under: &dyn Under) {
    let b = bench(under, 0, None).await;
    let meta = meta_of("stall", Id::hash("stall"), 1000);
    let stalled = stream::iter([Ok(Bytes::from_static(b"ab"))])
        .chain(stream::pending())
        .boxed();
    let started = Instant::now();
    let answer = b
        .client
        .put(
            &b.server.address,
            meta,
            Some(Body::new(1000, stalled)),
            TraceCarrier::default(),
        )
        .await;
    assert!(answer.is_err(), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

pub async fn trace_context_reaches_the_handler(under: &dyn Under) {
    let b = bench(under, 0, None).await;
    let me = Peer::from_address(&b.nobody);
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let carrier = TraceCarrier::from_fields([("traceparent", tp), ("x-other", "dropped")]);
    b.client
        .call(&b.server.address, ping(&me), carrier)
        .await
        .expect("answer");
    let traces = b
        .seen
        .traces
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(
        traces,
        vec![vec![("traceparent".to_owned(), tp.to_owned())]]
    );
}

pub async fn bad_and_oversized_messages_are_refused(under: &dyn Under) {
    let b = bench(under, 0, None).await;
    let me = Peer::from_address(&b.nobody);
    // A protocol version this build does not speak.
    let mut req = ping(&me);
    req.protocol = 99;
    let answer = b
        .client
        .call(&b.server.address, req, TraceCarrier::default())
        .await
        .expect("an answer");
    assert!(
        chordnet::transport::layers::is_protocol_rejection(&answer),
        "{answer:?}"
    );
    // A body over the server's limit never reaches the handler.
    let size = MAX_BODY + 1;
    let meta = meta_of("huge", Id::hash("huge"), size);
    let answer = b
        .client
        .put(
            &b.server.address,
            meta,
            Some(pattern(size, Arc::new(AtomicU64::new(0)))),
            TraceCarrier::default(),
        )
        .await;
    assert!(answer.is_err(), "{answer:?}");
    assert!(
        b.seen
            .puts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    );
    // A body shorter than its metadata says is an error, not a short object.
    let meta = meta_of("short", Id::hash("short"), 10);
    let answer = b
        .client
        .put(
            &b.server.address,
            meta,
            Some(Body::new(
                10,
                stream::iter([Ok(Bytes::from_static(b"abc"))]).boxed(),
            )),
            TraceCarrier::default(),
        )
        .await;
    assert!(answer.is_err(), "{answer:?}");
    assert!(
        b.seen
            .objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&Id::hash("short"))
            .is_none()
    );
}

/// Every check, for the `conformance!` macro.
#[macro_export]
macro_rules! conformance {
    ($module:ident, $under:expr) => {
        mod $module {
            use super::*;
            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let under = $under;
                        conformance::$name(&under).await;
                    }
                };
            }
            check!(request_response);
            check!(control_calls_time_out_at_the_rpc_timeout);
            check!(refused_peers_fail_at_once);
            check!(refusals_keep_their_kind);
            check!(objects_round_trip_with_queries);
            check!(large_bodies_stream_both_ways);
            check!(back_pressure_bounds_what_the_sender_buffers);
            check!(cancelled_transfers_end_at_the_receiver);
            check!(stalled_transfers_fail_after_the_progress_timeout);
            check!(trace_context_reaches_the_handler);
            check!(bad_and_oversized_messages_are_refused);
        }
    };
}
