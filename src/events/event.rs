//! An event as it travels: its kind (the subject's last token), who reported it, when, and
//! what it is about. The JSON shape is a contract (docs/events.md, docs/events/*.schema.json).

use serde::{Deserialize, Serialize};

use crate::ring::Peer;
use crate::wire::files::Version;

/// What happened. The snake_case name is the last token of the event's subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The reporting node became a ring member (joined a ring, or founded or restarted one).
    Joined,
    /// The reporting node left its ring gracefully.
    Left,
    /// The reporting node found `peer` dead and removed it.
    PeerFailed,
    SuccessorChanged,
    /// The reporting node's key range (predecessor, node] changed.
    PredecessorChanged,
    /// The reporting node gave keys to the peer responsible for them (a leave, or after a join).
    RangeHandedOff,
    /// An upload through the reporting node was acknowledged by the write quorum.
    FileStored,
    /// A delete through the reporting node was acknowledged by the write quorum.
    FileDeleted,
    /// A repair round of the reporting node changed something.
    RepairDone,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::Joined,
        EventKind::Left,
        EventKind::PeerFailed,
        EventKind::SuccessorChanged,
        EventKind::PredecessorChanged,
        EventKind::RangeHandedOff,
        EventKind::FileStored,
        EventKind::FileDeleted,
        EventKind::RepairDone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Joined => "joined",
            EventKind::Left => "left",
            EventKind::PeerFailed => "peer_failed",
            EventKind::SuccessorChanged => "successor_changed",
            EventKind::PredecessorChanged => "predecessor_changed",
            EventKind::RangeHandedOff => "range_handed_off",
            EventKind::FileStored => "file_stored",
            EventKind::FileDeleted => "file_deleted",
            EventKind::RepairDone => "repair_done",
        }
    }

    pub fn parse(token: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == token)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A peer as events name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    pub id: String,
    pub address: String,
}

impl From<&Peer> for NodeRef {
    fn from(p: &Peer) -> NodeRef {
        NodeRef {
            id: p.id.to_string(),
            address: p.address.to_string(),
        }
    }
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = self.id.get(..8).unwrap_or(&self.id);
        write!(f, "{short}@{}", self.address)
    }
}

/// A key range `(from, to]` on the ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub from: String,
    pub to: String,
}

/// What an event is about, besides its kind: each kind sets the fields its schema requires
/// (docs/events/<kind>.schema.json); absent fields are left out of the JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    /// The ring (joined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_id: Option<String>,
    /// joined: the node founded the ring (or restarted the one its disk remembered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub founded: Option<bool>,
    /// The other peer: the failed one, the successor joined through, the one handed keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<NodeRef>,
    /// successor_changed / predecessor_changed: before (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<NodeRef>,
    /// successor_changed / predecessor_changed: after (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<NodeRef>,
    /// predecessor_changed: the node's key range now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
    /// File events: the file's name in the ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// File events: the name's key (SHA-1 of the name, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// File events: the version written (the delete's tombstone for file_deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// file_stored: the file's size; range_handed_off: the content handed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// range_handed_off: keys handed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// file_stored: copies besides the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    /// repair_done: copies sent to the node's successors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_pushed: Option<u64>,
    /// repair_done: keys given to the peer now responsible for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_handed: Option<u64>,
    /// repair_done: copies the node no longer holds, dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies_dropped: Option<u64>,
}

/// One event: the payload of one message on `chordnet.<ring>.events.<kind>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// The node that reports it.
    pub node: NodeRef,
    /// When the node reported it (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The node's event counter since it started (with `incarnation`, the `Nats-Msg-Id`).
    pub seq: u64,
    /// A random value of this start of the node (hex).
    pub incarnation: String,
    #[serde(flatten)]
    pub detail: Detail,
}

impl Event {
    /// The `Nats-Msg-Id`: one per node start and event, the same however often it is sent.
    pub fn msg_id(&self) -> String {
        format!("{}-{}-{}", self.node.id, self.incarnation, self.seq)
    }

    /// The subject it is published on in ring `ring_name`.
    pub fn subject(&self, ring_name: &str) -> String {
        subject(ring_name, self.kind)
    }

    /// One line for people: time, kind, node, then what it is about.
    pub fn human(&self) -> String {
        let d = &self.detail;
        let mut line = format!("{} {:<19} {}", self.time, self.kind.as_str(), self.node);
        let mut add = |k: &str, v: String| line.push_str(&format!(" {k}={v}"));
        if let Some(n) = &d.name {
            add("name", format!("{n:?}"));
        }
        if let Some(p) = &d.peer {
            add("peer", p.to_string());
        }
        let show = |p: &Option<NodeRef>| p.as_ref().map_or("none".into(), NodeRef::to_string);
        if matches!(
            self.kind,
            EventKind::SuccessorChanged | EventKind::PredecessorChanged
        ) {
            add("old", show(&d.old));
            add("new", show(&d.new));
        }
        if let Some(r) = &d.ring_id {
            add("ring", r.clone());
        }
        for (k, v) in [
            ("bytes", d.bytes),
            ("keys", d.keys),
            ("replicas", d.replicas),
            ("replicas_pushed", d.replicas_pushed),
            ("keys_handed", d.keys_handed),
            ("copies_dropped", d.copies_dropped),
        ] {
            if let Some(v) = v {
                add(k, v.to_string());
            }
        }
        line
    }
}

/// `chordnet.<ring_name>.events.<kind>`.
pub fn subject(ring_name: &str, kind: EventKind) -> String {
    format!("{}.events.{}", prefix(ring_name), kind.as_str())
}

/// `chordnet.<ring_name>` (the events are under `.events.`).
fn prefix(ring_name: &str) -> String {
    format!("{}.{ring_name}", crate::config::subject::ROOT)
}

/// Every event subject of ring `ring_name` (`chordnet.<ring_name>.events.>`).
pub fn all_subjects(ring_name: &str) -> String {
    format!("{}.events.>", prefix(ring_name))
}
