//! The ring's messages: requests, responses and the envelopes that carry them.

use serde::{Deserialize, Serialize};

use super::{PROTOCOL_MIN, PROTOCOL_VERSION, Peer, RingId, legacy_protocol};
use crate::id::Id;

/// A request from one peer to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// One step of an iterative lookup: "is `target` in (you, your successor]? if not, who is
    /// closer?"
    FindSuccessor { target: Id },
    /// Stabilize: "who is your predecessor, what is your successor list, and do you know anyone
    /// between me and you?"
    GetNeighbors,
    /// Rectify: "I believe I am your predecessor."
    Notify,
    /// Liveness check.
    Ping,
    /// Graceful leave: the sender is leaving; here are its neighbours so the ring closes over it.
    Leaving {
        predecessor: Option<Peer>,
        successors: Vec<Peer>,
    },
    /// Ring unification (DESIGN.md §11): `contact` is a live peer of a ring that is not the
    /// receiver's view (the two rings have the same ring id: a partition healed). The receiver
    /// looks its own place up through `contact` and passes the hint on towards its successor
    /// (`toward_successor`) or predecessor while `ttl` lasts, so several threads zip at once.
    MergeHint {
        contact: Peer,
        ttl: u8,
        toward_successor: bool,
    },
}

/// A request with who sent it and which ring it belongs to (`None` while joining).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// The sender's peer-protocol version.
    #[serde(default = "legacy_protocol")]
    pub protocol: u16,
    pub ring_id: Option<RingId>,
    pub from: Peer,
    pub body: Request,
    /// The ring id the sender's ring had before an operator merged it into `ring_id`'s ring
    /// (`POST /v1/ring/merge`): a receiver still on that id adopts `ring_id` (the rename
    /// spreads with ordinary traffic). Absent unless the sender's ring was renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<RingId>,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The target lies in (responder, successor]: `successors[0]` is responsible for it; the rest
    /// of the responder's list follows it.
    Found {
        successors: Vec<Peer>,
        /// When `successors[0]` is the responder itself: its predecessor. Every key after it,
        /// up to the responder, is the responder's own as of this answer (an asker reuses that
        /// for the rest of its stabilization period; see `ring::recent`). Absent from older
        /// peers and when the answer names the responder's successor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owns_after: Option<Id>,
    },
    /// The target is further on; these known peers precede it, closest to it first.
    Closer {
        candidates: Vec<Peer>,
    },
    /// The responder's predecessor and successor list, and the closest peer it knows strictly
    /// between the asker and itself (a shortcut that speeds up convergence after mass joins).
    Neighbors {
        predecessor: Option<Peer>,
        successors: Vec<Peer>,
        hint: Option<Peer>,
    },
    Ack,
    Rejected {
        reason: Rejection,
    },
}

/// Why a peer refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    /// Not a ring member; `remembers` is the ring its store directory remembers, if any (a
    /// peer speaking protocol 1 sends none; the founder rule uses it, see ring::bootstrap).
    #[error("the peer is not a ring member")]
    NotMember {
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "super::ring_id_text::option"
        )]
        remembers: Option<RingId>,
    },
    #[error("the peer belongs to another ring ({ring_id})")]
    WrongRing {
        #[serde(with = "super::ring_id_text")]
        ring_id: RingId,
    },
    #[error("the peer speaks peer-protocol versions {min}..={max}, this message is version {got}")]
    Protocol { min: u16, max: u16, got: u16 },
    /// The message carried no valid ring-secret authenticator (`security.ring_secret_file`
    /// differs, or is set on one side only). Says nothing more, to anyone.
    #[error(
        "the peer refused a message not authenticated for its ring (check security.ring_secret_file)"
    )]
    Unauthenticated,
}

