//! Trusting a lookup's answer: a lookup ends with the successor its last hop knew of, which
//! right after a crash may be dead. [`Confirm`] decides which peer to ask next and what the
//! answer becomes: the first live peer of (answer, its successors) is responsible (where the
//! dead peer's keys and copies now are), and the answer is re-anchored there.
//!
//! Sans-io: the driver pings the peer [`Confirm::ask_next`] names and reports with
//! [`Confirm::answered`]; each peer gets [`PING_ATTEMPTS`] tries (a lost message is not a
//! death).

use super::lookup::LookupResult;
use super::message::Peer;
use crate::id::Id;

/// Pings per candidate before it counts as dead.
pub const PING_ATTEMPTS: u32 = 2;

/// One confirmation of one lookup answer.
#[derive(Clone, Debug)]
pub struct Confirm {
    me: Id,
    result: LookupResult,
    candidates: Vec<Peer>,
    at: usize,
    tries: u32,
    done: bool,
}

impl Confirm {
    /// Confirms `result` as seen by the node `me` (which is alive by definition).
    pub fn new(me: Id, result: LookupResult) -> Confirm {
        let candidates: Vec<Peer> = std::iter::once(result.node.clone())
            .chain(result.successors.iter().cloned())
            .collect();
        // The answer came from the responsible peer itself, just now: nothing to ask.
        let done = result.confirmed;
        Confirm {
            me,
            result,
            candidates,
            at: 0,
            tries: 0,
            done,
        }
    }

    /// The peer to ping next; `None` once decided (then call [`Confirm::finish`]).
    pub fn ask_next(&mut self) -> Option<Peer> {
        while !self.done {
            let Some(c) = self.candidates.get(self.at) else {
                self.done = true;
                return None;
            };
            if c.id == self.me {
                self.done = true;
                return None;
            }
            if self.tries < PING_ATTEMPTS {
                self.tries += 1;
                return Some(c.clone());
            }
            self.at += 1;
            self.tries = 0;
        }
        None
    }

    /// The answer of the last ping [`Confirm::ask_next`] asked for.
    pub fn answered(&mut self, alive: bool) {
        if alive {
            self.done = true;
        }
    }

    /// The confirmed answer: re-anchored at the first live candidate, with the dead ones
    /// skipped counted as time-outs. When none answered, the original answer.
    pub fn finish(self) -> LookupResult {
        let mut r = self.result;
        if self.at >= self.candidates.len() {
            return r;
        }
        r.timeouts += self.at as u32;
        r.node = self.candidates[self.at].clone();
        r.successors = self.candidates[self.at + 1..].to_vec();
        r
    }
}

/// A walk along successor pointers from one node, as `GET /v1/ring` reports it.
#[derive(Clone, Debug)]
pub struct Walk {
    me: Peer,
    nodes: Vec<Peer>,
    current: Option<Peer>,
    limit: usize,
    complete: bool,
}

impl Walk {
    /// Starts at `me`, whose successor is `first`; at most `limit` nodes.
    pub fn new(me: Peer, first: Option<Peer>, limit: usize) -> Walk {
        Walk {
            nodes: vec![me.clone()],
            me,
            current: first,
            limit,
            complete: false,
        }
    }

    /// The peer to ask for its successor next; `None` once the walk ended.
    pub fn ask_next(&mut self) -> Option<Peer> {
        let current = self.current.take()?;
        if current.id == self.me.id {
            self.complete = true;
            return None;
        }
        // A loop that does not come back to us, or too long: report what we saw.
        if self.nodes.len() >= self.limit || self.nodes.iter().any(|p| p.id == current.id) {
            return None;
        }
        self.nodes.push(current.clone());
        Some(current)
    }

    /// The successor list the asked peer gave (`None`: it did not answer).
    pub fn answered(&mut self, successors: Option<Vec<Peer>>) {
        self.current = successors.and_then(|s| s.into_iter().next());
    }

