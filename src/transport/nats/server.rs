//! The NATS transport's serving side: subscriptions on the peer's subject, one task per call.
//! Everything a caller sends is checked (sizes, protocol version, order) before a handler
//! sees it. On shutdown the subscriptions go at once: callers then hear "no responders".

use std::sync::Arc;

use async_nats::{Client, HeaderMap, Message, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tracing::debug;

use super::flow::{First, FlowError, Session, chunk_size};
use super::headers::{self, BODY, DATA, HEAD, KIND, NONE, OK, REFUSAL, REFUSED, SEQ, STATUS};
use super::{MAX_META, MAX_QUERY, MAX_RPC, MAX_SERVING, NatsTransport};
use crate::id::Id;
use crate::transport::auth::received;
use crate::transport::{
    BlobQuery, Body, Handlers, Refusal, RefusalKind, ServeError, ServeOptions, Serving,
};
use crate::wire::files::FileMeta;
use crate::wire::ring::RequestEnvelope;

/// Subscribes to `<advertise>.rpc` and `<advertise>.blob.*` and serves until `shutdown`.
pub async fn serve(
    transport: NatsTransport,
    options: ServeOptions,
    handlers: Handlers,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Serving, ServeError> {
    let what = format!("the NATS broker at {}", transport.settings.nats.url);
    let fail = |e: String| ServeError {
        what: what.clone(),
        source: std::io::Error::other(e),
    };
    let nc = transport
        .connection()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let address = options.advertise.to_string();
    let mut rpc = nc
        .subscribe(format!("{address}.rpc"))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut blob = nc
        .subscribe(format!("{address}.blob.*"))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let serving = Arc::new(Serve {
        nc,
        transport: transport.clone(),
        handlers,
        max_body: options.max_body,
        idle: transport.settings.progress_timeout,
        slots: Arc::new(Semaphore::new(MAX_SERVING)),
    });
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                m = rpc.next() => match m {
                    Some(m) => serving.spawn(m, true),
                    None => break,
                },
                m = blob.next() => match m {
                    Some(m) => serving.spawn(m, false),
                    None => break,
                },
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        // Dropping the subscriptions unsubscribes: callers hear "no responders" from now on.
        drop(rpc);
        drop(blob);
        let _ = serving.nc.flush().await;
    });
    Ok(Serving {
        local: address,
        task,
    })
}

struct Serve {
    nc: Client,
    transport: NatsTransport,
    handlers: Handlers,
    max_body: u64,
    idle: std::time::Duration,
    slots: Arc<Semaphore>,
}

/// What a data call answers.
enum Answer {
    None,
    Found { head: Bytes, body: Option<Body> },
}

fn invalid(detail: impl Into<String>) -> Refusal {
    Refusal::new(RefusalKind::Invalid, detail)
}

