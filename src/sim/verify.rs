//! Driving the ring's verification machines ([`Confirm`], [`Walk`]) the way the runtime does,
//! over the simulated network: each ping or neighbours request goes to the node named, which
//! answers unless it is dead, partitioned away, or the message (either way) is lost. Answers
//! come without latency: what is checked is the decision, not the timing.

use super::{NodeIndex, Sim};
use crate::ring::verify::{Confirm, Walk};
use crate::ring::{
    Address, LookupResult, Peer, Request, RequestEnvelope, Response, ResponseEnvelope,
};

impl Sim {
    /// Node `from` asks the peer at `to` directly; `None` when no answer comes back.
    fn ask(&mut self, from: NodeIndex, to: &Address, body: Request) -> Option<ResponseEnvelope> {
        let &t = self.by_address.get(to)?;
        self.stats.messages += 1;
        let lost = self.rng.chance(self.config.loss) || self.rng.chance(self.config.loss);
        if !self.slots[t].alive || self.slots[t].group != self.slots[from].group || lost {
            return None;
        }
        let n = &self.slots[from].node;
        let request = RequestEnvelope::new(n.ring_id(), n.me().clone(), body);
        let answer = self.slots[t].node.handle_request(request);
        self.flush(t);
        Some(answer)
    }

    /// Confirms a lookup answer from node `from`'s side, as the runtime does before pointing a
    /// user at it: the first live peer of (answer, its successors).
    pub fn confirm(&mut self, from: NodeIndex, result: LookupResult) -> LookupResult {
        let mut confirm = Confirm::new(self.slots[from].node.id(), result);
        while let Some(candidate) = confirm.ask_next() {
            let alive = matches!(
                self.ask(from, &candidate.address, Request::Ping),
                Some(ResponseEnvelope {
                    body: Response::Ack,
                    ..
                })
            );
            confirm.answered(alive);
        }
        confirm.finish()
    }

    /// Walks the ring along successor pointers from node `from` (`GET /v1/ring`): the nodes
    /// seen, and whether the walk came back to `from`.
    pub fn walk(&mut self, from: NodeIndex, limit: usize) -> (Vec<Peer>, bool) {
        let n = &self.slots[from].node;
        let mut walk = Walk::new(n.me().clone(), n.successor().cloned(), limit);
        while let Some(current) = walk.ask_next() {
            let successors = match self.ask(from, &current.address, Request::GetNeighbors) {
                Some(ResponseEnvelope {
                    body: Response::Neighbors { successors, .. },
                    ..
                }) => Some(successors),
                _ => None,
            };
            walk.answered(successors);
        }
        walk.finish()
    }
}
