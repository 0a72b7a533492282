//! The gRPC transport's client: one HTTP/2 channel per peer address ([`Channels`]: made on
//! first use, rebuilt after the peer was unreachable, dropped when idle); a connect time-out,
//! `grpc-timeout` on control calls.

use crate::transport::{from_json, to_json};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tonic::transport::{Channel, Endpoint};

use super::channels::Channels;
use super::pb::blob_client::BlobClient as PbBlobClient;
use super::pb::ring_client::RingClient as PbRingClient;
use super::pb::{self, object_part, put_part};
use super::status::{connection_failed, decorate, failure};
use super::stream::{Parts, incoming, outgoing};
use super::{MAX_META, MAX_QUERY, MAX_RPC};
use crate::id::Id;
use crate::transport::layers::time_left;
use crate::transport::tls::PeerTls;
use crate::transport::tls::connect::PeerConnector;
use crate::transport::{
    BlobAnswer, BlobClient, BlobQuery, Body, BodyError, BoxFuture, ClientOptions, Object, PutReply,
    RingClient, TraceCarrier, TransportError,
};
use crate::wire::Address;
use crate::wire::files::FileMeta;
use crate::wire::ring::{RequestEnvelope, ResponseEnvelope};

pub struct GrpcClient {
    connect_timeout: Duration,
    /// Dials TCP, and TLS when on (one connector for every channel).
    connector: PeerConnector,
    channels: Channels,
}

impl GrpcClient {
    /// A client; with `tls`, every channel is HTTP/2 over mutual TLS.
    pub fn new(options: ClientOptions, tls: Option<Arc<PeerTls>>) -> GrpcClient {
        GrpcClient {
            connect_timeout: options.connect_timeout,
            connector: PeerConnector::new(tls, options.connect_timeout),
            channels: Channels::new(options.idle_timeout),
        }
    }

    /// The channel to `to` (connects lazily, on the first call).
    fn channel(&self, to: &Address) -> Result<Channel, TransportError> {
        self.channels.get_or_make(to, || {
            let endpoint = Endpoint::from_shared(format!("http://{to}"))
                .map_err(|e| TransportError::Protocol(format!("{to}: {e}")))?
                .connect_timeout(self.connect_timeout)
                .tcp_nodelay(true);
            Ok(endpoint.connect_with_connector_lazy(self.connector.clone()))
        })
    }

    /// What a failed call means to the caller; a connection failure drops the channel, so the
    /// next call resolves the name and connects again.
    fn failed(&self, to: &Address, status: &tonic::Status) -> TransportError {
        if connection_failed(status) {
            self.channels.forget(to);
        }
        failure(to, status)
    }

    fn ring(&self, to: &Address) -> Result<PbRingClient<Channel>, TransportError> {
        Ok(PbRingClient::new(self.channel(to)?).max_decoding_message_size(MAX_RPC))
    }

    fn blob(&self, to: &Address) -> Result<PbBlobClient<Channel>, TransportError> {
        Ok(PbBlobClient::new(self.channel(to)?).max_decoding_message_size(MAX_QUERY))
    }
}

/// A request with the protocol version, the trace context and, for control calls, the deadline.
fn request<T>(message: T, trace: &TraceCarrier, control: bool) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    decorate(req.metadata_mut(), trace);
    if control && let Some(left) = time_left() {
        req.set_timeout(left);
    }
    req
}

/// The client-streaming call, boxed on its own: proving the call's future `Send` inside the
/// caller's generic async block trips a compiler limitation ("higher-ranked lifetime error").
fn send_put(
    mut client: PbBlobClient<Channel>,
    req: tonic::Request<Parts<pb::PutPart>>,
) -> BoxFuture<'static, Result<tonic::Response<pb::Json>, tonic::Status>> {
    Box::pin(async move { client.put(req).await })
}

fn meta_from(to: &Address, json: &[u8]) -> Result<FileMeta, TransportError> {
    if json.len() > MAX_META {
        return Err(TransportError::Protocol(format!(
            "{to} sent metadata of {} bytes",
            json.len()
        )));
    }
    from_json(to, json)
}

fn content(part: pb::ObjectPart) -> Result<Bytes, BodyError> {
    match part.part {
        Some(object_part::Part::Chunk(c)) => Ok(c),
        _ => Err(BodyError::Io(
            "a message other than a chunk inside the content".into(),
        )),
    }
}

impl RingClient for GrpcClient {
    fn call<'a>(
        &'a self,
        to: &'a Address,
        request_envelope: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<ResponseEnvelope, TransportError>> {
        Box::pin(async move {
            let json = to_json(&request_envelope)?;
            let req = request(pb::Envelope { json }, &trace, true);
            let answer = self
                .ring(to)?
                .call(req)
                .await
                .map_err(|s| self.failed(to, &s))?;
            from_json(to, &answer.into_inner().json)
        })
    }
}

