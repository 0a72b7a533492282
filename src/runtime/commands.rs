//! What the rest of the peer asks of the node's driver: the messages of its bounded mailbox.
//!
//! Each command carries the tracing span it was sent from, so whatever the node does in reply
//! (requests it sends, a lookup's next hop) lands in the caller's trace.

use tokio::sync::{mpsc, oneshot};
use tracing::Span;

use crate::id::Id;
use crate::ring::{
    Address, CommandError, JoinFailure, LookupError, LookupResult, Peer, RequestEnvelope,
    ResponseEnvelope, RingId, Timer,
};

/// How many commands may wait for the driver before senders wait too (back-pressure on peers'
/// requests, answers and API calls alike).
pub(super) const MAILBOX: usize = 1024;

/// Identifies one waiting caller of a lookup, so that it can cancel it.
pub(super) type Ticket = u64;

pub(super) enum Command {
    /// A maintenance timer fired.
    Tick { timer: Timer },
    /// A peer's request, to be answered.
    Request {
        request: RequestEnvelope,
        reply: oneshot::Sender<ResponseEnvelope>,
    },
    Lookup {
        ticket: Ticket,
        target: Id,
        /// May be answered from what the responsible peer said this period.
        reuse: bool,
        reply: oneshot::Sender<Result<LookupResult, LookupError>>,
    },
    /// The caller of a lookup stopped waiting (time-out, client gone).
    CancelLookup { ticket: Ticket },
    Join {
        bootstrap: Address,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    Create {
        ring_id: RingId,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Answered once the node left (at once when it is not a member).
    Leave { reply: oneshot::Sender<()> },
    /// Ring unification through `contact`, a peer of this ring id outside this node's ring
    /// (answers whether it started).
    Merge {
        contact: Peer,
        reply: oneshot::Sender<bool>,
    },
    /// Asks the ring of `contact` (ring `ring_id`) to take this ring's id over and merge in.
    Absorb {
        contact: Address,
        ring_id: RingId,
        reply: oneshot::Sender<bool>,
    },
    /// Keys are handed off before a leave: take no more (answers whether it is handing off).
    HandOff { reply: oneshot::Sender<bool> },
}

/// Why a join did not happen.
#[derive(Debug)]
pub(super) enum JoinError {
    Command(CommandError),
    Failed(JoinFailure),
}

/// The sending side of the driver's mailbox.
#[derive(Clone)]
pub(super) struct Mailbox(mpsc::Sender<(Command, Span)>);

/// The driver is gone (the peer is shutting down).
#[derive(Debug)]
pub(super) struct Closed;

impl Mailbox {
    pub fn new() -> (Mailbox, mpsc::Receiver<(Command, Span)>) {
        let (tx, rx) = mpsc::channel(MAILBOX);
        (Mailbox(tx), rx)
    }

    /// Sends `command` in the current span's context, waiting while the mailbox is full.
    pub async fn send(&self, command: Command) -> Result<(), Closed> {
        self.0
            .send((command, Span::current()))
            .await
            .map_err(|_| Closed)
    }

    /// Sends without waiting; a full mailbox drops it (for best-effort notices only).
    pub fn try_send(&self, command: Command) {
        let _ = self.0.try_send((command, Span::current()));
    }

    /// Sends `make(reply)` and waits for the driver's reply.
    pub async fn ask<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Command,
    ) -> Result<R, Closed> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| Closed)
    }
}
