//! Real `chordnet serve` processes talking gRPC to each other (`transport.kind = "grpc"`, set
//! through `CHORDNET_TRANSPORT__KIND`): the ring forms, lookups name the true successor, and a
//! file larger than tonic's 4 MiB message limit goes up through one peer and comes down
//! byte-identical through another (it travels in chunks, never in one message). And a server
//! drops the work of a call whose `grpc-timeout` passed. Every wait is bounded and polls a
//! condition.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chordnet::id::Id;
use chordnet::transport::grpc::GrpcTransport;
use chordnet::transport::grpc::pb;
use chordnet::transport::grpc::pb::ring_client::RingClient as RingGrpc;
use chordnet::transport::{
    BlobAnswer, BlobHandler, BlobQuery, Body, BoxFuture, Handlers, Object, PutReply, Refusal,
    RefusalKind, RingHandler, ServeOptions, TraceCarrier, TransportFactory,
};
use chordnet::wire::Peer;
use chordnet::wire::files::FileMeta;
use chordnet::wire::ring::{Request, RequestEnvelope, Response, ResponseEnvelope};
use cluster::Cluster;

const PEERS: usize = 6;

/// Deterministic content that is not a repeating pattern of any short period.
fn content(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_ring_forms_answers_lookups_and_moves_files_larger_than_a_message() {
    let c = Cluster::start_each(
        "grpc",
        PEERS,
        |_| {
            vec![
                ("CHORDNET_TRANSPORT__KIND".into(), "grpc".into()),
                ("CHORDNET_FILES__MAX_FILE_SIZE".into(), "16MiB".into()),
            ]
        },
        false,
    )
    .converged()
    .await;

    // The peer port speaks gRPC: a gRPC ring call reaches a peer and it answers as itself.
    let factory = GrpcTransport;
    let clients = factory.clients(Duration::from_secs(1)).expect("clients");
    let to = factory
        .parse_address(&c.peers[0].advertise)
        .expect("address");
    let me = Peer::from_address("127.0.0.1:1");
    let answer = clients
        .ring
        .call(
            &to,
            RequestEnvelope::new(None, me, Request::Ping),
            TraceCarrier::default(),
        )
        .await
        .expect("a gRPC answer");
    assert_eq!(answer.from.id, c.peers[0].id());
    assert!(
        !matches!(answer.body, Response::Rejected { .. }),
        "{answer:?}"
    );

    // Lookups from every peer name the true successor.
    for k in 0..60 {
        let key = format!("grpc-key-{k}");
        let asked = &c.peers[k % PEERS];
        let (status, found) = c
            .get(&asked.url(&format!("/v1/lookup/{key}")))
            .await
            .expect("lookup answered");
        assert_eq!(status, 200, "{found}");
        let expected = c.true_successor(Id::hash(key.as_bytes()));
        assert_eq!(found["node"]["id"], expected.to_string(), "{key}: {found}");
    }

    // A file over 4 MiB, up through one peer and down through another, byte for byte; both
    // hold no copy (ring.replicas = 3), so every byte crosses gRPC both ways.
    let name = "over-four-mib.bin";
    let mut ring: Vec<Id> = c.peers.iter().map(|p| p.id()).collect();
    ring.sort();
    let first = ring
        .iter()
        .position(|&i| i == c.true_successor(Id::hash(name.as_bytes())))
        .expect("responsible peer");
    let holders: Vec<Id> = (0..3).map(|k| ring[(first + k) % PEERS]).collect();
    let others: Vec<&cluster::PeerProcess> = c
        .peers
        .iter()
        .filter(|p| !holders.contains(&p.id()))
        .collect();
    let (uploader, downloader) = (others[0], others[1]);
    let data = Bytes::from(content((5 << 20) + 12_345));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let up = http
        .put(uploader.url(&format!("/v1/files/{name}")))
        .body(data.clone())
        .send()
        .await
        .expect("upload answered");
    let status = up.status();
    let stored: serde_json::Value = up.json().await.expect("json");
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["size"], data.len());
    assert!(stored["replicas"].as_u64() >= Some(2), "{stored}");
    let down = http
        .get(downloader.url(&format!("/v1/files/{name}")))
        .send()
        .await
        .expect("download answered");
    assert_eq!(down.status(), 200);
    let got = down.bytes().await.expect("body");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the downloaded bytes differ");

    // Where it lives, as asked over gRPC queries: the responsible peer and the replicas that
    // hold it (ring.replicas = 3 by default).
    let (status, places) = c
        .get(&others[2].url(&format!("/v1/files/{name}/locations")))
        .await
        .expect("locations answered");
    assert_eq!(status, 200, "{places}");
    assert_eq!(places["node"]["id"], holders[0].to_string(), "{places}");
    let holders = places["replicas"].as_array().map_or(0, Vec::len);
    assert!(holders >= 2, "{places}");
}

