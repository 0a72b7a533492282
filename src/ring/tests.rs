//! Unit tests of the node state machine with a tiny synchronous network: every request is
//! delivered at once, in order, and answered (or failed, for a dead node) before the next one.

use std::collections::VecDeque;

use super::*;
use crate::id::Id;

struct Net {
    nodes: Vec<Node>,
    dead: Vec<bool>,
    done: Vec<(usize, Result<LookupResult, LookupError>)>,
    events: Vec<(usize, RingEvent)>,
    /// Every request sent: by whom, to whom, why.
    sent: Vec<(usize, Address, Cause)>,
    /// Every persist asked for: by whom, what.
    persisted: Vec<(usize, Remembered)>,
}

impl Net {
    fn new(n: usize, r: usize) -> Net {
        Net::with_table(n, r, RingConfig::default().membership_table_max)
    }

    fn with_table(n: usize, r: usize, table: usize) -> Net {
        let config = RingConfig {
            successors: r,
            membership_table_max: table,
            ..RingConfig::default()
        };
        Net {
            nodes: (0..n)
                .map(|i| Node::new(Peer::from_address(format!("node{i}:7000")), config.clone()))
                .collect(),
            dead: vec![false; n],
            done: Vec::new(),
            events: Vec::new(),
            sent: Vec::new(),
            persisted: Vec::new(),
        }
    }

    fn index(&self, address: &Address) -> Option<usize> {
        self.nodes.iter().position(|n| &n.me().address == address)
    }

    /// Delivers messages until nobody has anything left to say.
    fn settle(&mut self) {
        let mut queue: VecDeque<(usize, Output)> = VecDeque::new();
        loop {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                let mut out = Vec::new();
                node.drain_outputs(&mut out);
                queue.extend(out.into_iter().map(|o| (i, o)));
            }
            let Some((from, output)) = queue.pop_front() else {
                return;
            };
            match output {
                Output::Send {
                    request,
                    to,
                    message,
                    cause,
                } => match self.index(&to) {
                    Some(t) if !self.dead[t] => {
                        self.sent.push((from, to.clone(), cause));
                        let response = self.nodes[t].handle_request(message);
                        self.nodes[from].handle_response(request, response);
                    }
                    _ => self.nodes[from].handle_failure(request),
                },
                Output::LookupDone { outcome, .. } => self.done.push((from, outcome)),
                Output::Event(e) => self.events.push((from, e)),
                Output::Persist(r) => self.persisted.push((from, r)),
            }
        }
    }

    fn round(&mut self) {
        for timer in [Timer::Stabilize, Timer::CheckPredecessor, Timer::FixFingers] {
            for i in 0..self.nodes.len() {
                if !self.dead[i] {
                    self.nodes[i].tick(timer);
                    self.settle();
                }
            }
        }
    }

    fn live_sorted(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.dead[i] && self.nodes[i].membership() == Membership::Member)
            .collect();
        v.sort_by_key(|&i| self.nodes[i].id());
        v
    }

    /// Every live member's successor and predecessor are the true ones.
    fn ring_is_correct(&self) -> bool {
        let order = self.live_sorted();
        let n = order.len();
        order.iter().enumerate().all(|(k, &i)| {
            let next = self.nodes[order[(k + 1) % n]].id();
            let prev = self.nodes[order[(k + n - 1) % n]].id();
            let node = &self.nodes[i];
            node.successor().map(|p| p.id) == Some(next)
                && node.predecessor().map(|p| p.id) == Some(prev)
        })
    }

    fn lookup(&mut self, from: usize, target: Id) -> Result<LookupResult, LookupError> {
        self.done.clear();
        self.nodes[from].lookup(target);
        self.settle();
        // A lookup that found no route is parked for a few stabilization ticks: let them pass.
        for _ in 0..(RETRY_AFTER_TICKS * u64::from(NO_ROUTE_RETRIES) + 1) {
            if !self.done.is_empty() {
                break;
            }
            self.round();
        }
        self.done.pop().map(|(_, r)| r).expect("lookup finished")
    }

    fn true_successor(&self, target: Id) -> Id {
        let order = self.live_sorted();
        order
            .iter()
            .map(|&i| self.nodes[i].id())
            .find(|id| *id >= target)
            .unwrap_or_else(|| self.nodes[order[0]].id())
    }
}

