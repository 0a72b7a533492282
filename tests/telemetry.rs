//! Tracing across real peer processes: a lookup is one trace with spans from every peer it
//! touched, received by an OTLP receiver in the test (official protobuf definitions, over
//! OTLP/HTTP and OTLP/gRPC); no exporter without the OTEL variables; an unreachable collector
//! does not slow lookups down.

use crate::support::cluster;
use crate::support::nats_server;
use crate::support::otlp;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use cluster::*;
use otlp::{BlackHole, Protocol, Receiver, SpanKind};
use serde_json::Value;

/// Starts `n` peers (the first founds the ring) with `env(i)` added to peer `i`'s environment
/// and logs in `<root>/peer-i.log`; waits until all are ready on one ring.
async fn start_ring(name: &str, n: usize, env: impl Fn(usize) -> Vec<(String, String)>) -> Cluster {
    Cluster::start_each(name, n, env).converged().await
}

/// The same on a NATS broker: every peer's address is its subject `chordnet.<ring>.peer.peer-<i>`
/// and no peer opens a peer port.
async fn start_nats_ring(
    name: &str,
    n: usize,
    ring: &str,
    env: impl Fn(usize) -> Vec<(String, String)>,
) -> Cluster {
    let (mut c, ports) = Cluster::empty(name, n);
    let subject = |i: usize| format!("chordnet.{ring}.peer.peer-{i}");
    let bootstrap = subject(0);
    for i in 0..n {
        let api = format!("127.0.0.1:{}", ports[2 * i + 1]);
        let vars = env(i);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let peer = spawn_logged(
            &subject(i),
            &api,
            &c.root.join(format!("peer-{i}")),
            (i > 0).then_some(&bootstrap),
            &vars,
            Some(&c.root.join(format!("peer-{i}.log"))),
        );
        c.peers.push(peer);
    }
    c.converged().await
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `GET` with an optional W3C `traceparent`; the status and JSON body.
/// Lookups here ask for a fresh answer (`Cache-Control: no-cache`): a reused one has no path,
/// and these follow a lookup's path across peers.
async fn get_traced(c: &Cluster, url: &str, traceparent: Option<&str>) -> (u16, Value) {
    let mut req = c.http.get(url).header("cache-control", "no-cache");
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The value of an unlabelled metric in a peer's `/metrics`.
async fn metric(c: &Cluster, p: &PeerProcess, name: &str) -> f64 {
    c.metric(p, name)
        .await
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

const TEST_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TEST_PARENT: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_is_one_trace_with_spans_from_every_peer_on_its_path() {
    lookup_is_one_trace("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_over_grpc_hops_is_one_trace_too() {
    lookup_is_one_trace("grpc").await;
}

/// Issue 13: over NATS the trace context travels in the message headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_over_nats_hops_is_one_trace_too() {
    lookup_is_one_trace("nats").await;
}

/// Peers speaking `transport` to each other (the trace context travels in its metadata).
async fn lookup_is_one_trace(transport: &str) {
    let receiver = Receiver::start().await;
    let endpoint = receiver.endpoint();
    // Peers 1 and 3 export over gRPC, the others over HTTP/protobuf.
    let broker = (transport == "nats").then(|| nats_server::NatsServer::start("otel-lookup"));
    let broker_url = broker.as_ref().map(|b| b.url()).unwrap_or_default();
    let env = |i: usize| {
        let protocol = if i % 2 == 1 { "grpc" } else { "http/protobuf" };
        let mut v = vars(&[
            ("CHORDNET_TRANSPORT__KIND", transport),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_SERVICE_NAME", "chordnet-it"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("POD_NAME", &format!("chordnet-{i}")),
            ("CHORDNET_LOG__FORMAT", "json"),
            ("RUST_LOG", "info"),
        ]);
        if broker.is_some() {
            v.extend(vars(&[
                ("CHORDNET_NATS__URL", &broker_url),
                ("CHORDNET_NATS__RING_NAME", "otel"),
            ]));
        }
        v
    };
    let name = format!("otel-lookup-{transport}");
    let c = if broker.is_some() {
        start_nats_ring(&name, 5, "otel", env).await
    } else {
        start_ring(&name, 5, env).await
    };
    let ring_id = c
        .get(&c.peers[0].url("/v1/node"))
        .await
        .and_then(|(_, v)| v["ring_id"].as_str().map(str::to_owned))
        .expect("ring id");

    // A key whose lookup from peer 0 crosses the most peers (the ring is small: 1–2 hops).
    let mut best: Option<(String, u64)> = None;
    for k in 0..64 {
        let key = format!("key-{k}");
        let (_, v) = get_traced(&c, &c.peers[0].url(&format!("/v1/lookup/{key}")), None).await;
        let hops = v["hops"].as_u64().unwrap_or(0);
        if best.as_ref().is_none_or(|(_, h)| hops > *h) {
            best = Some((key, hops));
        }
        if hops >= 2 {
            break;
        }
    }
    let (key, _) = best.expect("lookups answered");

    // A caller that did not sample its trace (flags 00): parent-based sampling follows it on
    // every peer, so none of this lookup's spans may arrive.
    let unsampled = "5bf92f3577b34da6a3ce929d0e0e4737";
    let (status, _) = get_traced(
        &c,
        &c.peers[0].url(&format!("/v1/lookup/{key}")),
        Some(&format!("00-{unsampled}-{TEST_PARENT}-00")),
    )
    .await;
    assert_eq!(status, 200);

    let traceparent = format!("00-{TEST_TRACE}-{TEST_PARENT}-01");
    let (status, answer) = get_traced(
        &c,
        &c.peers[0].url(&format!("/v1/lookup/{key}")),
        Some(&traceparent),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let path: Vec<String> = answer["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(|p| p["id"].as_str().expect("peer id").to_owned())
        .collect();
    assert!(!path.is_empty(), "the lookup answered locally: {answer}");
    let origin = c.peers[0].id().to_string();

    // Wait until the spans of every peer involved have arrived (each exports on its own).
    let spans = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            let ours = || spans.iter().filter(|s| s.trace_id == TEST_TRACE);
            let count = |name: &str, kind: SpanKind| {
                ours().filter(|s| s.name == name && s.kind == kind).count()
            };
            count("find_successor", SpanKind::Server) >= path.len()
                && count("chord.lookup.hop", SpanKind::Client) >= path.len()
                && count("chord.lookup", SpanKind::Internal) == 1
                && count("GET /v1/lookup/{key}", SpanKind::Server) == 1
        })
        .await
        .unwrap_or_else(|spans| {
            let ours: Vec<_> = spans.iter().filter(|s| s.trace_id == TEST_TRACE).collect();
            panic!("the lookup's spans did not all arrive: {ours:#?}")
        });
    let trace: Vec<&otlp::Span> = spans.iter().filter(|s| s.trace_id == TEST_TRACE).collect();
    let by_id: BTreeMap<&str, &otlp::Span> =
        trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let node_of = |s: &otlp::Span| s.resource_attr("chordnet.node.id").map(str::to_owned);

    // The API request continues the caller's trace, on the peer asked.
    let request = trace
        .iter()
        .find(|s| s.kind == SpanKind::Server && s.name == "GET /v1/lookup/{key}")
        .unwrap_or_else(|| panic!("no server span for the API request: {trace:#?}"));
    assert_eq!(request.parent_span_id.as_deref(), Some(TEST_PARENT));
    assert_eq!(node_of(request).as_deref(), Some(origin.as_str()));
    assert_eq!(request.attr("http.response.status_code"), Some("200"));
    for (key, want) in [
        ("service.name", "chordnet-it"),
        ("k8s.pod.name", "chordnet-0"),
        ("chordnet.ring.id", ring_id.as_str()),
    ] {
        assert_eq!(request.resource_attr(key), Some(want), "resource {key}");
    }

    // One lookup span under it, with the outcome.
    let lookup = trace
        .iter()
        .find(|s| s.name == "chord.lookup")
        .expect("a lookup span");
    assert_eq!(
        lookup.parent_span_id.as_deref(),
        Some(request.span_id.as_str())
    );
    assert_eq!(
        lookup.attr("lookup.hops"),
        Some(path.len().to_string().as_str())
    );
    assert_eq!(
        lookup.attr("lookup.responsible"),
        answer["node"]["id"].as_str()
    );

    // One client span per hop, children of the lookup, numbered along the path.
    let mut hops: Vec<&&otlp::Span> = trace
        .iter()
        .filter(|s| s.name == "chord.lookup.hop" && !s.status_error)
        .collect();
    hops.sort_by_key(|s| s.attr("lookup.hop").and_then(|h| h.parse::<u32>().ok()));
    assert_eq!(hops.len(), path.len(), "hop spans: {hops:#?}");
    for (k, (hop, peer)) in hops.iter().zip(&path).enumerate() {
        assert_eq!(hop.kind, SpanKind::Client);
        assert_eq!(hop.parent_span_id.as_deref(), Some(lookup.span_id.as_str()));
        assert_eq!(hop.attr("lookup.hop"), Some((k + 1).to_string().as_str()));
        assert_eq!(hop.attr("peer.id"), Some(peer.as_str()));
        assert_eq!(hop.attr("rpc.method"), Some("find_successor"));
        assert_eq!(node_of(hop).as_deref(), Some(origin.as_str()));
        // The peer asked answered in the same trace, as a child of the hop.
        let server = trace
            .iter()
            .find(|s| {
                s.kind == SpanKind::Server
                    && s.parent_span_id.as_deref() == Some(hop.span_id.as_str())
            })
            .unwrap_or_else(|| panic!("no server span for hop {}", k + 1));
        assert_eq!(node_of(server).as_deref(), Some(peer.as_str()));
        assert_eq!(server.attr("rpc.method"), Some("find_successor"));
        assert_eq!(server.attr("peer.from"), Some(origin.as_str()));
    }
    // Every span of the trace hangs off the caller's span: no orphans.
    for s in &trace {
        let mut at = *s;
        let mut steps = 0;
        while let Some(parent) = at.parent_span_id.as_deref() {
            if parent == TEST_PARENT {
                break;
            }
            at = by_id
                .get(parent)
                .unwrap_or_else(|| panic!("span {} has a parent not in the trace", s.name));
            steps += 1;
            assert!(steps < 16, "parent loop");
        }
    }

    // Every peer exported (maintenance spans at least), over both protocols, each under its
    // own node id and pod name.
    let exported = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            (0..5).all(|i| {
                let pod = format!("chordnet-{i}");
                spans
                    .iter()
                    .any(|s| s.resource_attr("k8s.pod.name") == Some(pod.as_str()))
            })
        })
        .await
        .expect("every peer exports");
    for (i, p) in c.peers.iter().enumerate() {
        let pod = format!("chordnet-{i}");
        let want = if i % 2 == 1 {
            Protocol::Grpc
        } else {
            Protocol::Http
        };
        let mine = exported
            .iter()
            .find(|s| s.resource_attr("k8s.pod.name") == Some(pod.as_str()))
            .expect("a span");
        assert_eq!(mine.protocol, want, "peer {i}");
        assert_eq!(
            mine.resource_attr("chordnet.node.id"),
            Some(p.id().to_string().as_str())
        );
    }
    assert!(
        exported.iter().any(|s| s.name == "chord.stabilize"),
        "stabilization rounds are traced"
    );
    assert!(metric(&c, &c.peers[0], "chordnet_trace_spans_exported_total").await > 0.0);
    assert!(
        !receiver.spans().iter().any(|s| s.trace_id == unsampled),
        "spans of an unsampled trace were exported"
    );

    // Log lines inside a traced request carry its trace id (JSON logs, as in Kubernetes).
    let upload_trace = "0af7651916cd43dd8448eb211c80319c";
    let resp = c
        .http
        .put(c.peers[0].url("/v1/files/traced.txt"))
        .header(
            "traceparent",
            format!("00-{upload_trace}-b7ad6b7169203331-01"),
        )
        .body("hello")
        .send()
        .await
        .expect("upload");
    assert!(resp.status().is_success(), "{}", resp.status());
    let log = std::fs::read_to_string(c.root.join("peer-0.log")).expect("peer log");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "exporting traces over OTLP")
    );
    let stored = lines
        .iter()
        .find(|l| l["message"] == "file stored")
        .unwrap_or_else(|| panic!("no 'file stored' line: {log}"));
    assert_eq!(stored["trace_id"], upload_trace, "{stored}");
    assert_eq!(stored["name"], "traced.txt");
    // Lines outside any request carry none.
    let joined = lines
        .iter()
        .find(|l| l["message"] == "founded a new ring")
        .expect("a founding line");
    assert!(joined.get("trace_id").is_none(), "{joined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_otel_variables_no_exporter_runs() {
    // A receiver on the standard OTLP ports, where an exporter with default settings would go.
    let mut receivers = Vec::new();
    for port in [4317, 4318] {
        match Receiver::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
            Ok(r) => receivers.push(r),
            Err(e) => eprintln!("port {port} is taken ({e}); checking the peers' own report only"),
        }
    }
    // Variables that alone do not turn export on.
    let c = start_ring("otel-off", 2, |_| {
        vars(&[
            ("OTEL_SERVICE_NAME", "chordnet-off"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
            ("RUST_LOG", "info"),
        ])
    })
    .await;
    let traceparent = format!("00-{TEST_TRACE}-{TEST_PARENT}-01");
    for k in 0..50 {
        let url = c.peers[k % 2].url(&format!("/v1/lookup/off-{k}"));
        let (status, _) = get_traced(&c, &url, Some(&traceparent)).await;
        assert_eq!(status, 200);
    }
    // An exporter would have sent within a few schedule delays (20 ms): watch for 1 s.
    let watch_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < watch_until {
        for r in &receivers {
            assert_eq!(r.connections(), 0, "a peer connected to {}", r.endpoint());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, p) in c.peers.iter().enumerate() {
        assert_eq!(
            metric(&c, p, "chordnet_trace_spans_exported_total").await,
            0.0
        );
        let log = std::fs::read_to_string(c.root.join(format!("peer-{i}.log"))).expect("log");
        assert!(log.contains("traces are not exported"), "{log}");
        assert!(
            !log.contains("trace_id="),
            "no trace ids without tracing: {log}"
        );
    }
}

/// Median of the time `n` sequential lookups through `p`'s API take, one by one.
async fn median_lookup(c: &Cluster, p: &PeerProcess, n: usize, tag: &str) -> Duration {
    let mut times = Vec::with_capacity(n);
    for k in 0..n {
        let url = p.url(&format!("/v1/lookup/{tag}-{k}"));
        let started = Instant::now();
        let (status, body) = get_traced(c, &url, None).await;
        assert_eq!(status, 200, "{body}");
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_does_not_slow_lookups() {
    // A collector that accepts connections and never answers: every export hangs until the
    // exporter's time-out.
    let hole = BlackHole::start().await;
    let endpoint = hole.endpoint();
    let traced = start_ring("otel-hole", 3, |_| {
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
        ])
    })
    .await;
    let plain = start_ring("otel-none", 3, |_| Vec::new()).await;

    // The exporters are really stuck: they connected, and their exports fail.
    wait_for("exports to fail", Duration::from_secs(30), || async {
        metric(
            &traced,
            &traced.peers[0],
            "chordnet_trace_export_failures_total",
        )
        .await
            >= 1.0
    })
    .await;
    assert!(hole.connections() > 0);

    // Lookups meanwhile (interleaved with a ring without tracing, to share the machine's
    // load): each one is answered, and a lookup does not wait for the exporter (which would
    // add its 1 s time-out).
    let mut with_hole = Vec::new();
    let mut without = Vec::new();
    for round in 0..4 {
        with_hole.push(median_lookup(&traced, &traced.peers[round % 3], 25, "hole").await);
        without.push(median_lookup(&plain, &plain.peers[round % 3], 25, "none").await);
    }
    with_hole.sort();
    without.sort();
    let (a, b) = (with_hole[2], without[2]);
    eprintln!("median lookup: {a:?} with an unreachable collector, {b:?} without tracing");
    assert!(
        a < b * 5 + Duration::from_millis(200),
        "lookups slowed by the exporter: {a:?} vs {b:?}"
    );
}
