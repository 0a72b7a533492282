//! The conformance suite's test rig: handlers that record what they see, deterministic bodies,
//! and a bench (one test server and a layered client) on any transport.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chordnet::config::Config;
use chordnet::id::Id;
use chordnet::metrics::Metrics;
use chordnet::transport::layers::{Layered, serving};
use chordnet::transport::{
    BlobAnswer, BlobHandler, BlobQuery, Body, BodyError, BoxFuture, ClientOptions, Handlers,
    Object, ObjectInfo, PutReply, Refusal, RefusalKind, RingHandler, ServeOptions, TraceCarrier,
    TransportFactory,
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
    /// Block ids the handler was told are referenced.
    pub referenced: Mutex<Vec<Id>>,
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
                    owns_after: None,
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
                BlobQuery::Referenced { ids } => {
                    self.seen
                        .referenced
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(ids);
                    BlobAnswer::Done
                }
                // The manifest of a stored object of that name stands in for a shared file's.
                BlobQuery::SharedManifest { name } => BlobAnswer::Shared {
                    meta: self
                        .seen
                        .objects
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .values()
                        .map(|(m, _)| m)
                        .find(|m| m.name == name)
                        .cloned(),
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
        layout: Default::default(),
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
    // Long enough that a call on a loaded CI machine (a cold connection, 4 MB of metadata)
    // does not hit it; the time-out test waits for it once.
    c.ring.rpc_timeout = Duration::from_millis(1500);
    c.transport.progress_timeout = Duration::from_millis(800);
    c.transport.bulk_floor = Duration::from_secs(2);
    c
}

/// Starts a test server on `under` (its `slot`-th endpoint), and a client.
pub async fn bench(under: &dyn Under, slot: usize, slow: Option<Duration>) -> Bench {
    bench_with(under, slot, slow, config()).await
}

/// [`bench`] with a configuration of the test's own.
pub async fn bench_with(
    under: &dyn Under,
    slot: usize,
    slow: Option<Duration>,
    config: Config,
) -> Bench {
    let factory = under.factory();
    let (listen, advertise) = under.endpoint(slot);
    let address = factory.parse_address(&advertise).expect("valid address");
    let server = Peer::new(Id::hash(advertise.as_bytes()), address.clone());
    let seen = Arc::new(Seen::default());
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
        ready: tokio::sync::watch::channel(true).1,
    };
    factory.serve(options, handlers, rx).await.expect("serve");
    let clients = factory
        .clients(ClientOptions::from_config(&config))
        .expect("clients");
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

pub fn ping(from: &Peer) -> RequestEnvelope {
    RequestEnvelope::new(None, from.clone(), Request::Ping)
}

/// Established TCP connections (IPv4 or IPv6) whose remote end is `port` on this machine: a
/// client's connections to a server listening there.
pub fn connections_to(port: u16) -> usize {
    let established = |table: &str| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let remote_port = fields
                    .get(2)
                    .and_then(|remote| remote.rsplit(':').next())
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok());
                remote_port == Some(port) && fields.get(3) == Some(&"01")
            })
            .count()
    };
    established("/proc/net/tcp") + established("/proc/net/tcp6")
}
