//! The ring runtime: drives one sans-io [`Node`] with real time and the peer transport.
//!
//! It owns the node behind a mutex (every call is short and never awaits), fires the
//! maintenance timers, executes the node's outputs (sending requests concurrently, each with the
//! transport's time-out), resolves waiting lookups, joins and leaves, and turns ring events into
//! metrics and log lines.

mod bootstrap;
mod events;
mod views;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tracing::field::Empty;
use tracing::{Instrument, Span, debug, info_span};

use crate::config::Config;
use crate::id::Id;
use crate::metrics::Metrics;
use crate::ring::verify::{Confirm, Walk};
use crate::ring::{
    Address, Cause, CommandError, JoinFailure, LookupError, LookupId, LookupResult, Membership,
    Node, NotReady, Output, Peer, Request, RequestEnvelope, Response, ResponseEnvelope, RingConfig,
    Timer,
};
use crate::telemetry::{self, TraceCarrier};
use crate::transport::{BoxFuture, RingClient, RingHandler, TransportError, TransportFactory};

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

pub use views::{NodeView, PeerView, RingWalk};

#[derive(Default)]
struct Waiters {
    lookups: HashMap<LookupId, oneshot::Sender<Result<LookupResult, LookupError>>>,
    join: Vec<oneshot::Sender<Result<(), JoinFailure>>>,
    leave: Vec<oneshot::Sender<()>>,
}

/// One running peer.
pub struct Service {
    node: Mutex<Node>,
    client: Arc<dyn RingClient>,
    factory: Arc<dyn TransportFactory>,
    config: Config,
    metrics: Metrics,
    waiters: Mutex<Waiters>,
    started: Instant,
    last_tick_ms: AtomicU64,
    /// Milliseconds since start of the last completed stabilization round; 0 = never.
    last_stabilized_ms: AtomicU64,
    /// A join is in progress (automatic or asked for).
    joining: AtomicBool,
    shutdown: watch::Sender<bool>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the node's state is
/// always consistent between calls, so the data stays usable.
fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Service {
    pub fn new(
        config: Config,
        factory: Arc<dyn TransportFactory>,
        client: Arc<dyn RingClient>,
        metrics: Metrics,
    ) -> Arc<Service> {
        let me = Peer::new(config.node_id(), Address::new(&config.node.advertise));
        let ring = RingConfig {
            successors: config.ring.successors,
            ..RingConfig::default()
        };
        let (shutdown, _) = watch::channel(false);
        Arc::new(Service {
            node: Mutex::new(Node::new(me, ring)),
            client,
            factory,
            config,
            metrics,
            waiters: Mutex::new(Waiters::default()),
            started: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            last_stabilized_ms: AtomicU64::new(0),
            joining: AtomicBool::new(false),
            shutdown,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn me(&self) -> Peer {
        lock(&self.node).me().clone()
    }

    /// The transport this peer speaks.
    pub fn factory(&self) -> &Arc<dyn TransportFactory> {
        &self.factory
    }

    /// Whether `key` is in this peer's range (predecessor, self].
    pub fn owns(&self, key: Id) -> bool {
        lock(&self.node).owns(key)
    }

    /// The current successor list.
    pub fn successors(&self) -> Vec<Peer> {
        lock(&self.node).successors().to_vec()
    }

    /// Starts the maintenance timers and the initial membership: found a ring, or join the
    /// configured bootstrap (retrying until it answers).
    pub fn start(self: &Arc<Self>) {
        for (timer, every) in [
            (Timer::Stabilize, self.config.ring.stabilize_interval),
            (Timer::FixFingers, self.config.ring.fix_fingers_interval),
            (
                Timer::CheckPredecessor,
                self.config.ring.check_predecessor_interval,
            ),
        ] {
            let svc = Arc::clone(self);
            let mut stop = self.shutdown.subscribe();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = interval.tick() => {}
                        _ = stop.changed() => return,
                    }
                    svc.last_tick_ms.store(svc.elapsed_ms(), Ordering::Relaxed);
                    let span = svc.tick_span(timer);
                    span.in_scope(|| svc.apply(|n| n.tick(timer)));
                }
            });
        }
        let svc = Arc::clone(self);
        tokio::spawn(async move { svc.become_member().await });
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

    async fn join_inner(self: &Arc<Self>, bootstrap: &str) -> Result<(), ServiceError> {
        let (tx, rx) = oneshot::channel();
        self.joining.store(true, Ordering::Relaxed);
        let started = self.apply(|n| {
            let r = n.join(Address::new(bootstrap));
            if r.is_ok() {
                lock(&self.waiters).join.push(tx);
            }
            r
        });
        if let Err(CommandError::AlreadyMember) = started {
            return Err(ServiceError::AlreadyMember);
        }
        // A join is a lookup plus one request: bound it generously.
        let limit = self.config.ring.rpc_timeout * 40;
        let result = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(ServiceError::JoinFailed(reason)),
            Ok(Err(_)) => Err(ServiceError::ShuttingDown),
            Err(_) => Err(ServiceError::Timeout(limit)),
        };
        self.joining.store(false, Ordering::Relaxed);
        result
    }