/// A response with who sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    /// The responder's peer-protocol version.
    #[serde(default = "legacy_protocol")]
    pub protocol: u16,
    pub ring_id: Option<RingId>,
    pub from: Peer,
    pub body: Response,
    /// A random value the responder chose when it started: a peer that answers with another
    /// incarnation than before restarted (it is not a partition healing). Absent from peers
    /// that predate the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    /// The responder's ring-secret authenticator (`transport::auth`), bound to the request it
    /// answers; absent without a ring secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// As in [`RequestEnvelope::renamed_from`]: the responder's ring had this id before a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<RingId>,
    /// A window of the responder's membership table (the cheap exchange that fills every
    /// peer's table, `ring.membership_table_max`); only on answers to `GetNeighbors`. Absent
    /// from peers that predate it, and ignored by them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
}

/// A peer of a membership table, with how many stabilization rounds ago its sender (or the
/// peer it learned it from) last heard from it directly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub peer: Peer,
    pub age: u32,
}

impl Request {
    /// The method's name, for metrics and spans.
    pub fn method(&self) -> &'static str {
        match self {
            Request::FindSuccessor { .. } => "find_successor",
            Request::GetNeighbors => "get_neighbors",
            Request::Notify => "notify",
            Request::Ping => "ping",
            Request::Leaving { .. } => "leaving",
            Request::MergeHint { .. } => "merge_hint",
        }
    }
}

impl RequestEnvelope {
    /// A request in this build's protocol version.
    pub fn new(ring_id: Option<RingId>, from: Peer, body: Request) -> RequestEnvelope {
        RequestEnvelope {
            protocol: PROTOCOL_VERSION,
            ring_id,
            from,
            body,
            renamed_from: None,
        }
    }
}

impl ResponseEnvelope {
    /// A response in this build's protocol version.
    pub fn new(ring_id: Option<RingId>, from: Peer, body: Response) -> ResponseEnvelope {
        ResponseEnvelope {
            protocol: PROTOCOL_VERSION,
            ring_id,
            from,
            body,
            incarnation: None,
            auth: None,
            renamed_from: None,
            members: Vec::new(),
        }
    }

    /// The same response, saying which incarnation of the responder answers.
    pub fn with_incarnation(self, incarnation: u64) -> ResponseEnvelope {
        ResponseEnvelope {
            incarnation: Some(incarnation),
            ..self
        }
    }

