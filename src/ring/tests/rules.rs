//! The ring's rules against a lying peer: lists cut before any peer on them is contacted,
//! `Leaving` only from a neighbour and never emptying the successor list, and no routing
//! change from a message without a ring id.

use super::*;

fn peer_at(id: Id, name: String) -> Peer {
    Peer::new(id, Address::new(name))
}

#[test]
fn a_flood_of_candidates_is_cut_before_any_is_contacted() {
    // Chord routing: the first peer asked is a finger, whose candidates the lookup follows.
    let mut net = build_chord(8, 2);
    let order = net.live_sorted();
    let a = order[0];
    let target = net.nodes[order[5]].id();
    let ring = net.nodes[a].ring_id();
    net.nodes[a].lookup(target);
    let mut contacted = std::collections::HashSet::new();
    let mut liar: Option<Peer> = None;
    for _ in 0..10_000 {
        let mut out = Vec::new();
        net.nodes[a].drain_outputs(&mut out);
        if out.is_empty() {
            break;
        }
        for o in out {
            let Output::Send { request, to, .. } = o else {
                continue;
            };
            if liar.is_none() {
                // The first peer asked lies: 50,000 peers "closer" to the target than itself.
                let from = net.nodes[net.index(&to).expect("a node")].me().clone();
                let candidates = (0..50_000u128)
                    .map(|k| {
                        peer_at(
                            from.id.wrapping_add(Id::from_parts(0, k + 1)),
                            format!("flood{k}:1"),
                        )
                    })
                    .collect();
                let answer = Response::Closer { candidates };
                let response = ResponseEnvelope::new(ring, from.clone(), answer);
                liar = Some(from);
                net.nodes[a].handle_response(request, response);
                continue;
            }
            if to.as_str().starts_with("flood") {
                contacted.insert(to);
            }
            net.nodes[a].handle_failure(request);
        }
    }
    assert!(liar.is_some());
    let bound = RingConfig::default().lookup_candidates + 2;
    assert!(
        (1..=bound).contains(&contacted.len()),
        "{} of the flood contacted (bound {bound})",
        contacted.len()
    );
}

#[test]
fn leaving_is_taken_from_a_neighbour_only_and_never_empties_the_list() {
    let mut net = build(5, 3);
    let order = net.live_sorted();
    let a = order[0];
    let before = net.nodes[a].successors().to_vec();
    let ring = net.nodes[a].ring_id();
    let leaving = |from: &Peer| {
        let body = Request::Leaving {
            predecessor: None,
            successors: vec![],
        };
        RequestEnvelope::new(ring, from.clone(), body)
    };
    // The second successor is not a neighbour: nothing changes.
    let second = before[1].clone();
    net.nodes[a].handle_request(leaving(&second));
    assert_eq!(net.nodes[a].successors(), &before[..]);
    // Nor for the successor's id at another address.
    let fake = Peer::new(before[0].id, Address::new("elsewhere:1"));
    net.nodes[a].handle_request(leaving(&fake));
    assert_eq!(net.nodes[a].successors(), &before[..]);
    // The successor itself, with an empty list: the rest of this node's list stays.
    net.nodes[a].handle_request(leaving(&before[0]));
    assert_eq!(net.nodes[a].successors(), &before[1..]);
}

#[test]
fn a_member_takes_no_routing_change_without_a_ring_id() {
    let mut net = build(4, 3);
    let order = net.live_sorted();
    let (a, d) = (order[1], order[0]);
    let pred = net.nodes[a].predecessor().cloned();
    let between = net.nodes[d].id().wrapping_add(Id::from_parts(0, 1));
    let intruder = peer_at(between, "intruder:1".into());
    for body in [
        Request::Notify,
        Request::Leaving {
            predecessor: None,
            successors: vec![],
        },
    ] {
        let r = net.nodes[a].handle_request(RequestEnvelope::new(None, intruder.clone(), body));
        assert!(matches!(r.body, Response::Rejected { .. }), "{r:?}");
    }
    assert_eq!(net.nodes[a].predecessor().cloned(), pred);
    // A lookup without a ring id (a joiner's) is still answered.
    let ask = RequestEnvelope::new(None, intruder, Request::FindSuccessor { target: between });
    assert!(!matches!(
        net.nodes[a].handle_request(ask).body,
        Response::Rejected { .. }
    ));
}
