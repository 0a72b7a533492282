//! The NATS transport's client: ring calls as request/reply with the layers' deadline, data
//! calls as [`Session`]s.

use crate::transport::{from_json, to_json};
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use bytes::Bytes;

use super::flow::{First, FlowError, Session, chunk_size};
use super::headers::{self, BODY, HEAD, NONE, OK, REFUSAL, REFUSED, STATUS};
use super::{MAX_META, MAX_QUERY, MAX_RPC, NatsTransport};
use crate::id::Id;
use crate::transport::layers::time_left;
use crate::transport::{
    BlobAnswer, BlobClient, BlobQuery, Body, BodyError, BoxFuture, Object, PutReply, Refusal,
    RefusalKind, RingClient, TraceCarrier, TransportError,
};
use crate::wire::Address;
use crate::wire::files::FileMeta;
use crate::wire::ring::{RequestEnvelope, ResponseEnvelope};

/// A ring call made outside the layers (no deadline given) waits this long at most.
const DEFAULT_RPC_WAIT: Duration = Duration::from_secs(10);
/// The longest refusal detail read.
const MAX_DETAIL: u64 = 64 << 10;

pub struct NatsClient {
    transport: NatsTransport,
}

/// What a data call brought back.
enum Reply {
    /// The peer has no such thing.
    None,
    Found {
        head: Bytes,
        body: Option<Body>,
    },
}

impl NatsClient {
    pub fn new(transport: NatsTransport) -> NatsClient {
        NatsClient { transport }
    }

    /// One data-plane call: `head` (and `body`) to `<to>.blob.<op>`, the answer back.
    async fn exchange(
        &self,
        to: &Address,
        op: &str,
        head: Bytes,
        body: Option<Body>,
        trace: &TraceCarrier,
        max_head: u64,
    ) -> Result<Reply, TransportError> {
        self.transport.check(to)?;
        let nc = self.transport.connection().await?;
        let max_payload = self.transport.max_payload(&nc).await?;
        let idle = self.transport.settings.progress_timeout;
        let fail = |e: FlowError| failure(to, e);
        let mut session = Session::open(&nc, None, idle, chunk_size(max_payload))
            .await
            .map_err(fail)?;
        let mut h = headers::request(trace);
        headers::set(&mut h, HEAD, head.len());
        if let Some(b) = &body {
            headers::set(&mut h, BODY, b.len());
        }
        let first = First {
            subject: format!("{to}.blob.{op}").into(),
            headers: h,
        };
        session.send(first, head, body).await.map_err(fail)?;
        let answer = session.first(None).await.map_err(fail)?;
        let number = |name| headers::number(&answer, name).map_err(TransportError::Protocol);
        let head_len = number(HEAD)?.unwrap_or(0);
        let body_len = number(BODY)?;
        match headers::get(&answer, STATUS) {
            Some(OK) => {}
            Some(NONE) => {
                session.complete();
                return Ok(Reply::None);
            }
            Some(REFUSED) => {
                let kind = RefusalKind::from_name(headers::get(&answer, REFUSAL).unwrap_or(""));
                let detail = session
                    .head(&answer, head_len, MAX_DETAIL)
                    .await
                    .map_err(fail)?;
                session.complete();
                let detail = String::from_utf8_lossy(&detail).into_owned();
                return Err(TransportError::Refused(Refusal::new(kind, detail)));
            }
            other => {
                return Err(TransportError::Protocol(format!(
                    "{to} answered with status {other:?}"
                )));
            }
        }
        let head = session
            .head(&answer, head_len, max_head)
            .await
            .map_err(fail)?;
        let body = match body_len {
            Some(len) => Some(session.body(len).map_err(fail)?),
            None => {
                session.complete();
                None
            }
        };
        Ok(Reply::Found { head, body })
    }
}

/// What a failed session means to the caller.
fn failure(to: &Address, e: FlowError) -> TransportError {
    match e {
        FlowError::NoResponders => {
            TransportError::Unreachable(format!("no peer serves {to} (no responders)"))
        }
        FlowError::Broker(e) => TransportError::Unreachable(format!("{to}: {e}")),
        FlowError::Stalled(d) => TransportError::Body(BodyError::Stalled(d)),
        FlowError::Body(e) => TransportError::Body(e),
        FlowError::Aborted => {
            TransportError::Body(BodyError::Io(format!("{to} aborted the transfer")))
        }
        e @ (FlowError::Gap { .. } | FlowError::Protocol(_)) => {
            TransportError::Protocol(format!("{to}: {e}"))
        }
    }
}

