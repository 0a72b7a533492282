//! The ring runtime: drives one sans-io [`Node`] with real time and the peer transport.
//!
//! One actor task ([`driver`]) owns the node and takes commands from a bounded mailbox
//! ([`commands`]): peers' requests, answers to the node's own requests, timer ticks
//! ([`timers`]), and the API's lookups, joins and leaves. It executes the node's outputs
//! (sending requests concurrently, each with the transport's time-out), wakes waiting callers,
//! turns ring events into metrics and log lines ([`events`]), and publishes a [`Status`]
//! snapshot that every reader uses ([`status`]). [`Service`] is the handle the rest of the peer
//! holds.

mod bootstrap;
mod commands;
mod driver;
mod events;
mod merge;
mod remember;
mod status;
mod timers;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::field::Empty;
use tracing::{Instrument, Span, debug, info_span};

use crate::config::Config;
use crate::id::Id;
use crate::metrics::Metrics;
use crate::ring::verify::{Confirm, Walk};
use crate::ring::{
    Address, Cause, CommandError, JoinFailure, LookupError, LookupResult, Node, NotReady, Peer,
    Rejection, Request, RequestEnvelope, Response, ResponseEnvelope, RingConfig,
};
use crate::telemetry::{self, TraceCarrier};
use crate::transport::{BoxFuture, RingClient, RingHandler, TransportError, TransportFactory};
pub use bootstrap::new_incarnation;
use commands::{Command, JoinError, Mailbox};
pub use merge::{MergeError, MergeReport};
pub use status::Status;

/// Errors of the service's operations, as the API reports them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("already a member of a ring")]
    AlreadyMember,
    #[error("not a member of a ring")]
    NotMember,
    #[error("join failed: {0}")]
    JoinFailed(JoinFailure),
    #[error("lookup failed: {0}")]
    Lookup(#[from] LookupError),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("the peer is shutting down")]
    ShuttingDown,
}

impl From<commands::Closed> for ServiceError {
    fn from(_: commands::Closed) -> ServiceError {
        ServiceError::ShuttingDown
    }
}

/// A peer's neighbourhood as it answered [`Service::neighbors`].
#[derive(Clone, Debug)]
pub struct Neighbors {
    pub ring_id: Option<crate::ring::RingId>,
    pub predecessor: Option<Peer>,
    pub successors: Vec<Peer>,
}

/// One running peer's ring: the handle to the driver that owns the node.
pub struct Service {
    mailbox: Mailbox,
    status: status::Published,
    client: Arc<dyn RingClient>,
    factory: Arc<dyn TransportFactory>,
    config: Config,
    metrics: Metrics,
    /// Where the ring's events go (a disabled handle without `events.enabled`).
    events: crate::events::Events,
    started: Instant,
    /// Milliseconds since start of the last tick the driver applied (liveness).
    last_tick_ms: AtomicU64,
    /// Milliseconds since start of the last completed stabilization round; 0 = never.
    last_stabilized_ms: AtomicU64,
    /// Numbers the waiting callers of lookups (see [`commands::Ticket`]).
    tickets: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// The driver, until [`Service::start`] runs it.
    driver: std::sync::Mutex<Option<DriverStart>>,
}

struct DriverStart {
    node: Node,
    mailbox: tokio::sync::mpsc::Receiver<(Command, Span)>,
}