fn build(n: usize, r: usize) -> Net {
    settled(Net::new(n, r))
}

/// A ring routing by Chord alone (no membership table): every hop is a finger or successor.
fn build_chord(n: usize, r: usize) -> Net {
    settled(Net::with_table(n, r, 0))
}

fn settled(mut net: Net) -> Net {
    let n = net.nodes.len();
    net.nodes[0].create(RingId(42)).unwrap();
    for i in 1..n {
        let bootstrap = net.nodes[0].me().address.clone();
        net.nodes[i].join(bootstrap).unwrap();
        net.settle();
    }
    for _ in 0..(3 * n + 10) {
        net.round();
    }
    net
}

#[test]
fn requests_say_why_they_are_sent_and_lookup_hops_are_numbered_along_the_path() {
    let mut net = build_chord(32, 4);
    let mut seen_two_hops = false;
    for k in 0..40 {
        let target = Id::hash(format!("key-{k}"));
        net.sent.clear();
        let r = net.lookup(0, target).unwrap();
        let hops: Vec<(Address, u32)> = net
            .sent
            .iter()
            .filter_map(|(from, to, cause)| match cause {
                Cause::LookupHop {
                    hop,
                    target: t,
                    peer,
                    user: true,
                    ..
                } if *from == 0 => {
                    assert_eq!(*t, target);
                    assert_eq!(
                        peer.and_then(|id| net.nodes.iter().find(|n| n.id() == id))
                            .map(|n| n.me().address.clone())
                            .as_ref(),
                        Some(to)
                    );
                    Some((to.clone(), *hop))
                }
                _ => None,
            })
            .collect();
        let path: Vec<(Address, u32)> = r
            .path
            .iter()
            .zip(1..)
            .map(|(p, k)| (p.address.clone(), k))
            .collect();
        assert_eq!(hops, path, "every answered hop, in order, numbered from 1");
        seen_two_hops |= r.hops >= 2;
    }
    assert!(seen_two_hops);
    // A successor that already names node 0 as its predecessor is not notified again; one
    // that does not (it lost its predecessor, say) is.
    let succ = net.nodes[0].successors()[0].address.clone();
    let s = net.index(&succ).unwrap();
    assert_eq!(net.nodes[s].predecessor(), Some(net.nodes[0].me()));
    for forgotten in [false, true, false] {
        if forgotten {
            net.nodes[s].predecessor = None;
        }
        net.sent.clear();
        net.nodes[0].tick(Timer::Stabilize);
        net.settle();
        let causes: Vec<Cause> = net.sent.iter().map(|(_, _, c)| *c).collect();
        assert_eq!(causes.first(), Some(&Cause::Stabilize), "{causes:?}");
        assert_eq!(causes.contains(&Cause::Notify), forgotten, "{causes:?}");
        assert_eq!(net.nodes[s].predecessor(), Some(net.nodes[0].me()));
    }
}

#[test]
fn a_lone_node_owns_everything() {
    let mut net = build(1, 4);
    let node = &net.nodes[0];
    assert_eq!(node.membership(), Membership::Member);
    assert_eq!(node.successors(), &[node.me().clone()]);
    assert_eq!(node.predecessor(), Some(node.me()));
    assert!(node.readiness().is_empty(), "{:?}", node.readiness());
    assert_eq!(node.ring_size_estimate(), 1.0);
    let r = net.lookup(0, Id::hash("anything")).unwrap();
    assert_eq!((r.node.id, r.hops), (net.nodes[0].id(), 0));
}

#[test]
fn rings_smaller_than_r_close_on_themselves() {
    for n in [2, 3, 5] {
        let net = build(n, 8);
        assert!(net.ring_is_correct(), "{n} nodes");
        for node in &net.nodes {
            // The list runs once around the ring and stops at the node itself.
            assert_eq!(node.successors().len(), n, "{n} nodes");
            assert_eq!(node.successors().last().map(|p| p.id), Some(node.id()));
            assert!(node.readiness().is_empty(), "{:?}", node.readiness());
            assert_eq!(node.ring_size_estimate(), n as f64);
        }
    }
}

