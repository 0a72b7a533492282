//! The HTTP transport's client reuses its connections under load: bursts of concurrent ring
//! calls to one peer, one after another, keep using the connections the first burst opened
//! instead of closing the surplus after each burst and dialling again (each closed connection
//! is a socket in TIME_WAIT; a 32-client lookup bench on 8 peers showed them as churn).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use chordnet::id::Id;
use chordnet::transport::TraceCarrier;
use chordnet::transport::http::HttpClient;
use chordnet::transport::{ClientOptions, RingClient};
use chordnet::wire::ring::{Request, RequestEnvelope, Response, ResponseEnvelope};
use chordnet::wire::{Address, Peer};

/// Calls in flight at once in each burst.
const CONCURRENT: usize = 32;
/// Bursts, each waited for before the next.
const BURSTS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_calls_reuse_the_connections_of_the_first() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    let server = Peer::new(Id::hash(b"server"), Address::new(addr.to_string()));
    let answer = serde_json::to_vec(&ResponseEnvelope::new(None, server.clone(), Response::Ack))
        .expect("encode");
    // Each answer waits a little, so that every call of a burst is in flight at once.
    let app = Router::new().route(
        "/peer/v1/rpc",
        post(move || {
            let answer = answer.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    answer,
                )
            }
        }),
    );
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });

    let client = HttpClient::new(ClientOptions::connect_within(Duration::from_secs(5)), None);
    let me = Peer::new(Id::hash(b"client"), Address::new("127.0.0.1:9"));
    for burst in 0..BURSTS {
        let calls = (0..CONCURRENT).map(|_| {
            let request = RequestEnvelope::new(None, me.clone(), Request::Ping);
            client.call(&server.address, request, TraceCarrier::default())
        });
        for answer in futures_util::future::join_all(calls).await {
            let answer = answer.unwrap_or_else(|e| panic!("burst {burst}: {e}"));
            assert!(matches!(answer.body, Response::Ack), "burst {burst}");
        }
    }
    let opened = accepted.load(Ordering::SeqCst);
    // The first burst opens one connection per call in flight; later bursts may open a few
    // while connections of the burst before are still on their way back to the pool, never
    // a burst's worth each time (with 8 idle connections kept per peer: about 24 per burst,
    // over 200 in all).
    assert!(
        opened <= 2 * CONCURRENT,
        "{opened} connections opened for {BURSTS} bursts of {CONCURRENT} concurrent calls"
    );
    println!("{opened} connections for {BURSTS} bursts of {CONCURRENT} concurrent calls");
}