impl Service {
    pub fn new(
        config: Config,
        factory: Arc<dyn TransportFactory>,
        client: Arc<dyn RingClient>,
        metrics: Metrics,
        events: crate::events::Events,
    ) -> Arc<Service> {
        let me = Peer::new(config.node_id(), Address::new(&config.node.advertise));
        let ring = RingConfig {
            successors: config.ring.successors,
            membership_table_max: config.ring.membership_table_max,
            ..RingConfig::default()
        };
        let mut node = Node::new(me, ring);
        node.set_incarnation(bootstrap::new_incarnation());
        // Seeds that answer from outside this ring are merge candidates (DESIGN.md §11).
        node.set_merge_seeds(config.ring.seeds.iter().map(Address::new).collect());
        let (shutdown, _) = watch::channel(false);
        let (mailbox, inbox) = Mailbox::new();
        Arc::new(Service {
            mailbox,
            status: status::Published::new(&node),
            client,
            factory,
            config,
            metrics,
            events,
            started: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            last_stabilized_ms: AtomicU64::new(0),
            tickets: AtomicU64::new(0),
            shutdown,
            driver: std::sync::Mutex::new(Some(DriverStart {
                node,
                mailbox: inbox,
            })),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Where this peer reports ring and file events.
    pub fn events(&self) -> &crate::events::Events {
        &self.events
    }

    /// The node's state as last published by the driver.
    pub fn status(&self) -> Arc<Status> {
        self.status.get()
    }

    /// Whether the peer is ready (the rules of `/readyz`), as it changes.
    pub fn ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.status.ready()
    }

    pub fn me(&self) -> Peer {
        self.status().me.clone()
    }

    /// The transport this peer speaks.
    pub fn factory(&self) -> &Arc<dyn TransportFactory> {
        &self.factory
    }

    /// Whether `key` is in this peer's range (predecessor, self].
    pub fn owns(&self, key: Id) -> bool {
        self.status().owns(key)
    }

    /// The current successor list.
    pub fn successors(&self) -> Vec<Peer> {
        self.status().successors.clone()
    }

    /// Starts the driver, the maintenance timers and the initial membership: found a ring, or
    /// join the configured bootstrap (retrying until it answers). A second call does nothing.
    pub fn start(self: &Arc<Self>) {
        let Some(start) = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let remembered = match crate::persist::load(&self.config.files.store_dir) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the remembered ring state");
                None
            }
        };
        let mut node = start.node;
        node.set_remembered(remembered.as_ref().and_then(|s| s.ring_id()));
        let driver = driver::Driver::new(node, Arc::clone(self));
        tokio::spawn(driver.run(start.mailbox, self.shutdown.subscribe()));
        timers::start(self);
        let svc = Arc::clone(self);
        tokio::spawn(async move { svc.become_member(remembered).await });
    }

