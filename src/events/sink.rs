//! The peer's side of the events: a handle that stamps each fact (reporter, time, sequence)
//! and puts it on a bounded queue for the one publisher task. It never waits: when the queue
//! is full the event is dropped and counted (`chordnet_events_dropped_total`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use prometheus::IntCounter;
use tokio::sync::{Notify, mpsc};
use tracing::debug;

use super::decide::{self, Fact};
use super::event::{Event, NodeRef};
use crate::ring::{Peer, RingEvent};

/// Where a peer reports its events; a disabled handle ignores them. Clones share the queue.
#[derive(Clone, Default)]
pub struct Events {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    me: Peer,
    node: NodeRef,
    incarnation: String,
    seq: AtomicU64,
    tx: mpsc::Sender<Event>,
    dropped: IntCounter,
    pending: Arc<Pending>,
}

/// Events queued or being published, so that a leaving peer can wait for its last ones.
#[derive(Default)]
pub struct Pending {
    count: AtomicU64,
    idle: Notify,
}

impl Pending {
    /// The publisher is done with one event (published, or given up on).
    pub fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl Events {
    /// A handle that publishes nothing (`events.enabled = false`).
    pub fn disabled() -> Events {
        Events { inner: None }
    }

    /// A handle for node `me` with a queue of `capacity` events, and the queue's other end
    /// (the publisher reads it). `incarnation`: a random value of this start of the node.
    pub fn channel(
        me: &Peer,
        incarnation: u64,
        capacity: usize,
        dropped: IntCounter,
    ) -> (Events, mpsc::Receiver<Event>, Arc<Pending>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let pending = Arc::new(Pending::default());
        let inner = Inner {
            me: me.clone(),
            node: me.into(),
            incarnation: format!("{incarnation:016x}"),
            seq: AtomicU64::new(0),
            tx,
            dropped,
            pending: Arc::clone(&pending),
        };
        (
            Events {
                inner: Some(Arc::new(inner)),
            },
            rx,
            pending,
        )
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Reports what a ring event of this node makes an event of ([`decide::of_ring`]).
    pub fn ring(&self, event: &RingEvent) {
        if let Some(inner) = &self.inner
            && let Some(fact) = decide::of_ring(&inner.me, event)
        {
            self.report(fact);
        }
    }

    /// Queues `fact` as this node's next event; drops it (counted) if the queue is full.
    pub fn report(&self, fact: Fact) {
        let Some(inner) = &self.inner else {
            return;
        };
        let event = Event {
            kind: fact.kind,
            node: inner.node.clone(),
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            seq: inner.seq.fetch_add(1, Ordering::Relaxed) + 1,
            incarnation: inner.incarnation.clone(),
            detail: fact.detail,
        };
        inner.pending.count.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = inner.tx.try_send(event) {
            inner.pending.done();
            inner.dropped.inc();
            let kind = match &e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => {
                    ev.kind
                }
            };
            debug!(%kind, "event dropped: the publisher's queue is full");
        }
    }

    /// Waits (at most `limit`) until every queued event is published or given up on: a peer
    /// that leaves gets its `left` out before it exits.
    pub async fn flush(&self, limit: Duration) {
        let Some(inner) = &self.inner else {
            return;
        };
        let pending = &inner.pending;
        let _ = tokio::time::timeout(limit, async {
            loop {
                let idle = pending.idle.notified();
                if pending.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
    }
}