    /// Leaves the ring gracefully; returns once the neighbours were told (bounded by
    /// `ring.leave_timeout`). Leaving when not a member is not an error.
    pub async fn leave(self: &Arc<Self>) -> Result<(), ServiceError> {
        let span = info_span!("chord.leave");
        telemetry::mark_trace(&span);
        let (tx, rx) = oneshot::channel();
        let member = span.in_scope(|| {
            self.apply(|n| {
                let member = n.membership() == Membership::Member;
                if member {
                    lock(&self.waiters).leave.push(tx);
                    n.leave();
                }
                member
            })
        });
        if !member {
            return Ok(());
        }
        let limit = self.config.ring.leave_timeout;
        match tokio::time::timeout(limit, rx).instrument(span).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ServiceError::Timeout(limit)),
        }
    }

    /// Stops the timers and background loops.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Completes once [`Service::stop`] was called (for background loops of other layers).
    pub async fn stopped(&self) {
        let mut stop = self.shutdown.subscribe();
        let _ = stop.wait_for(|s| *s).await;
    }

    /// Looks up the peer responsible for `target`.
    pub async fn lookup(self: &Arc<Self>, target: Id) -> Result<LookupResult, ServiceError> {
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
        let (tx, rx) = oneshot::channel();
        // The node sends the first hop inside `apply`; later hops inherit the span from the
        // task that carried the previous answer (see `execute`).
        span.in_scope(|| {
            self.apply(|n| {
                let id = n.lookup(target);
                lock(&self.waiters).lookups.insert(id, tx);
            })
        });
        let limit = self.config.ring.rpc_timeout * 16;
        let outcome = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(outcome)) => outcome.map_err(ServiceError::from),
            Ok(Err(_)) => Err(ServiceError::ShuttingDown),
            Err(_) => Err(ServiceError::Timeout(limit)),
        };
        let label = match &outcome {
            Ok(r) => {
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
    pub async fn confirm_responsible(self: &Arc<Self>, r: LookupResult) -> LookupResult {
        let (me, ring_id) = {
            let n = lock(&self.node);
            (n.me().clone(), n.ring_id())
        };
        let mut confirm = Confirm::new(me.id, r);
        while let Some(candidate) = confirm.ask_next() {
            let ping = RequestEnvelope::new(ring_id, me.clone(), Request::Ping);
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

    /// Walks the ring along successor pointers, starting here.
    pub async fn ring_walk(self: &Arc<Self>, limit: usize) -> RingWalk {
        let (me, ring_id, first) = {
            let n = lock(&self.node);
            (n.me().clone(), n.ring_id(), n.successor().cloned())
        };
        let mut walk = Walk::new(me.clone(), first, limit);
        while let Some(current) = walk.ask_next() {
            let request = RequestEnvelope::new(ring_id, me.clone(), Request::GetNeighbors);
            let successors = match self.call(&current.address, request).await {
                Ok(ResponseEnvelope {
                    body: Response::Neighbors { successors, .. },
                    ..
                }) => Some(successors),
                _ => None,
            };
            walk.answered(successors);
        }
        let (nodes, complete) = walk.finish();
        RingWalk {
            nodes: nodes.iter().map(PeerView::from).collect(),
            complete,
        }
    }

    /// The node as `GET /v1/node` shows it.
    pub fn view(&self) -> NodeView {
        let n = lock(&self.node);
        NodeView {
            id: n.id(),
            address: n.me().address.clone(),
            api: self.config.api.listen.to_string(),
            state: self.state_name(&n),
            ring_id: n.ring_id().map(|r| r.to_string()),
            predecessor: n.predecessor().map(PeerView::from),
            successors: n.successors().iter().map(PeerView::from).collect(),
            keys: 0, // the file layer fills it in
            ring_size_estimate: n.ring_size_estimate(),
            stabilization_rounds: n.stabilize_rounds(),
        }
    }

    fn state_name(&self, n: &Node) -> &'static str {
        match n.membership() {
            Membership::Idle | Membership::Joining => "joining",
            Membership::Member if n.readiness().is_empty() => "ready",
            Membership::Member => "stabilizing",
            Membership::Leaving => "leaving",
            Membership::Left if self.joining.load(Ordering::Relaxed) => "joining",
            Membership::Left => "left",
        }
    }

    /// Fingers as `(index, start, node)`; a finger not known yet shows the node itself when
    /// it is alone (it is then every start's successor), else nothing.
    pub fn fingers(&self) -> Vec<(usize, Id, Option<PeerView>)> {
        let n = lock(&self.node);
        let alone = n.successor().is_some_and(|s| s.id == n.id());
        n.fingers()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let node = match f {
                    Some(p) => Some(PeerView::from(p)),
                    None if alone => Some(PeerView::from(n.me())),
                    None => None,
                };
                (i, n.id().add_pow2(i), node)
            })
            .collect()
    }

    /// Why the peer is not ready; empty when it is.
    pub fn readiness(&self) -> Vec<NotReady> {
        lock(&self.node).readiness()
    }

    /// Whether the peer has joined a ring (startup probe).
    pub fn is_member(&self) -> bool {
        lock(&self.node).is_member()
    }

    /// Liveness: the maintenance timers ran recently. Never depends on other peers.
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
        {
            let n = lock(&self.node);
            let m = &self.metrics;
            m.ring_size.set(n.ring_size_estimate());
            m.successors.set(n.successors().len() as i64);
            m.predecessor_known
                .set(i64::from(n.predecessor().is_some()));
            m.ready.set(i64::from(n.readiness().is_empty()));
            let last = self.last_stabilized_ms.load(Ordering::Relaxed);
            let age = if last == 0 {
                self.elapsed_ms()
            } else {
                self.elapsed_ms().saturating_sub(last)
            };
            m.seconds_since_stabilization.set(age as f64 / 1000.0);
        }
        self.metrics.render()
    }

    // ----- driving the node --------------------------------------------------------------

    /// Runs `f` on the node, then executes whatever the node asked for.
    fn apply<R>(self: &Arc<Self>, f: impl FnOnce(&mut Node) -> R) -> R {
        let mut outputs = Vec::new();
        let result = {
            let mut n = lock(&self.node);
            let r = f(&mut n);
            n.drain_outputs(&mut outputs);
            r
        };
        self.execute(outputs);
        result
    }

    fn execute(self: &Arc<Self>, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send {
                    request,
                    to,
                    message,
                    cause,
                } => {
                    let svc = Arc::clone(self);
                    // The request's own span is a child of whatever the node was doing (a
                    // lookup, a stabilization round, an API request); the node's reaction to
                    // the answer runs in that same context, so a lookup's next hop is a
                    // sibling of this one, not its child.
                    let context = Span::current();
                    let span = rpc_client_span(cause, &to, &message.body);
                    // Not created in an unsampled trace: the request then carries the
                    // context's (not sampled) trace, so the peer asked follows the decision.
                    let span = if span.is_disabled() {
                        context.clone()
                    } else {
                        span
                    };
                    tokio::spawn(async move {
                        let answer = svc.call(&to, message).instrument(span.clone()).await;
                        if answer.is_err() {
                            span.record("otel.status_code", "ERROR");
                        }
                        drop(span);
                        context.in_scope(|| {
                            svc.apply(|n| match answer {
                                Ok(response) => n.handle_response(request, response),
                                Err(_) => n.handle_failure(request),
                            })
                        });
                    });
                }
                Output::LookupDone { lookup, outcome } => {
                    if let Some(tx) = lock(&self.waiters).lookups.remove(&lookup) {
                        let _ = tx.send(outcome);
                    }
                }
                Output::Event(event) => self.on_event(event),
            }
        }
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

    /// The span of one maintenance tick: the root of the requests the tick sends.
    fn tick_span(&self, timer: Timer) -> Span {
        let span = match timer {
            // The round is only read when the span is enabled (tracing on).
            Timer::Stabilize => info_span!(
                "chord.stabilize",
                chord.round = lock(&self.node).stabilize_rounds() + 1
            ),
            Timer::FixFingers => info_span!("chord.fix_fingers"),
            Timer::CheckPredecessor => info_span!("chord.check_predecessor"),
        };
        telemetry::mark_trace(&span);
        span
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
        let answer = self.answer(request, &trace);
        Box::pin(std::future::ready(answer))
    }
}

impl Endpoint {
    fn answer(&self, request: RequestEnvelope, trace: &TraceCarrier) -> ResponseEnvelope {
        // With tracing off the span is disabled and its fields are never evaluated.
        let method = request.body.method();
        let span = info_span!(
            "chord.rpc.server",
            otel.name = method,
            otel.kind = "server",
            rpc.system = "chordnet",
            rpc.method = method,
            peer.from = %request.from.id,
            chord.node = %self.0.me().id,
        );
        trace.adopt(&span);
        span.in_scope(|| self.0.apply(|n| n.handle_request(request)))
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
