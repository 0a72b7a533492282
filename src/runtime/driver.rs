//! The one owner of the [`Node`]: an actor task that takes [`Command`]s from a bounded mailbox,
//! one at a time, and executes what the node asks for.
//!
//! Nothing else touches the node, so its inputs are applied in one order and its outputs are
//! executed in the order the node produced them (the ring state saved last is the newest). After
//! every command the driver publishes a [`Status`](super::status::Status) snapshot for readers,
//! *before* it wakes anyone waiting on that command's effects, so a caller woken by "joined"
//! reads a joined node.
//!
//! The node's requests to other peers run inside this task too ([`InFlight`]): each is a
//! future the loop polls beside the mailbox, and its answer is applied as soon as it arrives.
//! (They were a spawned task each, whose answer came back through the mailbox: a spawn and a
//! channel send per peer RPC, two more task wake-ups on every lookup hop.)

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, Span};

use super::commands::{Command, JoinError, Ticket};
use super::remember::Remember;
use super::{Service, rpc_client_span};
use crate::ring::{LookupError, LookupId, LookupResult, Node, Output, RequestId, ResponseEnvelope};
use crate::transport::TransportError;

type LookupReply = oneshot::Sender<Result<LookupResult, LookupError>>;

/// A request the node sent, still in flight: it ends with the answer (or the transport's
/// failure) and the span the node sent it from, in which the answer is applied.
type Call = Pin<
    Box<dyn Future<Output = (RequestId, Result<ResponseEnvelope, TransportError>, Span)> + Send>,
>;

/// The node's requests in flight, polled by the driver's loop.
type InFlight = FuturesUnordered<Call>;

pub(super) struct Driver {
    pub(super) node: Node,
    pub(super) svc: Arc<Service>,
    lookups: HashMap<LookupId, (Ticket, LookupReply)>,
    tickets: HashMap<Ticket, LookupId>,
    pub(super) joins: Vec<oneshot::Sender<Result<(), JoinError>>>,
    pub(super) leaves: Vec<oneshot::Sender<()>>,
    pub(super) remember: Remember,
    outputs: Vec<Output>,
    /// The node's requests to other peers, until they are answered or fail.
    in_flight: InFlight,
    /// Ring unifications under way, by contact, with when they started.
    pub(super) merges: std::collections::BTreeMap<crate::id::Id, std::time::Instant>,
}

/// Commands taken from the mailbox in one go (then applied one by one).
const BATCH: usize = 64;

impl Driver {
    pub fn new(node: Node, svc: Arc<Service>) -> Driver {
        Driver {
            node,
            lookups: HashMap::new(),
            tickets: HashMap::new(),
            joins: Vec::new(),
            leaves: Vec::new(),
            remember: Remember::start(svc.config.files.store_dir.clone()),
            outputs: Vec::new(),
            in_flight: InFlight::new(),
            merges: std::collections::BTreeMap::new(),
            svc,
        }
    }

