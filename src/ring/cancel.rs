//! Cancelling a lookup whose caller stopped waiting.

use super::lookup::Purpose;
use super::node::Pending;
use super::{LookupId, Node};

impl Node {
    /// Forgets the user lookup `id` (its caller gave up): no further hop is sent for it, answers
    /// still in flight are ignored, and no [`super::Output::LookupDone`] comes for it. The
    /// node's own lookups (joining, fingers) cannot be cancelled; an unknown id is ignored.
    pub fn cancel_lookup(&mut self, id: LookupId) {
        if self
            .lookups
            .get(&id)
            .is_none_or(|l| l.purpose != Purpose::User)
        {
            return;
        }
        self.lookups.remove(&id);
        self.pending
            .retain(|_, p| !matches!(p, Pending::Lookup(step) if step.lookup == id));
    }

    /// How many user lookups are in flight (not the node's own, for joining and fingers).
    pub fn user_lookups_in_flight(&self) -> usize {
        self.lookups
            .values()
            .filter(|l| l.purpose == Purpose::User)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Address, Node, Output, Peer, RingConfig, RingId, Timer};

    /// Delivers every request at once until nobody has anything left to say.
    fn settle(nodes: &mut [Node]) {
        loop {
            let mut out = Vec::new();
            let mut from = 0;
            for (i, n) in nodes.iter_mut().enumerate() {
                n.drain_outputs(&mut out);
                if !out.is_empty() {
                    from = i;
                    break;
                }
            }
            if out.is_empty() {
                return;
            }
            deliver(nodes, from, out);
        }
    }

    fn index(nodes: &[Node], to: &Address) -> usize {
        nodes.iter().position(|n| &n.me().address == to).unwrap()
    }

    #[test]
    fn a_cancelled_lookup_sends_nothing_more_and_never_reports() {
        let mut nodes: Vec<Node> = (0..3)
            .map(|i| {
                Node::new(
                    Peer::from_address(format!("n{i}:7000")),
                    RingConfig::default(),
                )
            })
            .collect();
        nodes[0].create(RingId(7)).unwrap();
        for i in 1..3 {
            let a = nodes[0].me().address.clone();
            nodes[i].join(a).unwrap();
            settle(&mut nodes);
        }
        for _ in 0..6 {
            for i in 0..3 {
                nodes[i].tick(Timer::Stabilize);
                settle(&mut nodes);
            }
        }
        // From node 0, the node after its successor is two hops away: the lookup goes remote.
        let succ = nodes[0].successor().unwrap().clone();
        let far = nodes[index(&nodes, &succ.address)]
            .successor()
            .unwrap()
            .clone();
        assert_ne!(far.id, nodes[0].id(), "a ring of three");
        let id = nodes[0].lookup(far.id);
        let mut out = Vec::new();
        nodes[0].drain_outputs(&mut out);
        let [
            Output::Send {
                request,
                to,
                message,
                ..
            },
        ] = &out[..]
        else {
            panic!("one remote step expected, got {out:?}");
        };
        assert_eq!(nodes[0].user_lookups_in_flight(), 1);
        nodes[0].cancel_lookup(id);
        assert_eq!(nodes[0].user_lookups_in_flight(), 0);
        // The answer still arrives: it is ignored, nothing more is sent or reported.
        let t = index(&nodes, to);
        let answer = nodes[t].handle_request(message.clone());
        nodes[0].handle_response(*request, answer);
        let mut after = Vec::new();
        nodes[0].drain_outputs(&mut after);
        assert!(after.is_empty(), "{after:?}");
        // Without the cancel, the same answer finishes the lookup (the test can fail).
        let id = nodes[0].lookup(far.id);
        let mut out = Vec::new();
        nodes[0].drain_outputs(&mut out);
        deliver(&mut nodes, 0, out);
        let mut done = Vec::new();
        nodes[0].drain_outputs(&mut done);
        assert!(
            done.iter()
                .any(|o| matches!(o, Output::LookupDone { lookup, outcome: Ok(r) } if *lookup == id && r.node.id == far.id)),
            "{done:?}"
        );
    }

    /// Delivers the requests in `from`'s `out` once; what `from` says next stays in its outputs.
    fn deliver(nodes: &mut [Node], from: usize, out: Vec<Output>) {
        for o in out {
            if let Output::Send {
                request,
                to,
                message,
                ..
            } = o
            {
                let t = index(nodes, &to);
                let answer = nodes[t].handle_request(message);
                nodes[from].handle_response(request, answer);
            }
        }
    }
}
