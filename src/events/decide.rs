//! Which of a node's changes become events, and what they say: pure functions of the node's
//! existing outputs ([`RingEvent`]s from the sans-io ring) and the file layer's results, so the
//! I/O code only hands over what it already has and the rule lives in one place.

use super::event::{Detail, EventKind, NodeRef, Range};
use crate::id::Id;
use crate::ring::{Peer, RingEvent};
use crate::wire::files::Version;

/// A change worth an event, before it gets its reporter, time and sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    pub kind: EventKind,
    pub detail: Detail,
}

fn fact(kind: EventKind, detail: Detail) -> Option<Fact> {
    Some(Fact { kind, detail })
}

fn node(p: &Option<Peer>) -> Option<NodeRef> {
    p.as_ref().map(NodeRef::from)
}

/// The event a ring event of node `me` makes, if any. A neighbour's graceful leave is the
/// leaver's own `left` (every neighbour reporting it would repeat it); stabilization rounds
/// and ring unification steps are metrics, not events.
pub fn of_ring(me: &Peer, event: &RingEvent) -> Option<Fact> {
    match event {
        RingEvent::Created { ring_id, restarted } => fact(
            EventKind::Joined,
            Detail {
                ring_id: Some(ring_id.to_string()),
                founded: Some(!restarted),
                ..Detail::default()
            },
        ),
        RingEvent::Joined { ring_id, successor } => fact(
            EventKind::Joined,
            Detail {
                ring_id: Some(ring_id.to_string()),
                founded: Some(false),
                peer: Some(successor.into()),
                ..Detail::default()
            },
        ),
        RingEvent::Left => fact(EventKind::Left, Detail::default()),
        RingEvent::PeerFailed { peer } => fact(
            EventKind::PeerFailed,
            Detail {
                peer: Some(peer.into()),
                ..Detail::default()
            },
        ),
        RingEvent::SuccessorChanged { old, new } => fact(
            EventKind::SuccessorChanged,
            Detail {
                old: node(old),
                new: Some(new.into()),
                ..Detail::default()
            },
        ),
        RingEvent::PredecessorChanged { old, new } => fact(
            EventKind::PredecessorChanged,
            Detail {
                old: node(old),
                new: node(new),
                range: new.as_ref().map(|p| Range {
                    from: p.id.to_string(),
                    to: me.id.to_string(),
                }),
                ..Detail::default()
            },
        ),
        RingEvent::JoinFailed { .. }
        | RingEvent::PeerLeft { .. }
        | RingEvent::Stabilized { .. }
        | RingEvent::MergeStarted { .. }
        | RingEvent::MergeDone { .. }
        | RingEvent::ForeignRing { .. }
        | RingEvent::RingRenamed { .. }
        | RingEvent::RingsMerged { .. } => None,
    }
}

/// What an acknowledged write was: a file's name, key and version.
pub struct Written<'a> {
    pub name: &'a str,
    pub key: Id,
    pub version: Version,
}

/// An acknowledged upload of `bytes` bytes: `holder` stored the first copy, `replicas` more.
pub fn file_stored(w: Written<'_>, bytes: u64, holder: &Peer, replicas: usize) -> Fact {
    Fact {
        kind: EventKind::FileStored,
        detail: Detail {
            name: Some(w.name.to_owned()),
            key: Some(w.key.to_string()),
            version: Some(w.version),
            bytes: Some(bytes),
            replicas: Some(replicas as u64),
            peer: Some(holder.into()),
            ..Detail::default()
        },
    }
}

/// An acknowledged delete (the version: the tombstone's).
pub fn file_deleted(w: Written<'_>) -> Fact {
    Fact {
        kind: EventKind::FileDeleted,
        detail: Detail {
            name: Some(w.name.to_owned()),
            key: Some(w.key.to_string()),
            version: Some(w.version),
            ..Detail::default()
        },
    }
}

/// Keys handed to `to`; none handed is no event.
pub fn range_handed_off(to: &Peer, keys: u64, bytes: u64) -> Option<Fact> {
    (keys > 0).then(|| Fact {
        kind: EventKind::RangeHandedOff,
        detail: Detail {
            peer: Some(to.into()),
            keys: Some(keys),
            bytes: Some(bytes),
            ..Detail::default()
        },
    })
}

/// A repair round; one that changed nothing is no event.
pub fn repair_done(replicas_pushed: u64, keys_handed: u64, copies_dropped: u64) -> Option<Fact> {
    (replicas_pushed + keys_handed + copies_dropped > 0).then(|| Fact {
        kind: EventKind::RepairDone,
        detail: Detail {
            replicas_pushed: Some(replicas_pushed),
            keys_handed: Some(keys_handed),
            copies_dropped: Some(copies_dropped),
            ..Detail::default()
        },
    })
}