    /// Runs until the peer stops or every sender is gone. Waiters still pending then see their
    /// reply channel closed (the peer is shutting down), and the last ring state the node asked
    /// to remember is written before the task ends.
    pub async fn run(
        mut self,
        mut mailbox: mpsc::Receiver<(Command, Span)>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            // Answers first: each finishes work already started (and their number is bounded
            // by the requests the commands made), so a busy mailbox cannot starve them.
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                Some((request, answer, context)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    context.in_scope(|| self.answered(request, answer));
                }
                n = mailbox.recv_many(&mut batch, BATCH) => if n == 0 { break },
            }
            for (command, span) in batch.drain(..) {
                span.in_scope(|| self.apply(command));
            }
        }
        // Requests still in flight are dropped: nobody needs their answers now.
        self.in_flight.clear();
        // The waiters go first (they learn at once), then the disk.
        let remember = {
            let Driver { remember, .. } = self;
            remember
        };
        remember.close().await;
    }

    /// Feeds the node the answer to (or failure of) a request it sent, then as [`Self::apply`].
    fn answered(&mut self, request: RequestId, answer: Result<ResponseEnvelope, TransportError>) {
        match answer {
            Ok(response) => self.node.handle_response(request, response),
            Err(TransportError::Incompatible(detail)) => {
                self.node.handle_incompatible(request, detail)
            }
            Err(_) => self.node.handle_failure(request),
        }
        self.publish_and_execute();
    }

    /// Applies one command, publishes the new state, then executes the node's outputs.
    fn apply(&mut self, command: Command) {
        match command {
            Command::Tick { timer } => {
                self.svc
                    .last_tick_ms
                    .store(self.svc.elapsed_ms(), Ordering::Relaxed);
                self.node.tick(timer);
            }
            Command::Request { request, reply } => {
                let _ = reply.send(self.node.handle_request(request));
            }
            Command::Lookup {
                ticket,
                target,
                reuse,
                reply,
            } => {
                let id = self.node.lookup_with(target, reuse);
                self.tickets.insert(ticket, id);
                self.lookups.insert(id, (ticket, reply));
            }
            Command::CancelLookup { ticket } => {
                if let Some(id) = self.tickets.remove(&ticket) {
                    self.lookups.remove(&id);
                    self.node.cancel_lookup(id);
                }
            }
            Command::Join { bootstrap, reply } => match self.node.join(bootstrap) {
                Ok(()) => self.joins.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(JoinError::Command(e)));
                }
            },
            Command::Create { ring_id, reply } => {
                let _ = reply.send(self.node.create(ring_id));
            }
            Command::Merge { contact, reply } => {
                let _ = reply.send(self.node.merge_with(contact));
            }
            Command::Absorb {
                contact,
                ring_id,
                reply,
            } => {
                let _ = reply.send(self.node.absorb_ring(contact, ring_id));
            }
            Command::HandOff { reply } => {
                let _ = reply.send(self.node.begin_hand_off());
            }
            Command::Leave { reply } => {
                if self.node.membership() == crate::ring::Membership::Member {
                    self.leaves.push(reply);
                    self.node.leave();
                } else {
                    let _ = reply.send(());
                }
            }
        }
        self.publish_and_execute();
    }

    /// Publishes the node's state, then executes its outputs.
    fn publish_and_execute(&mut self) {
        self.svc.status.update(&self.node);
        self.node.drain_outputs(&mut self.outputs);
        let mut outputs = std::mem::take(&mut self.outputs);
        for output in outputs.drain(..) {
            self.execute(output);
        }
        // Keep the buffer's capacity for the next command.
        self.outputs = outputs;
    }

    fn execute(&mut self, output: Output) {
        match output {
            Output::Send {
                request,
                to,
                message,
                cause,
            } => {
                let svc = Arc::clone(&self.svc);
                // The request's own span is a child of whatever the node was doing (a lookup, a
                // stabilization round, an API request); the answer goes back to the node in that
                // same context, so a lookup's next hop is a sibling of this one, not its child.
                let context = Span::current();
                let span = rpc_client_span(cause, &to, &message.body);
                // Not created in an unsampled trace: the request then carries the context's
                // (not sampled) trace, so the peer asked follows the decision.
                let span = if span.is_disabled() {
                    context.clone()
                } else {
                    span
                };
                self.in_flight.push(Box::pin(async move {
                    let answer = svc.call(&to, message).instrument(span.clone()).await;
                    if answer.is_err() {
                        span.record("otel.status_code", "ERROR");
                    }
                    drop(span);
                    (request, answer, context)
                }));
            }
            Output::LookupDone { lookup, outcome } => {
                if let Some((ticket, reply)) = self.lookups.remove(&lookup) {
                    self.tickets.remove(&ticket);
                    let _ = reply.send(outcome);
                }
            }
            Output::Event(event) => self.on_event(event),
            Output::Persist(remembered) => self.remember.save(crate::persist::RingState {
                ring_id: remembered
                    .ring_id
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                peers: remembered.peers.iter().map(|a| a.to_string()).collect(),
            }),
        }
    }
}
