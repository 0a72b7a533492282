//! Agreement of the gathered ring: each peer's *view* is the ring its successor walk reaches
//! (following every peer's first successor, as the gathered answers report it), digested; the
//! ring agrees when every answering peer's walk closes over the same set of peers, every
//! successor names its walker as predecessor, one ring id is in use and nobody names a peer
//! that does not answer. Pure: the gather feeds it what the peers answered.

use std::collections::{BTreeSet, HashMap};

use sha1::{Digest, Sha1};

use crate::id::Id;

/// What one answering peer reported about its neighbourhood.
#[derive(Clone, Debug)]
pub struct Reported {
    pub id: Id,
    pub ring_id: Option<String>,
    pub predecessor: Option<Id>,
    pub successors: Vec<Id>,
}

/// The verdict for one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerVerdict {
    /// Digest of the ring its successor walk reaches (16 hex characters).
    pub view_digest: String,
    /// Why it disagrees with the ring; `None` when it agrees.
    pub problem: Option<String>,
}

/// The verdict for the whole gathered ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub agree: bool,
    /// Per answering peer, in the order given.
    pub peers: Vec<PeerVerdict>,
    /// The distinct views: digest and how many peers hold it, most common first.
    pub views: Vec<(String, usize)>,
}

/// Judges `reported` (the answering peers); `unreachable` is how many named peers did not answer.
pub fn judge(reported: &[Reported], unreachable: usize) -> Verdict {
    let by_id: HashMap<Id, &Reported> = reported.iter().map(|r| (r.id, r)).collect();
    let walks: Vec<Walk> = reported.iter().map(|r| walk(r.id, &by_id)).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &walks {
        *counts.entry(w.digest.as_str()).or_default() += 1;
    }
    let mut views: Vec<(String, usize)> = counts.iter().map(|(d, n)| (d.to_string(), *n)).collect();
    views.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let main = views.first().map(|v| v.0.clone()).unwrap_or_default();
    let mut ring_ids: HashMap<Option<&str>, usize> = HashMap::new();
    for r in reported {
        *ring_ids.entry(r.ring_id.as_deref()).or_default() += 1;
    }
    let main_ring = ring_ids
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(r, _)| *r)
        .unwrap_or(None);
    let peers: Vec<PeerVerdict> = reported
        .iter()
        .zip(&walks)
        .map(|(r, w)| PeerVerdict {
            view_digest: w.digest.clone(),
            problem: problem(r, w, &main, main_ring, &by_id, reported.len()),
        })
        .collect();
    let agree = !reported.is_empty()
        && unreachable == 0
        && views.len() == 1
        && peers.iter().all(|p| p.problem.is_none());
    Verdict {
        agree,
        peers,
        views,
    }
}

struct Walk {
    digest: String,
    /// The walk came back to where it started.
    closed: bool,
    /// Peers on the walk's cycle (or on the open walk).
    members: usize,
    /// Where an open walk stopped: at a peer that did not answer, or one with no successor.
    stopped_at: Option<Id>,
}

/// Follows first successors from `start` until a peer repeats or the walk leaves the answers.
fn walk(start: Id, by_id: &HashMap<Id, &Reported>) -> Walk {
    let mut order: Vec<Id> = vec![start];
    let mut seen: HashMap<Id, usize> = HashMap::from([(start, 0)]);
    let mut at = start;
    loop {
        let next = by_id.get(&at).and_then(|r| r.successors.first().copied());
        let Some(next) = next else {
            return open_walk(&order, Some(at));
        };
        if let Some(&k) = seen.get(&next) {
            // The cycle is order[k..]; it is this peer's ring when it includes the start.
            let cycle: BTreeSet<Id> = order[k..].iter().copied().collect();
            return Walk {
                digest: digest("ring", &cycle),
                closed: k == 0,
                members: cycle.len(),
                stopped_at: None,
            };
        }
        if !by_id.contains_key(&next) {
            order.push(next);
            return open_walk(&order, Some(next));
        }
        seen.insert(next, order.len());
        order.push(next);
        at = next;
    }
}

fn open_walk(order: &[Id], stopped_at: Option<Id>) -> Walk {
    let set: BTreeSet<Id> = order.iter().copied().collect();
    Walk {
        digest: digest("open", &set),
        closed: false,
        members: set.len(),
        stopped_at,
    }
}

