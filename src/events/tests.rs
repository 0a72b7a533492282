//! The events' decisions, queue and JSON against their schemas (docs/events/*.schema.json).

use prometheus::IntCounter;
use serde_json::Value;

use super::decide::{self, Written};
use super::event::{Event, EventKind, subject};
use super::sink::Events;
use crate::id::Id;
use crate::ring::{Address, Peer, RingEvent, RingId};
use crate::wire::files::Version;

fn peer(name: &str) -> Peer {
    Peer::new(Id::hash(name.as_bytes()), Address::new(name))
}

fn version() -> Version {
    Version {
        millis: 1_765_000_000_000,
        logical: 2,
        origin: Id::hash(b"a"),
    }
}

/// One fact of every kind, as the ring and the file layer produce them.
fn one_of_each(me: &Peer) -> Vec<decide::Fact> {
    let (a, b) = (peer("10.0.0.2:7000"), peer("10.0.0.3:7000"));
    let ring = |e: RingEvent| decide::of_ring(me, &e).expect("an event");
    let written = |name| Written {
        name,
        key: Id::hash(name.as_bytes()),
        version: version(),
    };
    vec![
        ring(RingEvent::Joined {
            ring_id: RingId(7),
            successor: a.clone(),
        }),
        ring(RingEvent::Left),
        ring(RingEvent::PeerFailed { peer: b.clone() }),
        ring(RingEvent::SuccessorChanged {
            old: Some(a.clone()),
            new: b.clone(),
        }),
        ring(RingEvent::PredecessorChanged {
            old: None,
            new: Some(a.clone()),
        }),
        decide::range_handed_off(&a, 3, 300).expect("keys were handed"),
        decide::file_stored(written("report.pdf"), 1234, &a, 2),
        decide::file_deleted(written("report.pdf")),
        decide::repair_done(1, 0, 2).expect("the round changed something"),
    ]
}

#[test]
fn only_membership_and_neighbour_changes_of_the_ring_are_events() {
    let me = peer("10.0.0.1:7000");
    let a = peer("10.0.0.2:7000");
    let kind = |e: RingEvent| decide::of_ring(&me, &e).map(|f| f.kind);
    assert_eq!(
        kind(RingEvent::Created {
            ring_id: RingId(1),
            restarted: false
        }),
        Some(EventKind::Joined)
    );
    assert_eq!(kind(RingEvent::PeerLeft { peer: a.clone() }), None);
    assert_eq!(kind(RingEvent::Stabilized { round: 3 }), None);
    assert_eq!(
        kind(RingEvent::ForeignRing {
            peer: a,
            ring_id: RingId(2)
        }),
        None
    );
    assert_eq!(decide::range_handed_off(&me, 0, 0), None);
    assert_eq!(decide::repair_done(0, 0, 0), None);
    let founded = decide::of_ring(
        &me,
        &RingEvent::Created {
            ring_id: RingId(1),
            restarted: false,
        },
    )
    .expect("joined");
    assert_eq!(founded.detail.founded, Some(true));
}

#[test]
fn a_full_queue_drops_and_counts_and_never_waits() {
    let dropped = IntCounter::new("dropped", "test").expect("counter");
    let me = peer("10.0.0.1:7000");
    // Nobody reads the queue: a stalled publisher.
    let (events, mut queue, _pending) = Events::channel(&me, 0xabc, 2, dropped.clone());
    for _ in 0..5 {
        events.ring(&RingEvent::PeerFailed {
            peer: peer("10.0.0.9:7000"),
        });
    }
    assert_eq!(dropped.get(), 3);
    let first = queue.try_recv().expect("queued");
    let second = queue.try_recv().expect("queued");
    assert!(queue.try_recv().is_err());
    assert_eq!((first.seq, second.seq), (1, 2));
    assert_eq!(first.msg_id(), format!("{}-0000000000000abc-1", me.id));
    // Dropped events used up their numbers: a gap in seq tells a reader something was lost.
    events.ring(&RingEvent::Left);
    assert_eq!(queue.try_recv().expect("queued").seq, 6);
}

/// The JSON type a schema property states, checked against a value (`$ref`s to the node and
/// version definitions are objects with their required fields).
fn check(schema: &Value, name: &str, value: &Value, kind: &str) {
    let prop = &schema["properties"][name];
    assert!(
        prop.is_object(),
        "{kind}: field {name:?} is not in the schema"
    );
    if let Some(c) = prop.get("const") {
        assert_eq!(value, c, "{kind}: {name}");
    }
    let target = match prop.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let def = r.rsplit('/').next().unwrap_or_default();
            &schema["$defs"][def]
        }
        None => prop,
    };
    match target.get("type").and_then(Value::as_str) {
        Some("string") => assert!(value.is_string(), "{kind}: {name} is a string"),
        Some("integer") => assert!(value.is_u64(), "{kind}: {name} is an integer"),
        Some("boolean") => assert!(value.is_boolean(), "{kind}: {name} is a boolean"),
        Some("object") => {
            for req in target["required"].as_array().into_iter().flatten() {
                let req = req.as_str().unwrap_or_default();
                assert!(value.get(req).is_some(), "{kind}: {name}.{req} missing");
            }
        }
        None => {}
        Some(other) => panic!("{kind}: {name}: type {other} not checked here"),
    }
}

#[test]
fn every_kind_serializes_as_its_schema_states() {
    let me = peer("10.0.0.1:7000");
    let dropped = IntCounter::new("dropped", "test").expect("counter");
    let (events, mut queue, _pending) = Events::channel(&me, 1, 64, dropped);
    let facts = one_of_each(&me);
    let kinds: Vec<EventKind> = facts.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, EventKind::ALL.to_vec(), "one fact of each kind");
    for fact in facts {
        events.report(fact);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/events");
    for kind in EventKind::ALL {
        let event: Event = queue.try_recv().expect("queued");
        let json = serde_json::to_value(&event).expect("json");
        let path = dir.join(format!("{}.schema.json", kind.as_str()));
        let text = std::fs::read_to_string(&path).expect("a schema per kind");
        let schema: Value = serde_json::from_str(&text).expect("schema json");
        assert_eq!(json["kind"], kind.as_str());
        let subject = subject("r1", kind);
        assert_eq!(subject.rsplit('.').next(), Some(kind.as_str()));
        assert_eq!(subject, format!("chordnet.r1.events.{kind}"));
        for req in schema["required"].as_array().expect("required") {
            let req = req.as_str().expect("name");
            assert!(json.get(req).is_some(), "{kind}: required {req:?} missing");
        }
        for (name, value) in json.as_object().expect("an object") {
            check(&schema, name, value, kind.as_str());
        }
        assert!(
            humantime::parse_rfc3339(event.time.as_str()).is_ok(),
            "{kind}: time {:?} is RFC 3339",
            event.time
        );
        let back: Event = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, event);
        assert!(back.human().contains(kind.as_str()));
    }
}

#[test]
fn since_is_a_sequence_or_a_duration() {
    use super::reader::Since;
    use std::time::Duration;
    assert_eq!("42".parse::<Since>(), Ok(Since::Seq(42)));
    assert_eq!(
        "5m".parse::<Since>(),
        Ok(Since::Ago(Duration::from_secs(300)))
    );
    assert!("yesterday".parse::<Since>().is_err());
}