#[test]
fn lookups_return_the_true_successor() {
    let mut net = build(12, 4);
    assert!(net.ring_is_correct());
    for k in 0..200u32 {
        let target = Id::hash(k.to_be_bytes());
        let from = (k as usize) % 12;
        let r = net.lookup(from, target).unwrap();
        assert_eq!(r.node.id, net.true_successor(target), "key {k}");
        assert_eq!(r.path.len() as u32, r.hops);
        assert!(r.hops <= 4, "{} hops in a 12-node ring", r.hops);
    }
}

#[test]
fn lookups_route_around_a_dead_hop_and_the_ring_repairs() {
    let mut net = build(16, 4);
    let victim = net.live_sorted()[5];
    net.dead[victim] = true;
    // Before repair, lookups may time out on the victim but still reach an answer.
    let mut timeouts = 0;
    for k in 0..100u32 {
        let from = (k as usize) % 16;
        if from == victim {
            continue;
        }
        if let Ok(r) = net.lookup(from, Id::hash(k.to_be_bytes())) {
            timeouts += r.timeouts;
            assert!(r.path.iter().all(|p| p.id != net.nodes[victim].id()));
        }
    }
    assert!(timeouts > 0, "no lookup ever tried the dead hop");
    for _ in 0..5 {
        net.round();
    }
    assert!(net.ring_is_correct());
    let events = net.events.iter().filter(
        |(_, e)| matches!(e, RingEvent::PeerFailed { peer } if peer.id == net.nodes[victim].id()),
    );
    assert!(
        events.count() >= 2,
        "predecessor and successor both noticed"
    );
}

#[test]
fn graceful_leave_closes_the_ring_at_once() {
    let mut net = build(8, 4);
    let leaver = net.live_sorted()[3];
    net.nodes[leaver].leave();
    net.settle();
    assert_eq!(net.nodes[leaver].membership(), Membership::Left);
    assert!(net.nodes[leaver].successors().is_empty());
    // No stabilization round needed: the neighbours were told.
    assert!(net.ring_is_correct());
    assert!(
        net.events
            .iter()
            .any(|(_, e)| matches!(e, RingEvent::PeerLeft { .. }))
    );
    // A node that left can join again.
    let other = net.live_sorted()[0];
    let bootstrap = net.nodes[other].me().address.clone();
    net.nodes[leaver].join(bootstrap).unwrap();
    net.settle();
    for _ in 0..10 {
        net.round();
    }
    assert!(net.ring_is_correct());
    assert_eq!(net.live_sorted().len(), 8);
}

#[test]
fn a_dead_successor_is_reported_as_the_old_one_and_never_taken_back_from_the_fingers() {
    // r = 1: the successor list holds only the successor, so its death empties the list and the
    // node falls back on its fingers, which may still point at the dead peer.
    let mut net = build(4, 1);
    let a = 0;
    let succ = net.nodes[a].successor().unwrap().clone();
    let dead = net.index(&succ.address).unwrap();
    net.dead[dead] = true;
    net.events.clear();
    for _ in 0..10 {
        net.round();
    }
    let changes: Vec<&RingEvent> = net
        .events
        .iter()
        .filter(|(i, e)| *i == a && matches!(e, RingEvent::SuccessorChanged { .. }))
        .map(|(_, e)| e)
        .collect();
    assert!(
        matches!(changes.first(), Some(RingEvent::SuccessorChanged { old: Some(o), .. }) if o.id == succ.id),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .all(|e| !matches!(e, RingEvent::SuccessorChanged { new, .. } if new.id == succ.id)),
        "the dead successor came back: {changes:?}"
    );
    assert!(net.ring_is_correct());
}

#[test]
fn the_last_two_nodes_can_leave() {
    let mut net = build(2, 4);
    net.nodes[1].leave();
    net.settle();
    assert!(net.ring_is_correct());
    assert_eq!(net.nodes[0].successors(), &[net.nodes[0].me().clone()]);
    net.nodes[0].leave();
    net.settle();
    assert_eq!(net.nodes[0].membership(), Membership::Left);
}

