//! What the rest of the peer may read of the node: a snapshot the driver publishes after every
//! batch of commands that changed the routing state. Readers (the API, probes, metrics, the
//! file layer) never wait for the driver and never see a half-applied batch.

use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::id::Id;
use crate::ring::{Membership, Node, NotReady, Peer, RingId};

/// The node's routing state at one moment.
#[derive(Clone, Debug)]
pub struct Status {
    pub me: Peer,
    pub membership: Membership,
    pub ring_id: Option<RingId>,
    /// The id the ring had before an operator merged it into `ring_id`'s ring.
    pub ring_alias: Option<RingId>,
    pub predecessor: Option<Peer>,
    pub successors: Vec<Peer>,
    pub fingers: Arc<[Option<Peer>]>,
    /// [`Node::fingers_changed`] when `fingers` was taken.
    pub fingers_changed: u64,
    pub stabilize_rounds: u64,
    /// Empty when ready (DESIGN.md §6).
    pub readiness: Vec<NotReady>,
    pub ring_size_estimate: f64,
    /// Whether the node takes keys and copies (a member that is not handing off to leave).
    pub accepts_keys: bool,
}

impl Status {
    pub fn of(n: &Node) -> Status {
        Status {
            me: n.me().clone(),
            membership: n.membership(),
            ring_id: n.ring_id(),
            ring_alias: n.ring_alias(),
            predecessor: n.predecessor().cloned(),
            successors: n.successors().to_vec(),
            fingers: n.fingers().into(),
            fingers_changed: n.fingers_changed(),
            stabilize_rounds: n.stabilize_rounds(),
            readiness: n.readiness(),
            ring_size_estimate: n.ring_size_estimate(),
            accepts_keys: n.accepts_keys(),
        }
    }

    /// Whether this snapshot still shows `n` (cheap: ids and counters only, no allocation).
    fn shows(&self, n: &Node) -> bool {
        let same = |a: Option<&Peer>, b: Option<&Peer>| a.map(|p| p.id) == b.map(|p| p.id);
        self.membership == n.membership()
            && self.ring_id == n.ring_id()
            && self.stabilize_rounds == n.stabilize_rounds()
            && self.accepts_keys == n.accepts_keys()
            && same(self.predecessor.as_ref(), n.predecessor())
            && self.successors.len() == n.successors().len()
            && self
                .successors
                .iter()
                .zip(n.successors())
                .all(|(a, b)| a.id == b.id)
            && self.fingers_changed == n.fingers_changed()
    }

    /// Whether `key` is in this node's range (predecessor, self].
    pub fn owns(&self, key: Id) -> bool {
        self.predecessor
            .as_ref()
            .is_some_and(|p| key.in_half_open(p.id, self.me.id))
    }

    pub fn is_member(&self) -> bool {
        matches!(self.membership, Membership::Member | Membership::Leaving)
    }

    pub fn successor(&self) -> Option<&Peer> {
        self.successors.first()
    }

    /// The state name of `GET /v1/node`.
    pub fn state_name(&self) -> &'static str {
        match self.membership {
            Membership::Idle | Membership::Joining => "joining",
            Membership::Member if self.readiness.is_empty() => "ready",
            Membership::Member if self.readiness.contains(&NotReady::Leaving) => "leaving",
            Membership::Member => "stabilizing",
            Membership::Leaving => "leaving",
            Membership::Left => "left",
        }
    }
}

/// The published snapshot: written by the driver only, read by anyone; readiness is also a
/// watch channel, for those that wait for it to change (gRPC's health service).
pub(super) struct Published {
    status: RwLock<Arc<Status>>,
    ready: watch::Sender<bool>,
}

impl Published {
    pub fn new(n: &Node) -> Published {
        let status = Status::of(n);
        let (ready, _) = watch::channel(status.readiness.is_empty());
        Published {
            status: RwLock::new(Arc::new(status)),
            ready,
        }
    }

    pub fn get(&self) -> Arc<Status> {
        Arc::clone(&self.status.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether the node is ready, as it changes.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Publishes `n`'s state if it changed since the last time.
    pub fn update(&self, n: &Node) {
        if self.get().shows(n) {
            return;
        }
        let status = Arc::new(Status::of(n));
        let ready = status.readiness.is_empty();
        *self.status.write().unwrap_or_else(|e| e.into_inner()) = status;
        self.ready
            .send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }
}
