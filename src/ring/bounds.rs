//! What a peer's message may hand this node: lists cut to the protocol's bounds and without
//! duplicates, before any of their peers is contacted (an answer with 50,000 candidates must
//! not turn into 50,000 connection attempts to addresses its sender picked).

use std::collections::HashSet;

use super::{Node, Peer, Request, Response};

/// Keeps the first `max` distinct peers (by id), in order.
pub(super) fn cut(list: &mut Vec<Peer>, max: usize) {
    let mut seen = HashSet::with_capacity(max.min(list.len()));
    let mut kept = 0;
    list.retain(|p| {
        let keep = kept < max && seen.insert(p.id);
        kept += usize::from(keep);
        keep
    });
    list.shrink_to(max);
}

impl Node {
    /// The most successors a message may list: the successor list's length, plus the
    /// responder itself (a `Found` answer starts with it).
    fn max_successors(&self) -> usize {
        self.config.successors + 1
    }

    /// The most candidates a `Closer` answer may list: `lookup_candidates` closest ones, and
    /// the responder's successors kept as a last resort.
    fn max_candidates(&self) -> usize {
        self.config.lookup_candidates + self.config.successors
    }

    /// Cuts an answer's lists to the protocol's bounds.
    pub(super) fn bound_response(&self, body: &mut Response) {
        match body {
            Response::Found { successors, .. } => cut(successors, self.max_successors()),
            Response::Closer { candidates } => cut(candidates, self.max_candidates()),
            Response::Neighbors { successors, .. } => cut(successors, self.max_successors()),
            Response::Ack | Response::Rejected { .. } => {}
        }
    }

    /// Cuts a request's lists to the protocol's bounds.
    pub(super) fn bound_request(&self, body: &mut Request) {
        if let Request::Leaving { successors, .. } = body {
            cut(successors, self.max_successors());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn peer(n: u128) -> Peer {
        Peer::new(
            Id::from_parts(0, n),
            format!("10.0.0.1:{n}").as_str().into(),
        )
    }

    #[test]
    fn lists_are_deduplicated_then_cut_in_order() {
        let mut list: Vec<Peer> = [3, 1, 3, 2, 1, 4, 5].into_iter().map(peer).collect();
        cut(&mut list, 3);
        let ids: Vec<Id> = list.iter().map(|p| p.id).collect();
        assert_eq!(ids, [3, 1, 2].map(|n| Id::from_parts(0, n)));
        let mut flood: Vec<Peer> = (0..50_000).map(peer).collect();
        cut(&mut flood, 12);
        assert_eq!(flood.len(), 12);
    }
}