#[test]
fn a_node_handing_off_takes_no_keys_until_it_has_left_and_only_members_hand_off() {
    let mut net = build(3, 4);
    assert!(net.nodes[1].accepts_keys());
    assert!(net.nodes[1].begin_hand_off());
    assert!(!net.nodes[1].accepts_keys());
    assert_eq!(net.nodes[1].readiness(), vec![NotReady::Leaving]);
    // Still a member: it answers lookups and keeps its routing state while handing off.
    assert!(net.nodes[1].is_member());
    assert!(net.lookup(1, net.nodes[0].id()).is_ok());
    net.nodes[1].leave();
    net.settle();
    assert_eq!(net.nodes[1].membership(), Membership::Left);
    assert!(!net.nodes[1].accepts_keys());
    // Rejoining starts afresh: a member again, taking keys.
    let bootstrap = net.nodes[0].me().address.clone();
    net.nodes[1].join(bootstrap).unwrap();
    net.settle();
    assert!(net.nodes[1].accepts_keys());
    // A node that is not a member cannot hand off.
    let mut idle = Node::new(Peer::from_address("idle:1"), RingConfig::default());
    assert!(!idle.begin_hand_off());
    assert!(!idle.accepts_keys());
}

#[test]
fn the_node_asks_to_persist_its_ring_when_it_founds_joins_and_every_few_rounds() {
    let mut net = Net::new(3, 4);
    net.nodes[0].create(RingId(42)).unwrap();
    net.settle();
    assert_eq!(net.persisted.len(), 1);
    assert_eq!(net.persisted[0].1.ring_id, Some(RingId(42)));
    assert!(
        net.persisted[0].1.peers.is_empty(),
        "alone: nobody to remember"
    );
    for i in 1..3 {
        let bootstrap = net.nodes[0].me().address.clone();
        net.nodes[i].join(bootstrap).unwrap();
        net.settle();
        let (who, r) = net.persisted.last().unwrap().clone();
        assert_eq!(who, i, "a joiner persists at once");
        assert_eq!(r.ring_id, Some(RingId(42)));
        assert!(r.peers.contains(&net.nodes[0].me().address), "{r:?}");
    }
    // Then every `remember_every` (20) stabilization rounds, with the current neighbours.
    net.persisted.clear();
    for _ in 0..40 {
        net.round();
    }
    for i in 0..3 {
        let mine: Vec<&Remembered> = net
            .persisted
            .iter()
            .filter(|(w, _)| *w == i)
            .map(|(_, r)| r)
            .collect();
        // Node 0 founded alone: it also persists when it first gets a successor (the first
        // round), so that a restart has someone to ask.
        let expected = if i == 0 { 3 } else { 2 };
        assert_eq!(mine.len(), expected, "node {i}: {mine:?}");
        let last = mine[expected - 1];
        let others: Vec<Address> = (0..3)
            .filter(|&j| j != i)
            .map(|j| net.nodes[j].me().address.clone())
            .collect();
        assert!(others.iter().all(|a| last.peers.contains(a)), "{last:?}");
    }
}

#[test]
fn a_non_member_says_which_ring_its_disk_remembers() {
    let mut a = Node::new(Peer::from_address("a:1"), RingConfig::default());
    let b = Peer::from_address("b:1");
    a.set_remembered(Some(RingId(5)));
    let answer = a.handle_request(RequestEnvelope::new(None, b, Request::Ping));
    assert_eq!(
        answer.body,
        Response::Rejected {
            reason: Rejection::NotMember {
                remembers: Some(RingId(5))
            }
        }
    );
    // A joiner hears it as the join failure.
    let mut c = Node::new(Peer::from_address("c:1"), RingConfig::default());
    c.join(Address::new("a:1")).unwrap();
    let mut out = Vec::new();
    c.drain_outputs(&mut out);
    let Some(Output::Send {
        request, message, ..
    }) = out.pop()
    else {
        panic!("the join asks the bootstrap");
    };
    let answer = a.handle_request(message);
    c.handle_response(request, answer);
    out.clear();
    c.drain_outputs(&mut out);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Event(RingEvent::JoinFailed {
                failure: JoinFailure::NotMember {
                    remembers: Some(RingId(5)),
                    ..
                }
            })
        )),
        "{out:?}"
    );
}

