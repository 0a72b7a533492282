//! What a gRPC peer's port offers besides the ring, seen from real `chordnet serve` processes:
//! `grpc.health.v1` follows readiness (NOT_SERVING while joining or after leaving, SERVING when
//! ready), server reflection lets a client without the `.proto` list the services and call
//! one, and a gRPC peer and an HTTP peer refuse each other with a message that says what to
//! change. Every wait is bounded and polls a condition.

use crate::support::cluster;

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use cluster::{PeerProcess, free_ports, spawn_logged, wait_for};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const GRPC: (&str, &str) = ("CHORDNET_TRANSPORT__KIND", "grpc");

/// A peer on fresh ports, under `root`, with its log in `root/NAME.log`.
fn peer(
    root: &std::path::Path,
    name: &str,
    env: &[(&str, &str)],
    boot: Option<&String>,
) -> PeerProcess {
    let ports = free_ports(2);
    spawn_logged(
        &format!("127.0.0.1:{}", ports[0]),
        &format!("127.0.0.1:{}", ports[1]),
        &root.join(name),
        boot,
        env,
        Some(&root.join(format!("{name}.log"))),
    )
}

fn root(name: &str) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("chordnet-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    root
}

async fn channel(p: &PeerProcess) -> Channel {
    let uri = format!("http://{}", p.advertise);
    let mut last = None;
    for _ in 0..100 {
        match Channel::from_shared(uri.clone())
            .expect("uri")
            .connect()
            .await
        {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to {uri}: {last:?}");
}

/// The overall status (`service = ""`) and the status of `chordnet.v1.Ring`.
async fn health(c: &Channel) -> Option<(ServingStatus, ServingStatus)> {
    let mut h = HealthClient::new(c.clone());
    let mut ask = async |service: &str| {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(r.into_inner().status).ok()
    };
    Some((ask("").await?, ask("chordnet.v1.Ring").await?))
}

async fn ready(http: &reqwest::Client, p: &PeerProcess) -> bool {
    http.get(p.url("/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_follows_readiness_and_mixed_transports_say_what_to_change() {
    let root = root("grpc-health");
    let http = reqwest::Client::new();
    // An HTTP founder, a gRPC peer told to join it, an HTTP peer told to join the gRPC one.
    let http_founder = peer(&root, "http-founder", &[], None);
    let grpc_joiner = peer(&root, "grpc-joiner", &[GRPC], Some(&http_founder.advertise));
    let http_joiner = peer(&root, "http-joiner", &[], Some(&grpc_joiner.advertise));

    let says = |name: &str, what: &'static [&'static str]| {
        let log = root.join(format!("{name}.log"));
        move || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                what.iter().all(|w| text.contains(w))
            }
        }
    };
    wait_for(
        "the gRPC peer says the bootstrap is an HTTP peer",
        Duration::from_secs(20),
        says(
            "grpc-joiner",
            &[
                "cannot join",
                "transport.kind = \"http\"",
                "this peer has transport.kind = \"grpc\"",
            ],
        ),
    )
    .await;
    wait_for(
        "the HTTP peer says the bootstrap is a gRPC peer",
        Duration::from_secs(20),
        says(
            "http-joiner",
            &[
                "cannot join",
                "transport.kind = \"grpc\"",
                "this peer has transport.kind = \"http\"",
            ],
        ),
    )
    .await;
    // The REST join says the same, as a problem document (from a peer that founded its own
    // ring and left it, so no join of its own is under way).
    let http_alone = peer(&root, "http-alone", &[], None);
    wait_for(
        "the lone HTTP peer is ready",
        Duration::from_secs(20),
        || ready(&http, &http_alone),
    )
    .await;
    let left = http
        .post(http_alone.url("/v1/ring/leave"))
        .send()
        .await
        .expect("leave answered");
    assert_eq!(left.status(), 200);
    let join = http
        .post(http_alone.url("/v1/ring/join"))
        .json(&serde_json::json!({"bootstrap": grpc_joiner.advertise}))
        .send()
        .await
        .expect("join answered");
    let (status, kind) = (join.status(), join.headers()["content-type"].clone());
    let text = join.text().await.expect("body");
    assert_eq!(status, 502, "{text}");
    assert_eq!(kind, "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&text).expect("problem");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("same transport.kind"), "{problem}");

    // A gRPC peer that cannot join is NOT_SERVING, as /readyz is 503.
    let joining = channel(&grpc_joiner).await;
    assert!(!ready(&http, &grpc_joiner).await);
    assert_eq!(
        health(&joining).await,
        Some((ServingStatus::NotServing, ServingStatus::NotServing))
    );

    // A gRPC founder becomes SERVING once ready.
    let founder = peer(&root, "grpc-founder", &[GRPC], None);
    let ch = channel(&founder).await;
    wait_for("the gRPC founder is ready", Duration::from_secs(20), || {
        ready(&http, &founder)
    })
    .await;
    wait_for("the founder is SERVING", Duration::from_secs(5), || async {
        health(&ch).await == Some((ServingStatus::Serving, ServingStatus::Serving))
    })
    .await;

    // Leaving (the REST leave keeps the process up): NOT_SERVING again.
    let left = http
        .post(founder.url("/v1/ring/leave"))
        .send()
        .await
        .expect("leave answered");
    assert_eq!(left.status(), 200);
    wait_for(
        "the founder that left is NOT_SERVING",
        Duration::from_secs(5),
        || async {
            health(&ch).await == Some((ServingStatus::NotServing, ServingStatus::NotServing))
        },
    )
    .await;
    drop((http_founder, grpc_joiner, http_joiner, http_alone, founder));
    let _ = std::fs::remove_dir_all(&root);
}

/// Bytes in, bytes out: a client that knows no message types.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The length-delimited field `number` of an encoded message.
fn field(mut msg: &[u8], number: u64) -> Option<Vec<u8>> {
    while !msg.is_empty() {
        let key = read_varint(&mut msg)?;
        match key & 7 {
            0 => {
                read_varint(&mut msg)?;
            }
            2 => {
                let len = usize::try_from(read_varint(&mut msg)?).ok()?;
                let (value, rest) = msg.split_at_checked(len)?;
                if key >> 3 == number {
                    return Some(value.to_vec());
                }
                msg = rest;
            }
            _ => return None,
        }
    }
    None
}

/// The number of the `bytes` field of message `type_name` (".pkg.Name") in `file`.
fn bytes_field(file: &prost_types::FileDescriptorProto, type_name: &str) -> u64 {
    let short = type_name.rsplit('.').next().expect("type name");
    let message = file
        .message_type
        .iter()
        .find(|m| m.name() == short)
        .unwrap_or_else(|| panic!("{type_name} described"));
    let f = message
        .field
        .iter()
        .find(|f| f.r#type() == prost_types::field_descriptor_proto::Type::Bytes)
        .unwrap_or_else(|| panic!("{type_name} has a bytes field"));
    u64::try_from(f.number()).expect("field number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_proto_lists_the_services_and_calls_one() {
    let root = root("grpc-reflection");
    let p = peer(&root, "peer", &[GRPC], None);
    let ch = channel(&p).await;
    let mut reflection = ServerReflectionClient::new(ch.clone());
    let ask = |request: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = reflection
        .server_reflection_info(futures_util::stream::iter([
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "chordnet.v1.Ring".into(),
            )),
        ]))
        .await
        .expect("reflection answers")
        .into_inner();

    let mut services = Vec::new();
    let Some(MessageResponse::ListServicesResponse(list)) = answers
        .message()
        .await
        .expect("a list")
        .and_then(|r| r.message_response)
    else {
        panic!("no service list");
    };
    services.extend(list.service.into_iter().map(|s| s.name));
    for wanted in [
        "chordnet.v1.Ring",
        "chordnet.v1.Blob",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            services.iter().any(|s| s == wanted),
            "{wanted}: {services:?}"
        );
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) = answers
        .message()
        .await
        .expect("a descriptor")
        .and_then(|r| r.message_response)
    else {
        panic!("no descriptor");
    };
    let file = files
        .file_descriptor_proto
        .iter()
        .map(|f| prost_types::FileDescriptorProto::decode(f.as_slice()).expect("descriptor"))
        .find(|f| f.package() == "chordnet.v1")
        .expect("the chordnet.v1 file");

    // From the descriptor alone: Ring's unary method, its request's bytes field (the JSON
    // envelope) and its answer's.
    let ring = file
        .service
        .iter()
        .find(|s| s.name() == "Ring")
        .expect("Ring described");
    let method = ring
        .method
        .iter()
        .find(|m| !m.client_streaming() && !m.server_streaming())
        .expect("a unary method");
    let input = bytes_field(&file, method.input_type());
    let output = bytes_field(&file, method.output_type());
    let ping = serde_json::json!({
        "protocol": 1,
        "ring_id": null,
        "from": {"id": "0000000000000000000000000000000000000001", "address": "127.0.0.1:1"},
        "body": {"type": "ping"},
    });
    let json = serde_json::to_vec(&ping).expect("json");
    let mut request = Vec::new();
    varint((input << 3) | 2, &mut request);
    varint(json.len() as u64, &mut request);
    request.extend_from_slice(&json);

    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.expect("channel ready");
    let path = format!("/chordnet.v1.{}/{}", ring.name(), method.name());
    let answer = grpc
        .unary(
            tonic::Request::new(Bytes::from(request)),
            path.parse().expect("path"),
            Raw,
        )
        .await
        .expect("the call is answered")
        .into_inner();
    let envelope = field(&answer, output).expect("the answer's envelope");
    let envelope: serde_json::Value = serde_json::from_slice(&envelope).expect("JSON envelope");
    assert_eq!(envelope["from"]["id"], p.id().to_string(), "{envelope}");
    drop(p);
    let _ = std::fs::remove_dir_all(&root);
}