    /// Joins the ring the peer at `bootstrap` belongs to; returns once joined.
    pub async fn join(self: &Arc<Self>, bootstrap: &str) -> Result<(), ServiceError> {
        let span = info_span!("chord.join", bootstrap, otel.status_code = Empty);
        telemetry::mark_trace(&span);
        let result = self.join_inner(bootstrap).instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    async fn join_inner(&self, bootstrap: &str) -> Result<(), ServiceError> {
        let bootstrap = Address::new(bootstrap);
        // A join is a lookup plus one request: bound it generously.
        let limit = self.config.ring.rpc_timeout * 40;
        let asked = self.mailbox.ask(|reply| Command::Join { bootstrap, reply });
        match tokio::time::timeout(limit, asked).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(JoinError::Command(CommandError::AlreadyMember)))) => {
                Err(ServiceError::AlreadyMember)
            }
            Ok(Ok(Err(JoinError::Failed(reason)))) => Err(ServiceError::JoinFailed(reason)),
            Ok(Err(closed)) => Err(closed.into()),
            Err(_) => Err(ServiceError::Timeout(limit)),
        }
    }

    /// Founds a ring with this id (the bootstrap machine decided so).
    async fn create(&self, ring_id: crate::ring::RingId) -> Result<(), ServiceError> {
        match self
            .mailbox
            .ask(|reply| Command::Create { ring_id, reply })
            .await?
        {
            Ok(()) => Ok(()),
            Err(CommandError::AlreadyMember) => Err(ServiceError::AlreadyMember),
        }
    }

    /// Leaves the ring gracefully; returns once the neighbours were told (bounded by
    /// `ring.leave_timeout`). Leaving when not a member is not an error.
    pub async fn leave(&self) -> Result<(), ServiceError> {
        let span = info_span!("chord.leave");
        telemetry::mark_trace(&span);
        let limit = self.config.ring.leave_timeout;
        let asked = self.mailbox.ask(|reply| Command::Leave { reply });
        match tokio::time::timeout(limit, asked).instrument(span).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(closed)) => Err(closed.into()),
            Err(_) => Err(ServiceError::Timeout(limit)),
        }
    }

    /// Starts handing keys off before a leave: the node takes no more keys or copies. Whether
    /// it is handing off (only a member can).
    pub async fn begin_hand_off(&self) -> bool {
        self.mailbox
            .ask(|reply| Command::HandOff { reply })
            .await
            .unwrap_or(false)
    }

    /// Stops the driver, the timers and background loops.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Completes once [`Service::stop`] was called (for background loops of other layers).
    pub async fn stopped(&self) {
        let mut stop = self.shutdown.subscribe();
        let _ = stop.wait_for(|s| *s).await;
    }

    /// Looks up the peer responsible for `target`. A caller that stops waiting (its future
    /// dropped, or the time-out) cancels the lookup in the node.
    pub async fn lookup(&self, target: Id) -> Result<LookupResult, ServiceError> {
        self.lookup_with(target, false).await
    }

    /// [`Service::lookup`] for a user's lookup (the API's): with `may_reuse` and
    /// `ring.reuse_lookup_answers`, answered from what the responsible peer said of its keys
    /// this period when it covers `target` (see `ring::recent`), without a message.
    pub async fn lookup_for_user(
        &self,
        target: Id,
        may_reuse: bool,
    ) -> Result<LookupResult, ServiceError> {
        let reuse = may_reuse && self.config.ring.reuse_lookup_answers;
        self.lookup_with(target, reuse).await
    }

    async fn lookup_with(&self, target: Id, reuse: bool) -> Result<LookupResult, ServiceError> {
        let span = info_span!(
            "chord.lookup",
            lookup.target = %target,
            lookup.hops = Empty,
            lookup.timeouts = Empty,
            lookup.responsible = Empty,
            otel.status_code = Empty,
        );
        telemetry::mark_trace(&span);
        let started = Instant::now();
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let mut cancel = CancelOnDrop {
            mailbox: &self.mailbox,
            ticket: Some(ticket),
        };
        // The node sends the first hop in this span; later hops inherit it from the task that
        // carried the previous answer (see the driver).
        let asked = self.mailbox.ask(|reply| Command::Lookup {
            ticket,
            target,
            reuse,
            reply,
        });
        let limit = self.config.ring.rpc_timeout * 16;
        let outcome = match tokio::time::timeout(limit, asked)
            .instrument(span.clone())
            .await
        {
            Ok(Ok(outcome)) => {
                cancel.ticket = None;
                outcome.map_err(ServiceError::from)
            }
            Ok(Err(closed)) => Err(closed.into()),
            Err(_) => Err(ServiceError::Timeout(limit)),
        };
        drop(cancel);
        let label = match &outcome {
            Ok(r) => {
                // Only a reused answer is confirmed without anyone on its path.
                if r.confirmed && r.path.is_empty() {
                    self.metrics.lookups_reused.inc();
                }
                self.metrics.lookup_hops.observe(f64::from(r.hops));
                span.record("lookup.hops", r.hops);
                span.record("lookup.timeouts", r.timeouts);
                span.record("lookup.responsible", tracing::field::display(r.node.id));
                "ok"
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                span.in_scope(|| debug!(%target, error = %e, "lookup failed"));
                "error"
            }
        };
        self.metrics.lookups.with_label_values(&[label]).inc();
        self.metrics
            .lookup_duration
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// A lookup answers with the successor its last hop knew of; right after a crash that may
    /// be a dead peer. This asks the answer (one ping) and, if it is dead, the peers after it in
    /// the same answer, so that a user is pointed at a live responsible peer: the first live one
    /// of that list is where the dead peer's keys and copies are.
    pub async fn confirm_responsible(&self, r: LookupResult) -> LookupResult {
        let status = self.status();
        let mut confirm = Confirm::new(status.me.id, r);
        while let Some(candidate) = confirm.ask_next() {
            let ping = RequestEnvelope::new(status.ring_id, status.me.clone(), Request::Ping);
            let alive = matches!(
                self.call(&candidate.address, ping).await,
                Ok(ResponseEnvelope {
                    body: Response::Ack,
                    ..
                })
            );
            confirm.answered(alive);
        }
        confirm.finish()
    }

    /// Walks the ring along successor pointers, starting here: the peers seen in ring order
    /// (this one first), and whether the walk came back here.
    pub async fn ring_walk(&self, limit: usize) -> (Vec<Peer>, bool) {
        let status = self.status();
        let me = status.me.clone();
        let mut walk = Walk::new(me.clone(), status.successor().cloned(), limit);
        while let Some(current) = walk.ask_next() {
            let request = RequestEnvelope::new(status.ring_id, me.clone(), Request::GetNeighbors);
            let successors = match self.call(&current.address, request).await {
                Ok(ResponseEnvelope {
                    body: Response::Neighbors { successors, .. },
                    ..
                }) => Some(successors),
                _ => None,
            };
            walk.answered(successors);
        }
        walk.finish()
    }

    /// One peer's ring id, predecessor and successor list as it answers them now (one
    /// `GetNeighbors` call); `None` when it does not answer (the ring page's gather falls back
    /// to this for a peer whose API it cannot reach).
    pub async fn neighbors(&self, at: &Address) -> Option<Neighbors> {
        let status = self.status();
        let request =
            RequestEnvelope::new(status.ring_id, status.me.clone(), Request::GetNeighbors);
        match self.call(at, request).await {
            Ok(ResponseEnvelope {
                ring_id,
                body:
                    Response::Neighbors {
                        predecessor,
                        successors,
                        ..
                    },
                ..
            }) => Some(Neighbors {
                ring_id,
                predecessor,
                successors,
            }),
            _ => None,
        }
    }

    /// Seconds since the last completed stabilization round (since start when none completed).
    pub fn seconds_since_stabilization(&self) -> f64 {
        let last = self.last_stabilized_ms.load(Ordering::Relaxed);
        let age = if last == 0 {
            self.elapsed_ms()
        } else {
            self.elapsed_ms().saturating_sub(last)
        };
        age as f64 / 1000.0
    }

    /// Why the peer is not ready; empty when it is.
    pub fn readiness(&self) -> Vec<NotReady> {
        let mut reasons = self.status().readiness.clone();
        if let Some(detail) = self.factory.not_ready() {
            reasons.push(NotReady::Transport { detail });
        }
        reasons
    }

    /// Whether the peer has joined a ring (startup probe).
    pub fn is_member(&self) -> bool {
        self.status().is_member()
    }

    /// Liveness: the driver applied a maintenance tick recently (a stuck driver fails it).
    /// Never depends on other peers.
    pub fn is_alive(&self) -> bool {
        let max_interval = self
            .config
            .ring
            .stabilize_interval
            .max(self.config.ring.fix_fingers_interval)
            .max(self.config.ring.check_predecessor_interval);
        let allowed = (max_interval * 10).max(Duration::from_secs(5)).as_millis() as u64;
        self.elapsed_ms()
            .saturating_sub(self.last_tick_ms.load(Ordering::Relaxed))
            <= allowed
    }

    /// Refreshes the gauges that are computed at scrape time, then renders all metrics.
    pub fn render_metrics(&self) -> String {
        let n = self.status();
        let m = &self.metrics;
        m.ring_size.set(n.ring_size_estimate);
        m.successors.set(n.successors.len() as i64);
        m.predecessor_known.set(i64::from(n.predecessor.is_some()));
        m.ready.set(i64::from(n.readiness.is_empty()));
        m.seconds_since_stabilization
            .set(self.seconds_since_stabilization());
        self.metrics.render()
    }

    /// One RPC through the transport (the shared layers measure it and bound it).
    async fn call(
        &self,
        to: &Address,
        request: RequestEnvelope,
    ) -> Result<ResponseEnvelope, TransportError> {
        self.client.call(to, request, TraceCarrier::current()).await
    }

    /// Whether `target` still names a peer that may exist (its name resolves).
    async fn resolves(&self, target: &str) -> bool {
        match self.factory.parse_address(target) {
            Ok(address) => self.factory.resolves(&address).await,
            Err(_) => false,
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Tells the driver that a lookup's caller stopped waiting, unless it got its answer.
struct CancelOnDrop<'a> {
    mailbox: &'a Mailbox,
    ticket: Option<commands::Ticket>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket {
            self.mailbox.try_send(Command::CancelLookup { ticket });
        }
    }
}

/// The client span of one peer RPC; a lookup step is a `chord.lookup.hop` with its index.
fn rpc_client_span(cause: Cause, to: &Address, body: &Request) -> Span {
    let method = body.method();
    match cause {
        Cause::LookupHop {
            hop, target, peer, ..
        } => {
            let span = info_span!(
                "chord.lookup.hop",
                otel.kind = "client",
                otel.status_code = Empty,
                rpc.system = "chordnet",
                rpc.method = method,
                lookup.hop = hop,
                lookup.target = %target,
                peer.address = %to,
                peer.id = Empty,
            );
            if let Some(id) = peer {
                span.record("peer.id", tracing::field::display(id));
            }
            span
        }
        _ => telemetry::peer_call_span(method, to),
    }
}

/// The peer-protocol endpoint: answers other peers' requests with the node.
pub struct Endpoint(pub Arc<Service>);

impl RingHandler for Endpoint {
    fn handle(
        &self,
        request: RequestEnvelope,
        trace: TraceCarrier,
    ) -> BoxFuture<'_, ResponseEnvelope> {
        // With tracing off the span is disabled and its fields are never evaluated.
        let method = request.body.method();
        let span = info_span!(
            "chord.rpc.server",
            otel.name = method,
            otel.kind = "server",
            rpc.system = "chordnet",
            rpc.method = method,
            peer.from = %request.from.id,
            chord.node = %self.0.status().me.id,
        );
        trace.adopt(&span);
        let svc = &self.0;
        Box::pin(
            async move {
                let asked = svc.mailbox.ask(|reply| Command::Request { request, reply });
                match asked.await {
                    Ok(answer) => answer,
                    // The peer is stopping: to the asker it is no longer a member.
                    Err(_) => ResponseEnvelope::new(
                        None,
                        svc.me(),
                        Response::Rejected {
                            reason: Rejection::NotMember { remembers: None },
                        },
                    ),
                }
            }
            .instrument(span),
        )
    }
}

pub use bootstrap::new_ring_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_ids_are_uuid_v4_and_differ() {
        let a = new_ring_id();
        let b = new_ring_id();
        assert_ne!(a, b);
        let s = a.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4", "{s}");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
    }
}
