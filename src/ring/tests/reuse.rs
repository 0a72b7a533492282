//! Answers reused within a stabilization period ([`Node::lookup_with`]): exact while the
//! ring stands still, the owner's whole range after one answer, never past the next tick,
//! dropped at the first failure.

use super::*;

/// Runs a reusing lookup from `from` to the end.
fn reusing(net: &mut Net, from: usize, target: Id) -> LookupResult {
    net.done.clear();
    net.nodes[from].lookup_with(target, true);
    net.settle();
    net.done
        .pop()
        .map(|(_, r)| r)
        .expect("lookup finished")
        .expect("found")
}

/// A key owned by `owner`'s node, `step` below its id.
fn below(net: &Net, owner: usize, step: u128) -> Id {
    net.nodes[owner].id().wrapping_sub(Id::from_parts(0, step))
}

#[test]
fn a_second_lookup_in_the_same_stretch_needs_no_message_until_the_next_tick() {
    let mut net = build(8, 3);
    let order = net.live_sorted();
    let (asker, owner) = (order[0], order[4]);
    let (far, near) = (below(&net, owner, 1000), below(&net, owner, 10));
    net.sent.clear();
    let first = reusing(&mut net, asker, far);
    assert_eq!(first.node.id, net.nodes[owner].id());
    assert_eq!((first.hops, first.confirmed), (1, true));
    assert_eq!(
        net.sent.len(),
        1,
        "one message to the owner the table proposes"
    );

    // Nearer the owner than the first target: the owner already said it is its own.
    net.sent.clear();
    let second = reusing(&mut net, asker, near);
    assert!(
        net.sent.is_empty(),
        "answered without a message: {:?}",
        net.sent
    );
    assert_eq!(second.node, first.node);
    assert_eq!(second.successors, first.successors);
    assert_eq!(
        (second.hops, second.timeouts, second.confirmed),
        (0, 0, true)
    );
    assert!(second.path.is_empty());
    // The same key for a strict lookup (the file layer's) still asks.
    net.sent.clear();
    assert_eq!(net.lookup(asker, near).unwrap().hops, 1);
    assert_eq!(net.sent.len(), 1);

    // The owner named its predecessor: its whole range is covered, and nothing past it.
    let pred = net.nodes[order[3]].id();
    net.sent.clear();
    let first_key = reusing(&mut net, asker, pred.wrapping_add(Id::from_parts(0, 1)));
    assert!(net.sent.is_empty(), "{:?}", net.sent);
    assert_eq!(
        (first_key.node.id, first_key.hops),
        (net.nodes[owner].id(), 0)
    );
    let before = reusing(&mut net, asker, pred);
    assert_eq!((before.node.id, before.hops), (pred, 1));

    // The next stabilization tick ends the period: asked again.
    net.nodes[asker].tick(Timer::Stabilize);
    net.settle();
    net.sent.clear();
    let after_tick = reusing(&mut net, asker, near);
    assert_eq!(after_tick.hops, 1);
    assert!(
        net.sent
            .iter()
            .any(|(_, to, _)| *to == net.nodes[owner].me().address)
    );
}

#[test]
fn a_failure_drops_every_kept_answer_and_a_dead_owner_is_never_reused_after_it() {
    let mut net = build(8, 3);
    let order = net.live_sorted();
    let (asker, owner, other) = (order[0], order[4], order[6]);
    let (a, b) = (below(&net, owner, 1000), below(&net, other, 1000));
    reusing(&mut net, asker, a);
    reusing(&mut net, asker, b);
    net.dead[owner] = true;
    // A lookup towards the dead owner's keys fails over; from then on nothing is reused.
    let near = below(&net, owner, 10);
    net.sent.clear();
    let dead = net.nodes[owner].id();
    let strict = net.lookup(asker, near).unwrap();
    assert!(strict.timeouts >= 1);
    // The dead peer's predecessor may not have noticed yet and name it: then the answer is
    // not confirmed (the API pings it before pointing anyone at it).
    assert!(strict.node.id != dead || !strict.confirmed, "{strict:?}");
    net.sent.clear();
    let b = below(&net, other, 10);
    let r = reusing(&mut net, asker, b);
    assert_eq!(
        r.hops, 1,
        "the failure dropped the other owner's answer too"
    );
    let r = reusing(&mut net, asker, near);
    assert!(r.hops >= 1 && (r.node.id != dead || !r.confirmed), "{r:?}");
}

#[test]
fn every_reused_answer_is_the_true_successor_on_a_still_ring() {
    let mut net = build(16, 3);
    let mut reused = 0;
    for k in 0..400 {
        let from = k % 16;
        let target = Id::hash(format!("key-{k}"));
        let r = reusing(&mut net, from, target);
        assert_eq!(r.node.id, net.true_successor(target), "key-{k}");
        if r.hops == 0 && r.node.id != net.nodes[from].id() {
            reused += 1;
        }
    }
    // 400 lookups from 16 askers over 16 owners, one period: most after the first few reuse.
    assert!(reused > 100, "{reused} answers reused");
}