/// A ring handler that never answers and says when its work was dropped.
struct Stuck(Arc<AtomicBool>);

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl RingHandler for Stuck {
    fn handle(&self, _: RequestEnvelope, _: TraceCarrier) -> BoxFuture<'_, ResponseEnvelope> {
        let flag = DropFlag(Arc::clone(&self.0));
        Box::pin(async move {
            let _flag = flag;
            std::future::pending::<ResponseEnvelope>().await
        })
    }
}

/// No data plane.
struct NoBlobs;

impl BlobHandler for NoBlobs {
    fn put(&self, _: FileMeta, _: Option<Body>) -> BoxFuture<'_, Result<PutReply, Refusal>> {
        Box::pin(async { Err(Refusal::new(RefusalKind::Unavailable, "none")) })
    }
    fn get(&self, _: Id) -> BoxFuture<'_, Result<Option<Object>, Refusal>> {
        Box::pin(async { Ok(None) })
    }
    fn get_shared<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Body>, Refusal>> {
        Box::pin(async { Ok(None) })
    }
    fn query(&self, _: BlobQuery) -> BoxFuture<'_, Result<BlobAnswer, Refusal>> {
        Box::pin(async { Ok(BlobAnswer::Done) })
    }
}

/// `grpc-timeout` is enforced by the server: a caller that waits for ever still gets an answer
/// when its deadline passes, and the handler's work is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stops_work_when_the_grpc_timeout_passes() {
    let port = cluster::free_ports(1)[0];
    let address = format!("127.0.0.1:{port}");
    let dropped = Arc::new(AtomicBool::new(false));
    let handlers = Handlers {
        ring: Arc::new(Stuck(Arc::clone(&dropped))),
        blob: Arc::new(NoBlobs),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let options = ServeOptions {
        listen: address.parse().expect("socket address"),
        advertise: GrpcTransport.parse_address(&address).expect("address"),
        max_body: 1 << 20,
    };
    GrpcTransport
        .serve(options, handlers, stopped)
        .await
        .expect("serve");

    let mut client = RingGrpc::connect(format!("http://{address}"))
        .await
        .expect("connect");
    let ping = RequestEnvelope::new(None, Peer::from_address("127.0.0.1:1"), Request::Ping);
    let mut req = tonic::Request::new(pb::Envelope {
        json: serde_json::to_vec(&ping).expect("json").into(),
    });
    req.set_timeout(Duration::from_millis(200));
    let started = Instant::now();
    // No client-side time-out: only the server can end this call.
    let answer = tokio::time::timeout(Duration::from_secs(10), client.call(req))
        .await
        .expect("the server answered");
    let status = answer.expect_err("no envelope from a stuck handler");
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{status:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    cluster::wait_for("the handler's work dropped", Duration::from_secs(5), || {
        let dropped = dropped.load(Ordering::SeqCst);
        async move { dropped }
    })
    .await;
    let _ = stop.send(true);
}