    /// The answer to a request in a protocol version this build does not speak.
    pub fn protocol_mismatch(from: Peer, got: u16) -> ResponseEnvelope {
        ResponseEnvelope::new(
            None,
            from,
            Response::Rejected {
                reason: Rejection::Protocol {
                    min: PROTOCOL_MIN,
                    max: PROTOCOL_VERSION,
                    got,
                },
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_id_displays_and_parses_as_uuid() {
        let id = RingId(0x0123456789abcdef0123456789abcdef);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(id.to_string().parse::<RingId>(), Ok(id));
        assert!("xyz".parse::<RingId>().is_err());
        assert!(
            "0123456789abcdef0123456789abcdeg"
                .parse::<RingId>()
                .is_err()
        );
    }

    #[test]
    fn the_incarnation_is_optional_on_the_wire_and_the_merge_hint_round_trips() {
        let p = Peer::from_address("10.0.0.1:7000");
        let old = ResponseEnvelope::new(Some(RingId(7)), p.clone(), Response::Ack);
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("incarnation"), "{json}");
        assert_eq!(
            serde_json::from_str::<ResponseEnvelope>(&json).unwrap(),
            old
        );
        let new = old.with_incarnation(42);
        let json = serde_json::to_string(&new).unwrap();
        assert!(json.contains("\"incarnation\":42"), "{json}");
        assert_eq!(
            serde_json::from_str::<ResponseEnvelope>(&json)
                .unwrap()
                .incarnation,
            Some(42)
        );
        let hint = RequestEnvelope::new(
            Some(RingId(7)),
            p.clone(),
            Request::MergeHint {
                contact: p,
                ttl: 3,
                toward_successor: true,
            },
        );
        let json = serde_json::to_string(&hint).unwrap();
        assert!(json.contains("\"type\":\"merge_hint\""), "{json}");
        assert_eq!(
            serde_json::from_str::<RequestEnvelope>(&json).unwrap(),
            hint
        );
    }

    #[test]
    fn messages_round_trip_through_json() {
        let p = Peer::from_address("10.0.0.1:7000");
        let req = RequestEnvelope::new(
            Some(RingId(7)),
            p.clone(),
            Request::Leaving {
                predecessor: None,
                successors: vec![p.clone()],
            },
        );
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains("\"type\":\"leaving\""), "{json}");
        assert_eq!(serde_json::from_str::<RequestEnvelope>(&json).unwrap(), req);
        let resp = ResponseEnvelope::new(
            None,
            p,
            Response::Rejected {
                reason: Rejection::NotMember { remembers: None },
            },
        );
        let json = serde_json::to_string(&resp).unwrap();
        assert_eq!(
            serde_json::from_str::<ResponseEnvelope>(&json).unwrap(),
            resp
        );
    }

    #[test]
    fn not_member_carries_the_remembered_ring_and_mixes_with_peers_that_do_not_know_it() {
        let with = Rejection::NotMember {
            remembers: Some(RingId(9 << 100)),
        };
        let json = serde_json::to_string(&with).unwrap();
        assert_eq!(
            json,
            r#"{"reason":"not_member","remembers":"00000090-0000-0000-0000-000000000000"}"#
        );
        assert_eq!(serde_json::from_str::<Rejection>(&json).unwrap(), with);
        // What an older peer sends (no field) reads as "remembers nothing".
        assert_eq!(
            serde_json::from_str::<Rejection>(r#"{"reason":"not_member"}"#).unwrap(),
            Rejection::NotMember { remembers: None }
        );
        // And an older peer, whose variant had no field, still reads what we send.
        #[derive(serde::Deserialize, Debug, PartialEq)]
        #[serde(tag = "reason", rename_all = "snake_case")]
        enum Old {
            NotMember,
        }
        assert_eq!(serde_json::from_str::<Old>(&json).unwrap(), Old::NotMember);
    }

    #[test]
    fn a_wrong_ring_rejection_names_the_ring_readably() {
        // Before ring ids were written as text here, this answer could not be read back
        // ("u128 is not supported"): the asker saw a malformed answer instead of "wrong ring".
        let wrong = Rejection::WrongRing {
            ring_id: RingId(u128::MAX - 5),
        };
        let json = serde_json::to_string(&wrong).unwrap();
        assert_eq!(serde_json::from_str::<Rejection>(&json).unwrap(), wrong);
        let resp = ResponseEnvelope::new(
            Some(RingId(3)),
            Peer::from_address("10.0.0.1:7000"),
            Response::Rejected { reason: wrong },
        );
        let json = serde_json::to_string(&resp).unwrap();
        assert_eq!(
            serde_json::from_str::<ResponseEnvelope>(&json).unwrap(),
            resp
        );
        // A small id written as a number (what an older peer could send) still reads.
        assert_eq!(
            serde_json::from_str::<Rejection>(r#"{"reason":"wrong_ring","ring_id":7}"#).unwrap(),
            Rejection::WrongRing { ring_id: RingId(7) }
        );
    }

    #[test]
    fn envelopes_without_a_protocol_field_are_version_1() {
        let json = r#"{"ring_id":null,"from":{"id":"0000000000000000000000000000000000000001","address":"a:1"},"body":{"type":"ping"}}"#;
        let req: RequestEnvelope = serde_json::from_str(json).unwrap();
        assert_eq!(req.protocol, 1);
        assert!(crate::wire::protocol_supported(req.protocol));
        assert!(!crate::wire::protocol_supported(PROTOCOL_VERSION + 1));
        let answer = ResponseEnvelope::protocol_mismatch(req.from, 9);
        let Response::Rejected { reason } = answer.body else {
            panic!("not a rejection")
        };
        assert!(
            reason.to_string().contains("this message is version 9"),
            "{reason}"
        );
    }
}
