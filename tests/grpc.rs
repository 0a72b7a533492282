//! Real `chordnet serve` processes talking gRPC to each other (`transport.kind = "grpc"`, set
//! through `CHORDNET_TRANSPORT__KIND`): the ring forms, lookups name the true successor, files
//! larger than tonic's 4 MiB message limit (up to 100 MiB) go up through one peer and come down
//! byte-identical through another (in chunks, never in one message), crashes and a leave lose
//! nothing, a restarted peer comes back with its store. And a server drops the work of a call
//! whose `grpc-timeout` passed. Every wait is bounded and polls a condition.

use crate::support::cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chordnet::id::Id;
use chordnet::transport::grpc::GrpcTransport;
use chordnet::transport::grpc::pb;
use chordnet::transport::grpc::pb::ring_client::RingClient as RingGrpc;
use chordnet::transport::{
    BlobAnswer, BlobHandler, BlobQuery, Body, BoxFuture, ClientOptions, Handlers, Object, PutReply,
    Refusal, RefusalKind, RingHandler, ServeOptions, TraceCarrier, TransportFactory,
};
use chordnet::wire::Peer;
use chordnet::wire::files::FileMeta;
use chordnet::wire::ring::{Request, RequestEnvelope, Response, ResponseEnvelope};
use cluster::{Cluster, wait_for};

const PEERS: usize = 8;

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

/// The environment of a gRPC peer in these tests.
fn grpc_env() -> Vec<(String, String)> {
    vec![
        ("CHORDNET_TRANSPORT__KIND".into(), "grpc".into()),
        ("CHORDNET_FILES__MAX_FILE_SIZE".into(), "128MiB".into()),
    ]
}

/// The list, over gRPC: 8 peers form a ring, lookups name the true successor, files of
/// several sizes (one over tonic's 4 MiB message limit, one of 100 MiB) cross between peers,
/// two `kill -9`s and a SIGTERM hand-off lose nothing acknowledged, and a peer restarted with
/// its store directory serves its range again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_ring_forms_moves_files_of_any_size_and_loses_nothing_to_crashes_or_leaves() {
    let mut c = Cluster::start_each("grpc", PEERS, |_| grpc_env())
        .converged()
        .await;

    // The peer port speaks gRPC: a gRPC ring call reaches a peer and it answers as itself.
    let factory = GrpcTransport::default();
    let clients = factory
        .clients(ClientOptions::connect_within(Duration::from_secs(1)))
        .expect("clients");
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
    for k in 0..80 {
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

    // Files over 4 MiB and of 100 MiB, each up through one peer and down through another, byte
    // for byte; neither holds a copy (ring.replicas = 3), so every byte crosses gRPC both ways.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let mut big = Vec::new();
    for (name, len) in [
        ("over-four-mib.bin", (5 << 20) + 12_345),
        ("hundred-mib.bin", (100 << 20) + 1),
    ] {
        let holders = holders_of(&c, name);
        let others: Vec<&cluster::PeerProcess> = c
            .peers
            .iter()
            .filter(|p| !holders.contains(&p.id()))
            .collect();
        let (uploader, downloader) = (others[0], others[1]);
        let data = Bytes::from(content(len));
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
        let got = fetch(&http, downloader, name).await;
        assert!(
            got.as_ref() == Some(&data),
            "{name}: the downloaded bytes differ"
        );

        // Where it lives, as asked over gRPC queries: the responsible peer and the replicas.
        let (status, places) = c
            .get(&others[2].url(&format!("/v1/files/{name}/locations")))
            .await
            .expect("locations answered");
        assert_eq!(status, 200, "{places}");
        assert_eq!(places["node"]["id"], holders[0].to_string(), "{places}");
        let copies = places["replicas"].as_array().map_or(0, Vec::len);
        assert!(copies >= 2, "{places}");
        big.push((name, data));
    }

    // Small files through random peers.
    let mut files = Vec::new();
    for k in 0..24 {
        let data = content(1 + k * 997);
        let name = format!("small-{k}.bin");
        let (status, body) = c.put(&c.peers[k % PEERS], &name, &data).await;
        assert_eq!(status, 201, "{body}");
        files.push((name, data));
    }

    // kill -9 two peers that are not neighbours: every acknowledged file still downloads.
    let mut order: Vec<usize> = (0..PEERS).collect();
    order.sort_by_key(|&i| c.peers[i].id());
    c.peers[order[1]].kill();
    c.peers[order[5]].kill();
    c.repaired_and_serving("two crashes", &files).await;
    all_big_download(&c, &http, &big).await;

    // SIGTERM one more: exit 0 after handing its keys over.
    let status = c.peers[order[3]].terminate();
    assert!(status.success(), "{status:?}");
    c.repaired_and_serving("the leave", &files).await;
    all_big_download(&c, &http, &big).await;

    // A crashed peer restarts with its store directory: same id, back in the ring over gRPC,
    // and it serves every file.
    let env = grpc_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    c.restart_with_store(order[1], &env, &files).await;
    let (_, node) = c
        .get(&c.peers[order[1]].url("/v1/node"))
        .await
        .expect("node");
    assert_eq!(node["id"], c.peers[order[1]].id().to_string());
    assert_eq!(node["transport"], "grpc");
}

/// The responsible peer of `name` and its two successors (ring.replicas = 3), in ring order.
fn holders_of(c: &Cluster, name: &str) -> Vec<Id> {
    let mut ring: Vec<Id> = c.running().iter().map(|p| p.id()).collect();
    ring.sort();
    let first = ring
        .iter()
        .position(|&i| i == c.true_successor(Id::hash(name.as_bytes())))
        .expect("responsible peer");
    (0..3).map(|k| ring[(first + k) % ring.len()]).collect()
}

/// A download through `via` with `http`, not `Cluster::fetch`: a 100 MiB body may outlast the
/// cluster client's 10 s time-out on a loaded machine.
async fn fetch(http: &reqwest::Client, via: &cluster::PeerProcess, name: &str) -> Option<Bytes> {
    let down = http
        .get(via.url(&format!("/v1/files/{name}")))
        .send()
        .await
        .ok()?;
    if down.status() != 200 {
        return None;
    }
    down.bytes().await.ok()
}

/// Waits (bounded) until each big file downloads byte-identical through a running peer.
async fn all_big_download(c: &Cluster, http: &reqwest::Client, big: &[(&str, Bytes)]) {
    for (k, (name, data)) in big.iter().enumerate() {
        wait_for(name, Duration::from_secs(60), || async {
            let running = c.running();
            fetch(http, running[k % running.len()], name).await.as_ref() == Some(data)
        })
        .await;
    }
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
        advertise: GrpcTransport::default()
            .parse_address(&address)
            .expect("address"),
        max_body: 1 << 20,
        ready: tokio::sync::watch::channel(true).1,
    };
    GrpcTransport::default()
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