#[test]
fn requests_from_another_ring_or_to_a_non_member_are_rejected() {
    let mut a = Node::new(Peer::from_address("a:1"), RingConfig::default());
    let b = Peer::from_address("b:1");
    let ask = |ring_id| RequestEnvelope::new(ring_id, b.clone(), Request::Ping);
    assert_eq!(
        a.handle_request(ask(None)).body,
        Response::Rejected {
            reason: Rejection::NotMember { remembers: None }
        }
    );
    a.create(RingId(1)).unwrap();
    assert_eq!(
        a.handle_request(ask(Some(RingId(2)))).body,
        Response::Rejected {
            reason: Rejection::WrongRing { ring_id: RingId(1) }
        }
    );
    assert_eq!(a.handle_request(ask(Some(RingId(1)))).body, Response::Ack);
    assert_eq!(a.create(RingId(3)), Err(CommandError::AlreadyMember));
    assert_eq!(
        a.join(Address::new("x:1")),
        Err(CommandError::AlreadyMember)
    );
}

#[test]
fn join_fails_cleanly_when_the_bootstrap_is_dead_or_the_id_is_taken() {
    let mut net = Net::new(3, 4);
    net.dead[1] = true;
    let bootstrap = net.nodes[1].me().address.clone();
    net.nodes[0].join(bootstrap).unwrap();
    net.settle();
    assert_eq!(net.nodes[0].membership(), Membership::Idle);
    assert!(net.events.iter().any(|(i, e)| *i == 0
        && matches!(
            e,
            RingEvent::JoinFailed {
                failure: JoinFailure::Unreachable { .. }
            }
        )));

    // A live bootstrap that is not in a ring says so.
    net.dead[1] = false;
    let bootstrap = net.nodes[1].me().address.clone();
    net.nodes[0].join(bootstrap).unwrap();
    net.settle();
    assert!(net.events.iter().any(|(i, e)| *i == 0
        && matches!(
            e,
            RingEvent::JoinFailed {
                failure: JoinFailure::NotMember { .. }
            }
        )));

    // Same id, different address: refused.
    let mut net = build(3, 4);
    let taken = net.nodes[2].id();
    net.nodes.push(Node::new(
        Peer::new(taken, Address::new("impostor:1")),
        RingConfig::default(),
    ));
    net.dead.push(false);
    let bootstrap = net.nodes[0].me().address.clone();
    net.nodes[3].join(bootstrap).unwrap();
    net.settle();
    assert_eq!(net.nodes[3].membership(), Membership::Idle);
    let failure = net.events.iter().find_map(|(i, e)| match e {
        RingEvent::JoinFailed { failure } if *i == 3 => Some(failure.clone()),
        _ => None,
    });
    assert_eq!(
        failure,
        Some(JoinFailure::IdInUse {
            address: net.nodes[2].me().address.clone()
        })
    );
}

#[test]
fn readiness_explains_itself() {
    let mut net = Net::new(2, 4);
    assert_eq!(net.nodes[0].readiness(), vec![NotReady::NotMember]);
    net.nodes[0].create(RingId(5)).unwrap();
    assert_eq!(net.nodes[0].readiness(), vec![NotReady::NotStabilized]);
    let bootstrap = net.nodes[0].me().address.clone();
    net.nodes[1].join(bootstrap).unwrap();
    net.settle();
    let reasons = net.nodes[1].readiness();
    assert!(reasons.contains(&NotReady::NoPredecessor), "{reasons:?}");
    assert!(reasons.contains(&NotReady::NotStabilized), "{reasons:?}");
    for _ in 0..3 {
        net.round();
    }
    assert!(net.nodes[1].readiness().is_empty());
    net.nodes[1].leave();
    assert_eq!(net.nodes[1].readiness(), vec![NotReady::Leaving]);
}

#[test]
fn lookups_on_a_non_member_fail_at_once() {
    let mut node = Node::new(Peer::from_address("a:1"), RingConfig::default());
    let id = node.lookup(Id::ZERO);
    let mut out = Vec::new();
    node.drain_outputs(&mut out);
    assert_eq!(
        out,
        vec![Output::LookupDone {
            lookup: id,
            outcome: Err(LookupError::NotMember)
        }]
    );
}

/// Answers reused within a period.
mod reuse;
/// Who may say what, and how much: rules against a peer that lies.
mod rules;