    /// The nodes seen in ring order from `me`, and whether the walk came back to `me`.
    pub fn finish(self) -> (Vec<Peer>, bool) {
        (self.nodes, self.complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u128) -> Peer {
        Peer::new(Id::from_parts(0, n), format!("p{n}:1").as_str().into())
    }

    fn answer(node: u128, successors: &[u128]) -> LookupResult {
        LookupResult {
            target: Id::from_parts(0, 1),
            node: peer(node),
            successors: successors.iter().map(|n| peer(*n)).collect(),
            hops: 1,
            path: vec![],
            timeouts: 0,
            confirmed: false,
        }
    }

    /// Runs a confirmation against a set of live peers; returns the result and the pings.
    fn run(me: u128, r: LookupResult, live: &[u128]) -> (LookupResult, usize) {
        let mut c = Confirm::new(Id::from_parts(0, me), r);
        let mut pings = 0;
        while let Some(p) = c.ask_next() {
            pings += 1;
            c.answered(live.iter().any(|n| Id::from_parts(0, *n) == p.id));
        }
        (c.finish(), pings)
    }

    #[test]
    fn a_live_answer_costs_one_ping_and_is_kept() {
        let (r, pings) = run(9, answer(5, &[6, 7]), &[5, 6, 7]);
        assert_eq!((r.node.id, pings, r.timeouts), (Id::from_parts(0, 5), 1, 0));
    }

    #[test]
    fn an_answer_the_responsible_peer_gave_itself_costs_no_ping() {
        let confirmed = LookupResult {
            confirmed: true,
            path: vec![peer(5)],
            ..answer(5, &[6, 7])
        };
        let (r, pings) = run(9, confirmed.clone(), &[5, 6, 7]);
        assert_eq!((r, pings), (confirmed, 0));
    }

    #[test]
    fn dead_answers_are_skipped_after_two_tries_each_and_reanchored() {
        let (r, pings) = run(9, answer(5, &[6, 7, 8]), &[7, 8]);
        assert_eq!(r.node.id, Id::from_parts(0, 7));
        assert_eq!(r.successors, vec![peer(8)]);
        assert_eq!((pings, r.timeouts), (5, 2));
    }

    #[test]
    fn the_asking_node_is_alive_without_a_ping_and_all_dead_keeps_the_answer() {
        let (r, pings) = run(6, answer(5, &[6, 7]), &[]);
        assert_eq!((r.node.id, pings), (Id::from_parts(0, 6), 2));
        let (r, pings) = run(9, answer(5, &[6]), &[]);
        assert_eq!((r.node.id, pings, r.timeouts), (Id::from_parts(0, 5), 4, 0));
    }

    #[test]
    fn walks_come_back_stop_at_loops_and_at_silence() {
        let ring = |p: &Peer| -> Option<Vec<Peer>> {
            let n = p.id.to_string().parse::<Id>().ok()?;
            let next = match n {
                x if x == Id::from_parts(0, 1) => 2,
                x if x == Id::from_parts(0, 2) => 3,
                _ => 1,
            };
            Some(vec![peer(next)])
        };
        let mut w = Walk::new(peer(1), Some(peer(2)), 10);
        while let Some(p) = w.ask_next() {
            w.answered(ring(&p));
        }
        let (nodes, complete) = w.finish();
        assert!(complete);
        assert_eq!(nodes, vec![peer(1), peer(2), peer(3)]);
        // 2 points back to itself: a loop that never returns to 1.
        let mut w = Walk::new(peer(1), Some(peer(2)), 10);
        while let Some(_p) = w.ask_next() {
            w.answered(Some(vec![peer(2)]));
        }
        assert_eq!(w.finish(), (vec![peer(1), peer(2)], false));
        // Silence ends it.
        let mut w = Walk::new(peer(1), Some(peer(2)), 10);
        while let Some(_p) = w.ask_next() {
            w.answered(None);
        }
        assert_eq!(w.finish(), (vec![peer(1), peer(2)], false));
        // No successor yet.
        let mut w = Walk::new(peer(1), None, 10);
        assert!(w.ask_next().is_none());
        assert_eq!(w.finish(), (vec![peer(1)], false));
    }
}