fn digest(kind: &str, ids: &BTreeSet<Id>) -> String {
    let mut h = Sha1::new();
    h.update(kind.as_bytes());
    for id in ids {
        h.update(id.to_bytes());
    }
    let out = h.finalize();
    out.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn problem(
    r: &Reported,
    w: &Walk,
    main: &str,
    main_ring: Option<&str>,
    by_id: &HashMap<Id, &Reported>,
    answering: usize,
) -> Option<String> {
    if r.ring_id.as_deref() != main_ring {
        return Some(format!(
            "ring id {} differs from the ring's {}",
            r.ring_id.as_deref().unwrap_or("none"),
            main_ring.unwrap_or("none")
        ));
    }
    if !w.closed {
        return Some(match w.stopped_at {
            Some(p) if !by_id.contains_key(&p) => {
                format!(
                    "its successor walk stops at {}, which does not answer",
                    p.short()
                )
            }
            _ => "its successor walk does not come back to it".to_string(),
        });
    }
    if w.digest != main {
        return Some(format!(
            "its successor walk sees another ring ({} of {answering} peers)",
            w.members
        ));
    }
    if let Some(s) = r.successors.first().and_then(|s| by_id.get(s))
        && s.predecessor != Some(r.id)
    {
        return Some(format!(
            "its successor {} names {} as predecessor",
            s.id.short(),
            s.predecessor.map_or("nobody".to_string(), |p| p.short())
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Id> {
        let mut v: Vec<Id> = (0..n).map(|i| Id::hash(format!("p{i}"))).collect();
        v.sort();
        v
    }

    /// A correct ring of `ids` (sorted), each with `r` successors.
    fn ring(ids: &[Id], r: usize) -> Vec<Reported> {
        let n = ids.len();
        (0..n)
            .map(|i| Reported {
                id: ids[i],
                ring_id: Some("a".into()),
                predecessor: Some(ids[(i + n - 1) % n]),
                successors: (1..=r.min(n)).map(|k| ids[(i + k) % n]).collect(),
            })
            .collect()
    }

    #[test]
    fn a_correct_ring_agrees_with_one_digest() {
        let v = judge(&ring(&ids(8), 4), 0);
        assert!(v.agree, "{v:?}");
        assert_eq!(v.views.len(), 1);
        assert_eq!(v.views[0].1, 8);
        assert!(v.peers.iter().all(|p| p.problem.is_none()));
        let one = judge(&ring(&ids(1), 4), 0);
        assert!(one.agree, "{one:?}");
    }

    #[test]
    fn a_named_peer_that_does_not_answer_breaks_agreement_and_is_named() {
        let all = ids(8);
        // Peer 3 crashed: it no longer answers, peer 2 still points at it.
        let reported: Vec<Reported> = ring(&all, 4)
            .into_iter()
            .filter(|r| r.id != all[3])
            .collect();
        let v = judge(&reported, 1);
        assert!(!v.agree);
        let p2 = &v.peers[2];
        assert!(
            p2.problem
                .as_deref()
                .is_some_and(|p| p.contains("does not answer")),
            "{p2:?}"
        );
    }

    #[test]
    fn two_rings_with_one_id_show_two_views() {
        let all = ids(8);
        let (a, b) = all.split_at(4);
        let mut reported = ring(a, 3);
        reported.extend(ring(b, 3));
        let v = judge(&reported, 0);
        assert!(!v.agree);
        assert_eq!(v.views.len(), 2, "{v:?}");
        assert_eq!((v.views[0].1, v.views[1].1), (4, 4));
        assert!(v.peers.iter().filter(|p| p.problem.is_some()).count() == 4);
    }

    #[test]
    fn another_ring_id_and_a_wrong_predecessor_are_named() {
        let all = ids(6);
        let mut reported = ring(&all, 3);
        reported[5].ring_id = Some("b".into());
        let v = judge(&reported, 0);
        assert!(!v.agree);
        assert!(
            v.peers[5]
                .problem
                .as_deref()
                .unwrap_or("")
                .contains("ring id")
        );
        let mut reported = ring(&all, 3);
        reported[2].predecessor = Some(all[0]);
        let v = judge(&reported, 0);
        assert!(!v.agree);
        assert!(
            v.peers[1]
                .problem
                .as_deref()
                .unwrap_or("")
                .contains("predecessor"),
            "{v:?}"
        );
    }
}