fn from_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(json).map_err(|e| invalid(format!("bad JSON: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Bytes, Refusal> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Refusal::new(RefusalKind::Internal, format!("cannot encode: {e}")))
}

fn flow_refusal(e: FlowError) -> Refusal {
    invalid(e.to_string())
}

impl Serve {
    fn spawn(self: &Arc<Self>, m: Message, ring: bool) {
        let Some(reply) = m.reply.clone() else {
            return; // nobody to answer
        };
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            if !ring {
                let busy = Refusal::new(RefusalKind::Unavailable, "too many calls in progress");
                let me = Arc::clone(self);
                tokio::spawn(async move { me.refuse_at_once(reply, busy).await });
            }
            return;
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            if ring {
                me.ring(m, reply).await;
            } else {
                me.blob(m, reply).await;
            }
            drop(slot);
        });
    }

    async fn ring(&self, m: Message, reply: Subject) {
        let trace = headers::carrier(&m);
        let parsed = if m.payload.len() as u64 > MAX_RPC {
            Err(format!("an envelope of {} bytes", m.payload.len()))
        } else {
            serde_json::from_slice::<RequestEnvelope>(&m.payload).map_err(|e| e.to_string())
        };
        let (h, payload) = match parsed {
            Ok(request) => {
                let answer = self.handlers.ring.handle(request, trace).await;
                match serde_json::to_vec(&answer) {
                    Ok(json) => (HeaderMap::new(), Bytes::from(json)),
                    Err(e) => refused_headers(&invalid(format!("cannot encode: {e}"))),
                }
            }
            Err(e) => refused_headers(&invalid(format!("bad envelope: {e}"))),
        };
        if let Err(e) = self.nc.publish_with_headers(reply, h, payload).await {
            debug!(error = %e, "could not answer a ring call");
        }
    }

    /// Answers a data call with a refusal without a session (one message, number 0).
    async fn refuse_at_once(&self, reply: Subject, refusal: Refusal) {
        let (mut h, payload) = refused_headers(&refusal);
        headers::set(&mut h, KIND, DATA);
        headers::set(&mut h, SEQ, 0);
        let _ = self.nc.publish_with_headers(reply, h, payload).await;
    }

    async fn blob(&self, m: Message, reply: Subject) {
        let op = m.subject.rsplit('.').next().unwrap_or("").to_owned();
        if let Err(r) = headers::check_protocol(&m) {
            return self.refuse_at_once(reply, r).await;
        }
        let Ok(max_payload) = self.transport.max_payload(&self.nc).await else {
            return;
        };
        let chunk = chunk_size(max_payload);
        let mut session = match Session::open(&self.nc, Some(reply.clone()), self.idle, chunk).await
        {
            Ok(s) => s,
            Err(e) => return debug!(error = %e, "cannot open a session"),
        };
        let first = match session.accept(m).await {
            Ok(f) => f,
            Err(e) => return debug!(error = %e, "a data call failed at its first message"),
        };
        let answer = match self.answer(&op, &mut session, &first).await {
            Ok(a) => a,
            Err(r) => {
                let (h, detail) = refused_headers(&r);
                let first = First {
                    subject: reply,
                    headers: h,
                };
                if session.send(first, detail, None).await.is_ok() {
                    session.complete();
                }
                return;
            }
        };
        let mut h = HeaderMap::new();
        let (head, body) = match answer {
            Answer::None => {
                headers::set(&mut h, STATUS, NONE);
                (Bytes::new(), None)
            }
            Answer::Found { head, body } => {
                headers::set(&mut h, STATUS, OK);
                headers::set(&mut h, HEAD, head.len());
                if let Some(b) = &body {
                    headers::set(&mut h, BODY, b.len());
                }
                (head, body)
            }
        };
        let first = First {
            subject: reply,
            headers: h,
        };
        match session.send(first, head, body).await {
            Ok(_) => session.complete(),
            Err(e) => debug!(error = %e, op, "a data answer failed"),
        }
    }

    /// Reads the request of `op` and runs its handler.
    async fn answer(
        &self,
        op: &str,
        session: &mut Session,
        first: &Message,
    ) -> Result<Answer, Refusal> {
        let number = |name| headers::number(first, name).map_err(invalid);
        let head_len = number(HEAD)?.unwrap_or(0);
        let body_len = number(BODY)?;
        let max_head = match op {
            "put" => MAX_META,
            "query" => MAX_QUERY,
            "get" | "shared" => 64 << 10,
            other => return Err(invalid(format!("no data call {other:?}"))),
        };
        if op != "put" && body_len.is_some() {
            return Err(invalid(format!("a {op} request carries no content")));
        }
        let head = session
            .head(first, head_len, max_head)
            .await
            .map_err(flow_refusal)?;
        let blob = &self.handlers.blob;
        // The data plane's authenticator (ring secret) travels in the carrier: the shared
        // layers check it inside `received`.
        let carrier = headers::carrier(first);
        match op {
            "put" => {
                let meta: FileMeta = from_json(&head)?;
                let body = if meta.has_content() {
                    let len = body_len.unwrap_or(0);
                    if len != meta.size {
                        return Err(invalid(format!(
                            "{len} bytes of content for an object of {}",
                            meta.size
                        )));
                    }
                    if len > self.max_body {
                        return Err(invalid(format!(
                            "an object of {len} bytes (this peer accepts at most {})",
                            self.max_body
                        )));
                    }
                    Some(session.body(len).map_err(flow_refusal)?)
                } else {
                    if body_len.unwrap_or(0) > 0 {
                        return Err(invalid("a tombstone or manifest with content"));
                    }
                    None
                };
                let reply = received(carrier, blob.put(meta, body)).await?;
                Ok(found(to_json(&reply)?, None))
            }
            "get" => {
                let id: Id = from_json(&head)?;
                Ok(match received(carrier, blob.get(id)).await? {
                    Some(o) => found(to_json(&o.meta)?, Some(o.body)),
                    None => Answer::None,
                })
            }
            "shared" => {
                let name: String = from_json(&head)?;
                Ok(match received(carrier, blob.get_shared(&name)).await? {
                    Some(body) => found(Bytes::new(), Some(body)),
                    None => Answer::None,
                })
            }
            _ => {
                let query: BlobQuery = from_json(&head)?;
                let answer = received(carrier, blob.query(query)).await?;
                Ok(found(to_json(&answer)?, None))
            }
        }
    }
}

fn found(head: Bytes, body: Option<Body>) -> Answer {
    Answer::Found { head, body }
}

/// The headers and payload of a refusal.
fn refused_headers(r: &Refusal) -> (HeaderMap, Bytes) {
    let mut h = HeaderMap::new();
    headers::set(&mut h, STATUS, REFUSED);
    headers::set(&mut h, REFUSAL, r.kind.name());
    let detail = Bytes::from(r.detail.clone().into_bytes());
    headers::set(&mut h, HEAD, detail.len());
    (h, detail)
}
