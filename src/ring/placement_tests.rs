//! Unit tests of placement and holdings on small hand-made rings.

use super::*;
use crate::ring::Address;

/// A peer with id `n << 152` (ids in ring order by `n`).
fn p(n: u8) -> Peer {
    let mut bytes = [0u8; 20];
    bytes[0] = n;
    Peer::new(Id::from_bytes(bytes), Address::new(format!("p{n}:7000")))
}

fn key(n: u8, low: u8) -> Id {
    let mut bytes = [0u8; 20];
    bytes[0] = n;
    bytes[19] = low;
    Id::from_bytes(bytes)
}

#[test]
fn placement_is_the_responsible_then_distinct_successors() {
    let succ = [p(2), p(3), p(4), p(5)];
    assert_eq!(placement(&p(1), &succ, 3), vec![p(1), p(2), p(3)]);
    assert_eq!(placement(&p(1), &succ, 1), vec![p(1)]);
    assert_eq!(placement(&p(1), &succ, 0), Vec::<Peer>::new());
    // A ring of two: the list ends with the responsible itself.
    assert_eq!(placement(&p(1), &[p(2), p(1)], 3), vec![p(1), p(2)]);
    // Alone.
    assert_eq!(placement(&p(1), &[p(1)], 3), vec![p(1)]);
    let lookup = LookupResult {
        target: key(1, 0),
        node: p(1),
        successors: succ.to_vec(),
        hops: 1,
        path: vec![],
        timeouts: 0,
        confirmed: false,
    };
    assert_eq!(placement_of(&lookup, 2), vec![p(1), p(2)]);
}

#[test]
fn holdings_cover_the_owned_range_and_the_predecessors_ranges() {
    // Ring 10, 20, 30, 40, 50; me = 30; predecessors 20, 10, 50.
    let me = p(30);
    let h = holdings(&me, &[p(20), p(10), p(50)], 3);
    assert_eq!(
        h.owned,
        Some(KeyRange {
            start: p(20).id,
            end: me.id
        })
    );
    assert!(!h.everything);
    assert_eq!(h.replicas.len(), 2);
    assert_eq!(h.role(key(25, 0)), Some(Role::Owner));
    assert_eq!(h.role(key(30, 0)), Some(Role::Owner));
    assert_eq!(h.role(key(20, 0)), Some(Role::Replica(1)));
    assert_eq!(h.role(key(15, 0)), Some(Role::Replica(1)));
    assert_eq!(h.role(key(10, 0)), Some(Role::Replica(2)));
    assert_eq!(h.role(key(5, 0)), Some(Role::Replica(2)));
    assert_eq!(h.role(key(55, 0)), Some(Role::Replica(2)));
    assert_eq!(h.role(key(50, 0)), None);
    assert_eq!(h.role(key(45, 0)), None);
    // Agrees with placement: key 15 is placed on 20, 30, 40.
    let placed = placement(&p(20), &[p(30), p(40), p(50)], 3);
    assert!(placed.contains(&me));
}

#[test]
fn unknown_predecessors_limit_what_is_known() {
    let me = p(30);
    assert_eq!(
        holdings(&me, &[], 3),
        Holdings {
            owned: None,
            replicas: vec![],
            everything: false
        }
    );
    let h = holdings(&me, &[p(20)], 3);
    assert_eq!(h.replicas.len(), 1);
    assert_eq!(h.replicas[0].start, None);
    assert_eq!(h.role(key(20, 0)), Some(Role::Replica(1)));
    assert_eq!(h.role(key(15, 0)), None);
}

#[test]
fn small_rings_hold_everything() {
    let me = p(30);
    let alone = holdings(&me, &[p(30)], 3);
    assert!(alone.everything);
    assert_eq!(alone.role(key(99, 1)), Some(Role::Owner));
    // Two members, three replicas: the other's range reaches back to me.
    let two = holdings(&me, &[p(10), p(30)], 3);
    assert!(two.everything);
    assert_eq!(two.role(key(20, 0)), Some(Role::Owner));
    assert_eq!(two.role(key(5, 0)), Some(Role::Replica(1)));
    assert_eq!(two.role(key(200, 0)), Some(Role::Replica(1)));
    // Three members, three replicas: everyone holds everything.
    let three = holdings(&me, &[p(20), p(10), p(30)], 3);
    assert!(three.everything);
    assert_eq!(three.role(key(5, 0)), Some(Role::Replica(2)));
    // Three members, two replicas: not everything.
    let three = holdings(&me, &[p(20), p(10), p(30)], 2);
    assert!(!three.everything);
    assert_eq!(three.role(key(5, 0)), None);
}