impl BlobClient for GrpcClient {
    fn put<'a>(
        &'a self,
        to: &'a Address,
        meta: FileMeta,
        body: Option<Body>,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<PutReply, TransportError>> {
        Box::pin(async move {
            let head = pb::PutPart {
                part: Some(put_part::Part::Meta(to_json(&meta)?)),
            };
            let control = body.is_none();
            let (parts, pump) = outgoing(head, body, |chunk| pb::PutPart {
                part: Some(put_part::Part::Chunk(chunk)),
            });
            let req = request(parts, &trace, control);
            let answer = send_put(self.blob(to)?, req).await;
            if let Some(e) = pump.failure() {
                return Err(TransportError::Body(e));
            }
            let answer = answer.map_err(|s| self.failed(to, &s))?;
            from_json(to, &answer.into_inner().json)
        })
    }

    fn get<'a>(
        &'a self,
        to: &'a Address,
        id: Id,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Object>, TransportError>> {
        Box::pin(async move {
            let req = request(pb::GetRequest { id: id.to_string() }, &trace, false);
            let mut parts = match self.blob(to)?.get(req).await {
                Ok(r) => r.into_inner(),
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
                Err(s) => return Err(self.failed(to, &s)),
            };
            let head = parts.message().await.map_err(|s| self.failed(to, &s))?;
            let meta = match head.and_then(|h| h.part) {
                Some(object_part::Part::Meta(json)) => meta_from(to, &json)?,
                _ => {
                    return Err(TransportError::Protocol(format!(
                        "{to} sent an object without its metadata"
                    )));
                }
            };
            if meta.id != id || meta.deleted {
                return Err(TransportError::Protocol(format!(
                    "{to} answered with another object or a tombstone"
                )));
            }
            let body = incoming(meta.size, parts, content);
            Ok(Some(Object { meta, body }))
        })
    }

    fn get_shared<'a>(
        &'a self,
        to: &'a Address,
        name: &'a str,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Body>, TransportError>> {
        Box::pin(async move {
            let req = request(
                pb::GetSharedRequest {
                    name: name.to_owned(),
                },
                &trace,
                false,
            );
            let mut parts = match self.blob(to)?.get_shared(req).await {
                Ok(r) => r.into_inner(),
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
                Err(s) => return Err(self.failed(to, &s)),
            };
            let head = parts.message().await.map_err(|s| self.failed(to, &s))?;
            let Some(object_part::Part::Size(len)) = head.and_then(|h| h.part) else {
                return Err(TransportError::Protocol(format!(
                    "{to} sent a shared file without its length"
                )));
            };
            Ok(Some(incoming(len, parts, content)))
        })
    }

    fn query<'a>(
        &'a self,
        to: &'a Address,
        query: BlobQuery,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<BlobAnswer, TransportError>> {
        Box::pin(async move {
            let req = request(
                pb::Json {
                    json: to_json(&query)?,
                },
                &trace,
                true,
            );
            let answer = self
                .blob(to)?
                .query(req)
                .await
                .map_err(|s| self.failed(to, &s))?;
            from_json(to, &answer.into_inner().json)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::layers::with_deadline;

    #[tokio::test]
    async fn control_calls_carry_the_deadline_and_transfers_do_not() {
        let trace = TraceCarrier::default();
        let outside = request((), &trace, true);
        assert!(outside.metadata().get("grpc-timeout").is_none());
        let inside = with_deadline(Duration::from_secs(2), async {
            Ok((request((), &trace, true), request((), &trace, false)))
        })
        .await;
        let (control, transfer) = inside.expect("in time");
        let sent = control
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .expect("grpc-timeout");
        assert!(
            sent.ends_with('m') || sent.ends_with('u') || sent.ends_with('n'),
            "{sent}"
        );
        assert!(transfer.metadata().get("grpc-timeout").is_none());
        assert!(
            control
                .metadata()
                .get(super::super::status::PROTOCOL_KEY)
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_peer_that_cannot_be_reached_loses_its_channel() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let to = Address::new(format!("127.0.0.1:{port}"));
        let client = GrpcClient::new(ClientOptions::connect_within(Duration::from_secs(1)), None);
        let me = crate::wire::Peer::from_address("127.0.0.1:1");
        let ping = RequestEnvelope::new(None, me, crate::wire::ring::Request::Ping);
        let answer = client.call(&to, ping, TraceCarrier::default()).await;
        assert!(
            matches!(answer, Err(TransportError::Unreachable(_))),
            "{answer:?}"
        );
        assert_eq!(client.channels.len(), 0, "the channel was kept");
    }
}
