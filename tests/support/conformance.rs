//! The transport conformance suite: the same checks for every transport, through the shared
//! layers, against test handlers. A transport passes when every check here passes on it.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chordnet::id::Id;
use chordnet::transport::{
    BlobAnswer, BlobClient, BlobQuery, Body, RefusalKind, RingClient, TraceCarrier, TransportError,
};
use chordnet::wire::Peer;
use chordnet::wire::files::FileMeta;
use chordnet::wire::ring::{Request, RequestEnvelope, Response};
use futures_util::StreamExt;
use futures_util::stream;

pub use super::conformance_kit::*;
use super::harness::wait_until;

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
            successors: vec![me, b.server.clone()],
            owns_after: None,
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
        Err(TransportError::Timeout(config().ring.rpc_timeout))
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

/// Puts a 5-byte object named `name` on the bench's server and gets it back, unchanged.
pub async fn small_object_there_and_back(b: &Bench, name: &str) -> FileMeta {
    let id = Id::hash(name);
    let meta = meta_of(name, id, 5);
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
    meta
}

pub async fn objects_round_trip_with_queries(under: &dyn Under) {
    let b = bench(under, 0, None).await;
    let meta = small_object_there_and_back(&b, "small ünïcode name").await;
    let id = meta.id;
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
    blocks_and_manifests_round_trip(&b).await;
}

/// A block (content at its digest's position) and a manifest (a record without content, its
/// block list in the metadata) travel like any object; block references are a query.
async fn blocks_and_manifests_round_trip(b: &Bench) {
    use chordnet::files::{Layout, blocks::block_meta, sha256_hex};
    let digest = sha256_hex(b"block");
    let block = block_meta(&digest, 5).expect("block");
    let reply = b
        .client
        .put(
            &b.server.address,
            block.clone(),
            Some(Body::from_bytes(Bytes::from_static(b"block"))),
            TraceCarrier::default(),
        )
        .await
        .expect("put block");
    assert!(reply.holds(&block));
    let o = b
        .client
        .get(&b.server.address, block.id, TraceCarrier::default())
        .await
        .expect("get block")
        .expect("found");
    assert_eq!(o.meta, block);
    assert_eq!(o.body.collect(100).await.expect("body"), &b"block"[..]);
    // A manifest of 65536 blocks (the most a file has): about 4.4 MB of metadata.
    let manifest = FileMeta {
        size: 65536 << 20,
        layout: Layout::Blocks {
            block_size: 1 << 20,
            digests: vec![digest; 65536],
        },
        ..meta_of("manifest", Id::hash("manifest"), 0)
    };
    let reply = b
        .client
        .put(
            &b.server.address,
            manifest.clone(),
            None,
            TraceCarrier::default(),
        )
        .await
        .expect("put manifest");
    assert!(reply.holds(&manifest));
    let info = chordnet::transport::info(&*b.client, &b.server.address, manifest.id)
        .await
        .expect("info");
    assert_eq!(info.meta, Some(manifest.clone()));
    // A shared file's block manifest travels as a query's answer.
    let answer = b
        .client
        .query(
            &b.server.address,
            BlobQuery::SharedManifest {
                name: manifest.name.clone(),
            },
            TraceCarrier::default(),
        )
        .await
        .expect("shared manifest");
    assert_eq!(
        answer,
        BlobAnswer::Shared {
            meta: Some(manifest)
        }
    );
    let answer = b
        .client
        .query(
            &b.server.address,
            BlobQuery::Referenced {
                ids: vec![block.id],
            },
            TraceCarrier::default(),
        )
        .await
        .expect("referenced");
    assert_eq!(answer, BlobAnswer::Done);
    let seen = b.seen.referenced.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(*seen, vec![block.id]);
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

/// A connection that carried nothing for `transport.idle_timeout` is closed, and the next
/// call connects again (transports with a connection per peer: HTTP, gRPC).
pub async fn unused_connections_close(under: &dyn Under) {
    let mut config = config();
    config.transport.idle_timeout = Duration::from_millis(300);
    let b = bench_with(under, 0, None, config).await;
    let port = under.endpoint(0).0.port();
    let me = Peer::from_address(&b.nobody);
    for round in ["first", "second"] {
        let answer = b
            .client
            .call(&b.server.address, ping(&me), TraceCarrier::default())
            .await
            .unwrap_or_else(|e| panic!("{round} call: {e}"));
        assert_eq!(answer.body, Response::Ack);
        assert!(
            connections_to(port) >= 1,
            "no connection to port {port} after the {round} call"
        );
        let started = Instant::now();
        wait_until(
            "the connection unused for 300 ms to close",
            Duration::from_secs(10),
            || async { connections_to(port) == 0 },
        )
        .await;
        println!(
            "{round} call: connection closed {:?} after it",
            started.elapsed()
        );
    }
}

/// Every check, for the `conformance!` macro (in scope for the tests through `#[macro_use]` in
/// tests/suite.rs).
macro_rules! conformance {
    ($module:ident, $under:expr $(, $extra:ident)*) => {
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
            $(check!($extra);)*
        }
    };
}