fn expect_found(to: &Address, reply: Reply) -> Result<(Bytes, Option<Body>), TransportError> {
    match reply {
        Reply::Found { head, body } => Ok((head, body)),
        Reply::None => Err(TransportError::Protocol(format!(
            "{to} answered \"none\" to a call that always has an answer"
        ))),
    }
}

impl RingClient for NatsClient {
    fn call<'a>(
        &'a self,
        to: &'a Address,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<ResponseEnvelope, TransportError>> {
        Box::pin(async move {
            self.transport.check(to)?;
            let nc = self.transport.connection().await?;
            let limit = time_left().unwrap_or(DEFAULT_RPC_WAIT);
            let req = async_nats::Request::new()
                .payload(to_json(&request)?)
                .headers(headers::request(&trace))
                .timeout(Some(limit));
            let answer = match nc.send_request(format!("{to}.rpc"), req).await {
                Ok(m) => m,
                Err(e) => {
                    return Err(match e.kind() {
                        RequestErrorKind::TimedOut => TransportError::Timeout(limit),
                        RequestErrorKind::NoResponders => TransportError::Unreachable(format!(
                            "no peer serves {to} (no responders)"
                        )),
                        RequestErrorKind::MaxPayloadExceeded | RequestErrorKind::InvalidSubject => {
                            TransportError::Protocol(format!("{to}: {e}"))
                        }
                        _ => TransportError::Unreachable(format!("{to}: {e}")),
                    });
                }
            };
            if headers::get(&answer, STATUS) == Some(REFUSED) {
                return Err(TransportError::Protocol(format!(
                    "{to} refused the request: {}",
                    String::from_utf8_lossy(&answer.payload)
                )));
            }
            if answer.payload.len() as u64 > MAX_RPC {
                return Err(TransportError::Protocol(format!(
                    "{to} answered {} bytes",
                    answer.payload.len()
                )));
            }
            from_json(to, &answer.payload)
        })
    }
}

impl BlobClient for NatsClient {
    fn put<'a>(
        &'a self,
        to: &'a Address,
        meta: FileMeta,
        body: Option<Body>,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<PutReply, TransportError>> {
        Box::pin(async move {
            let head = to_json(&meta)?;
            let reply = self
                .exchange(to, "put", head, body, &trace, MAX_META * 2)
                .await?;
            let (head, _) = expect_found(to, reply)?;
            from_json(to, &head)
        })
    }

    fn get<'a>(
        &'a self,
        to: &'a Address,
        id: Id,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<Option<Object>, TransportError>> {
        Box::pin(async move {
            let head = to_json(&id)?;
            let (head, body) = match self
                .exchange(to, "get", head, None, &trace, MAX_META)
                .await?
            {
                Reply::None => return Ok(None),
                Reply::Found { head, body } => (head, body),
            };
            let meta: FileMeta = from_json(to, &head)?;
            if meta.id != id || meta.deleted {
                return Err(TransportError::Protocol(format!(
                    "{to} answered with another object or a tombstone"
                )));
            }
            let body = body.unwrap_or_else(Body::empty);
            if body.len() != meta.size {
                return Err(TransportError::Protocol(format!(
                    "{to} sent {} bytes of content for an object of {}",
                    body.len(),
                    meta.size
                )));
            }
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
            let head = to_json(&name)?;
            match self.exchange(to, "shared", head, None, &trace, 0).await? {
                Reply::None => Ok(None),
                Reply::Found { body, .. } => Ok(Some(body.unwrap_or_else(Body::empty))),
            }
        })
    }

    fn query<'a>(
        &'a self,
        to: &'a Address,
        query: BlobQuery,
        trace: TraceCarrier,
    ) -> BoxFuture<'a, Result<BlobAnswer, TransportError>> {
        Box::pin(async move {
            let head = to_json(&query)?;
            let reply = self
                .exchange(to, "query", head, None, &trace, MAX_QUERY)
                .await?;
            let (head, _) = expect_found(to, reply)?;
            from_json(to, &head)
        })
    }
}
