//! The membership table: every ring member this node has heard of, so that a lookup can go
//! straight to the peer responsible for its target (one hop) instead of through log N fingers
//! (Gupta, Liskov and Rodrigues, "One Hop Lookups for Peer-to-Peer Overlays", HotOS 2003).
//!
//! The table only *proposes*: a lookup asks the proposed peer, and takes the answer only when
//! that peer says the target is its own (in (its predecessor, itself], by the predecessor
//! pointer stabilization keeps right). Anything else falls back to Chord routing, so the
//! successor-based correctness stays the source of truth and a stale table costs a hop, never
//! a wrong answer.
//!
//! It is learned from what the node hears anyway (who answers, who asks, neighbour lists, lookup
//! candidates) and from a cheap exchange: answers to `GetNeighbors` carry a window of the
//! responder's table ([`EXCHANGE_WINDOW`] entries), and every [`EXCHANGE_EVERY`] stabilization
//! ticks the node asks one peer of its table for its neighbours. Each entry keeps when someone
//! last heard from the peer *directly* (an age in stabilization ticks, passed along with it and
//! never made younger by hearsay), so a dead peer ages out everywhere: it is proposed only while
//! younger than [`FRESH_TICKS`], and dropped at [`EXPIRE_TICKS`]. Bounded by
//! `ring.membership_table_max` peers (0 turns it off); when full the stalest entry goes.

use std::collections::BTreeMap;

use super::message::{Address, Member, Peer};
use super::node::Pending;
use super::{Node, Request, RequestEnvelope, Response, ResponseEnvelope};
use crate::id::Id;

mod stalest;

use stalest::Stalest;

/// Entries a `GetNeighbors` answer carries.
pub const EXCHANGE_WINDOW: usize = 64;

/// Every this many stabilization ticks a node asks one table peer for its neighbours and table.
pub const EXCHANGE_EVERY: u64 = 4;

/// A table entry is proposed while someone heard from it directly at most this many ticks ago.
pub const FRESH_TICKS: u64 = 120;

/// Entries older than this are dropped (and never passed on).
pub const EXPIRE_TICKS: u64 = 240;

/// A table key: an [`Id`] in 24 bytes instead of 32 (no `u128` alignment), ordered the same.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
struct Key {
    hi: u32,
    mid: u64,
    lo: u64,
}

impl From<Id> for Key {
    fn from(id: Id) -> Key {
        let b = id.to_bytes();
        let word = |from: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[from..from + 8]);
            u64::from_be_bytes(w)
        };
        Key {
            hi: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            mid: word(4),
            lo: word(12),
        }
    }
}

impl Key {
    fn id(self) -> Id {
        Id::from_parts(self.hi, (u128::from(self.mid) << 64) | u128::from(self.lo))
    }
}

/// The suspect flag lives in the top bit of [`Entry::stamp`] (ticks never get there).
const SUSPECT: u64 = 1 << 63;

/// One peer of the table; its id is the key. Lean on purpose (24 bytes and a key of 24): a
/// simulation of 10,000 nodes holds 41 million of them.
#[derive(Clone, Debug)]
struct Entry {
    address: Address,
    /// The tick someone last heard from it directly, and [`SUSPECT`] when a lookup's proposal
    /// to it failed since (cleared only when it is heard from directly).
    stamp: u64,
}

impl Entry {
    fn peer(&self, key: Key) -> Peer {
        Peer::new(key.id(), self.address.clone())
    }

    fn heard(&self) -> u64 {
        self.stamp & !SUSPECT
    }

    fn suspect(&self) -> bool {
        self.stamp & SUSPECT != 0
    }

    fn set_heard(&mut self, heard: u64) {
        self.stamp = (self.stamp & SUSPECT) | (heard & !SUSPECT);
    }

    fn set_suspect(&mut self, suspect: bool) {
        self.stamp = if suspect {
            self.stamp | SUSPECT
        } else {
            self.stamp & !SUSPECT
        };
    }
}

/// The peers of the ring this node knows, by id.
#[derive(Debug, Default)]
pub(super) struct Table {
    max: usize,
    entries: BTreeMap<Key, Entry>,
    /// The stalest entries, which a full table drops first for newcomers (`table/stalest.rs`).
    stalest: Stalest<Key>,
    /// At or before the tick any entry was last heard from: expiry has nothing to do while
    /// this is young enough.
    oldest: u64,
    /// Where the next exchange window starts.
    window: Id,
    /// Where the next exchange partner is picked.
    partner: Id,
}

impl Table {
    pub fn new(max: usize) -> Table {
        Table {
            max,
            ..Table::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn enabled(&self) -> bool {
        self.max > 0
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.stalest.reset();
    }

    /// Someone heard from `peer` `age` ticks before `now`. `direct`: this node itself did (it
    /// answered or asked), which also clears a failed proposal.
    pub fn learn(&mut self, peer: &Peer, age: u64, now: u64, direct: bool) {
        if self.max == 0 || age > EXPIRE_TICKS {
            return;
        }
        let heard = now.saturating_sub(age);
        let key = Key::from(peer.id);
        if let Some(e) = self.entries.get_mut(&key) {
            if heard > e.heard() || (direct && heard >= e.heard()) {
                if heard != e.heard() {
                    self.stalest.heard(key, heard);
                }
                e.set_heard(heard);
                if e.address != peer.address {
                    e.address = peer.address.clone();
                }
            }
            if direct {
                e.set_suspect(false);
            }
            return;
        }
        if self.entries.len() >= self.max {
            // Full: the stalest entry goes, unless the newcomer is staler still.
            let Some((stalest_heard, stalest)) = self.stalest.first(&self.entries, Entry::heard)
            else {
                return;
            };
            if stalest_heard >= heard {
                return;
            }
            self.entries.remove(&stalest);
        }
        self.stalest.heard(key, heard);
        self.oldest = self.oldest.min(heard);
        self.entries.insert(
            key,
            Entry {
                address: peer.address.clone(),
                stamp: heard & !SUSPECT,
            },
        );
    }

    /// A proposal to `id` failed (no answer): not proposed again until heard from directly.
    pub fn suspect(&mut self, id: Id) {
        if let Some(e) = self.entries.get_mut(&Key::from(id)) {
            e.set_suspect(true);
        }
    }

    /// Drops the entries nobody heard from for [`EXPIRE_TICKS`], stalest first.
    pub fn expire(&mut self, now: u64) {
        if now.saturating_sub(self.oldest) <= EXPIRE_TICKS {
            return;
        }
        loop {
            match self.stalest.first(&self.entries, Entry::heard) {
                Some((heard, id)) if now.saturating_sub(heard) > EXPIRE_TICKS => {
                    self.entries.remove(&id);
                }
                Some((heard, _)) => {
                    self.oldest = heard;
                    return;
                }
                None => {
                    self.oldest = now;
                    return;
                }
            }
        }
    }

    /// The peer the table says is responsible for `target` (the first entry at or after it,
    /// with `me` counted as an entry), when that is another peer and it is fresh.
    pub fn propose(&self, target: Id, me: Id, now: u64) -> Option<Peer> {
        let first = self
            .entries
            .range(Key::from(target)..)
            .next()
            .or_else(|| self.entries.iter().next())?;
        let (key, e) = first;
        let id = key.id();
        // `me` comes first when it lies in [target, id): then the target is ours, not theirs.
        if me.in_half_open(target.wrapping_sub(Id::from_parts(0, 1)), id) && me != id {
            return None;
        }
        let fresh = now.saturating_sub(e.heard()) <= FRESH_TICKS;
        (fresh && !e.suspect()).then(|| e.peer(*key))
    }

    /// The first fresh, unsuspected entry after `from` and before `to` (clockwise): the
    /// closest peer this node knows of in that stretch of the ring, to try as a successor.
    pub fn first_between(&self, from: Id, to: Id, now: u64) -> Option<Peer> {
        let start = Key::from(from);
        self.entries
            .range(start..)
            .chain(self.entries.range(..start))
            .skip_while(|(key, _)| **key == start)
            .take_while(|(key, _)| key.id().in_open(from, to))
            .find(|(_, e)| now.saturating_sub(e.heard()) <= FRESH_TICKS && !e.suspect())
            .map(|(key, e)| e.peer(*key))
    }

    /// The next window of the table to hand a peer (the entries after the last window's, in
    /// id order, wrapping), with their ages at `now`; suspects and expired entries left out.
    pub fn window(&mut self, now: u64) -> Vec<Member> {
        let n = EXCHANGE_WINDOW.min(self.entries.len());
        let mut out = Vec::with_capacity(n);
        let start = Key::from(self.window);
        let after = self
            .entries
            .range(start..)
            .chain(self.entries.range(..start));
        let mut last = self.window;
        for (key, e) in after.take(n) {
            last = key.id();
            let age = now.saturating_sub(e.heard());
            if !e.suspect() && age <= EXPIRE_TICKS {
                out.push(Member {
                    peer: e.peer(*key),
                    age: u32::try_from(age).unwrap_or(u32::MAX),
                });
            }
        }
        self.window = last.wrapping_add(Id::from_parts(0, 1));
        out
    }

    /// The next peer to exchange with: the table is walked in id order by a stride of about a
    /// golden-ratio fraction of the ring, so partners spread over the whole ring.
    pub fn next_partner(&mut self, me: Id) -> Option<Peer> {
        const STRIDE: Id = Id::from_parts(0x9e37_79b9, 0x7f4a_7c15_f39c_c060_5ced_c834_1082_276b);
        self.partner = self.partner.wrapping_add(STRIDE);
        let (start, me) = (Key::from(self.partner), Key::from(me));
        self.entries
            .range(start..)
            .chain(self.entries.range(..start))
            .find(|(key, e)| **key != me && !e.suspect())
            .map(|(key, e)| e.peer(*key))
    }
}

// ----- the table on a node --------------------------------------------------------------------

impl Node {
    /// How many peers this node's membership table holds.
    pub fn membership_table_len(&self) -> usize {
        self.table.len()
    }

    /// Someone heard from `peer` `age` ticks ago (`direct`: this node did, just now).
    pub(super) fn heard(&mut self, peer: &Peer, age: u64, direct: bool) {
        if peer.id != self.me.id {
            self.table.learn(peer, age, self.ticks, direct);
        }
    }

    /// What an answer from our ring tells the table: who answered, the window of its table it
    /// sent, and the peers its answer lists.
    pub(super) fn learn_from_answer(&mut self, response: &mut ResponseEnvelope) {
        if !self.table.enabled() {
            response.members.clear();
            return;
        }
        if response.ring_id.is_none() || response.ring_id != self.ring_id {
            return;
        }
        self.heard(&response.from, 0, true);
        response.members.truncate(EXCHANGE_WINDOW);
        for m in std::mem::take(&mut response.members) {
            self.heard(&m.peer, u64::from(m.age).saturating_add(1), false);
        }
        // Neighbours and successors are kept alive by the responder's stabilization; lookup
        // candidates are fingers, known less well.
        let (lists, age): (Vec<&Peer>, u64) = match &response.body {
            Response::Neighbors {
                predecessor,
                successors,
                ..
            } => (predecessor.iter().chain(successors).collect(), 1),
            Response::Found { successors, .. } => (successors.iter().collect(), 1),
            Response::Closer { candidates } => (candidates.iter().collect(), FRESH_TICKS / 2),
            _ => (Vec::new(), 0),
        };
        let lists: Vec<Peer> = lists.into_iter().cloned().collect();
        for p in &lists {
            self.heard(p, age, false);
        }
    }

    /// A request from a member of our ring: its sender is alive.
    pub(super) fn learn_from_request(&mut self, request: &RequestEnvelope) {
        if self.table.enabled() && request.ring_id.is_some() && request.ring_id == self.ring_id {
            self.heard(&request.from, 0, true);
        }
    }

    /// The window of the table an answer to `GetNeighbors` carries.
    pub(super) fn table_window(&mut self) -> Vec<Member> {
        self.table.window(self.ticks)
    }

    /// On a stabilization tick: ages the table out and, every [`EXCHANGE_EVERY`] ticks, asks
    /// one of its peers for its neighbours and table.
    pub(super) fn exchange_members(&mut self) {
        if !self.table.enabled() {
            return;
        }
        if self.ticks.is_multiple_of(8) {
            self.table.expire(self.ticks);
        }
        if self.exchanging || !self.ticks.is_multiple_of(EXCHANGE_EVERY) {
            return;
        }
        if let Some(partner) = self.table.next_partner(self.me.id) {
            self.exchanging = true;
            self.send(
                partner.address.clone(),
                Request::GetNeighbors,
                Pending::Exchange(partner),
            );
        }
    }

    /// The exchange partner did not answer.
    pub(super) fn exchange_failed(&mut self, partner: &Peer) {
        self.exchanging = false;
        self.table.suspect(partner.id);
    }

    /// The table's proposal for `target`, when it has a fresh one.
    pub(super) fn propose(&self, target: Id) -> Option<Peer> {
        self.table.propose(target, self.me.id, self.ticks)
    }

    /// A closer successor than `succ` from the table, asked for only when `succ` itself says
    /// a peer lies between us (its `predecessor` is in (me, succ)): then this node is out of
    /// place, perhaps far (a successor list lost at once falls back to a far finger, and a
    /// merged ring leaves such a node behind), and the predecessor pointers alone walk it back
    /// a few peers a round. The table's closest peer after us jumps there at once; it is
    /// adopted only once it answers, like any candidate. A healthy ring never asks (its
    /// successor's predecessor is this node), so a dead table entry costs nothing there.
    pub(super) fn closer_from_table(&self, succ: Id, predecessor: Option<&Peer>) -> Option<Peer> {
        let me = self.me.id;
        if !self.table.enabled() || !predecessor.is_some_and(|p| p.id.in_open(me, succ)) {
            return None;
        }
        self.table.first_between(me, succ, self.ticks)
    }

    /// A proposal to `id` went unanswered.
    pub(super) fn proposal_failed(&mut self, id: Id) {
        self.table.suspect(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u128) -> Peer {
        Peer::new(Id::from_parts(0, n), format!("p{n}:1").as_str().into())
    }

    fn id(n: u128) -> Id {
        Id::from_parts(0, n)
    }

    #[test]
    fn proposes_the_first_peer_at_or_after_the_target_unless_it_is_ours() {
        let mut t = Table::new(16);
        for n in [10, 20, 30] {
            t.learn(&peer(n), 0, 5, true);
        }
        let me = id(25);
        assert_eq!(t.propose(id(11), me, 5), Some(peer(20)));
        assert_eq!(t.propose(id(20), me, 5), Some(peer(20)));
        // (20, 25] is ours.
        assert_eq!(t.propose(id(22), me, 5), None);
        assert_eq!(t.propose(id(25), me, 5), None);
        assert_eq!(t.propose(id(26), me, 5), Some(peer(30)));
        // Wraps: past the last entry, the first one.
        assert_eq!(t.propose(id(31), me, 5), Some(peer(10)));
    }

    #[test]
    fn hearsay_never_makes_an_entry_younger_and_old_entries_stop_being_proposed() {
        let mut t = Table::new(16);
        t.learn(&peer(10), 0, 100, true);
        // Someone heard from it 300 ticks ago: too old to take, and not younger than ours.
        t.learn(&peer(10), 300, 400, false);
        assert_eq!(t.propose(id(5), id(50), 100 + FRESH_TICKS), Some(peer(10)));
        assert_eq!(t.propose(id(5), id(50), 101 + FRESH_TICKS), None);
        t.expire(101 + EXPIRE_TICKS);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_first_peer_between_skips_suspects_and_stale_entries_and_wraps() {
        let mut t = Table::new(16);
        for n in [10, 20, 30, 40] {
            t.learn(&peer(n), 0, 200, true);
        }
        t.learn(&peer(15), 0, 200 - FRESH_TICKS - 1, true);
        assert_eq!(t.first_between(id(10), id(40), 200), Some(peer(20)));
        t.suspect(id(20));
        assert_eq!(t.first_between(id(10), id(40), 200), Some(peer(30)));
        assert_eq!(t.first_between(id(10), id(30), 200), None);
        // Wraps past the last entry; the ends themselves are never returned.
        assert_eq!(t.first_between(id(35), id(20), 200), Some(peer(40)));
        assert_eq!(t.first_between(id(40), id(20), 200), Some(peer(10)));
        assert_eq!(t.first_between(id(40), id(10), 200), None);
    }

    #[test]
    fn a_suspect_is_not_proposed_until_heard_from_directly() {
        let mut t = Table::new(16);
        t.learn(&peer(10), 0, 1, true);
        t.suspect(id(10));
        assert_eq!(t.propose(id(5), id(50), 1), None);
        t.learn(&peer(10), 0, 2, false);
        assert_eq!(t.propose(id(5), id(50), 2), None);
        assert!(t.window(2).is_empty());
        t.learn(&peer(10), 0, 3, true);
        assert_eq!(t.propose(id(5), id(50), 3), Some(peer(10)));
    }

    #[test]
    fn bounded_the_stalest_goes_and_windows_walk_the_whole_table() {
        let mut t = Table::new(100);
        for n in 0..150u128 {
            t.learn(&peer(n + 1), 0, n as u64, true);
        }
        assert_eq!(t.len(), 100);
        // Heard from last: kept; heard from first: gone.
        assert!(t.propose(id(150), id(0), 150).is_some());
        assert_eq!(t.propose(id(1), id(0), 150), Some(peer(51)));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2 {
            for m in t.window(150) {
                seen.insert(m.peer.id);
            }
        }
        assert_eq!(seen.len(), 100);
        let mut off = Table::new(0);
        off.learn(&peer(1), 0, 1, true);
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn a_full_table_drops_exactly_what_a_scan_for_the_stalest_would() {
        // Seeded pseudo-random learning (direct and hearsay, many peers heard at the same
        // tick), expiry and eviction on a table of 100: after every step it holds exactly the
        // entries of a naive table that scans all of them for the stalest (heard, id).
        let mut t = Table::new(100);
        let mut naive: BTreeMap<u128, u64> = BTreeMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut evictions = 0;
        for step in 0..40_000u64 {
            let now = step / 8;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = u128::from(x % 400) + 1;
            let (age, direct) = (x % 300, x.is_multiple_of(3));
            t.learn(&peer(n), age, now, direct);
            if age <= EXPIRE_TICKS {
                let heard = now - age.min(now);
                match naive.get_mut(&n) {
                    Some(h) => {
                        if heard > *h || (direct && heard >= *h) {
                            *h = heard;
                        }
                    }
                    None => {
                        let stalest = naive.iter().map(|(n, h)| (*h, *n)).min();
                        match stalest {
                            Some((h, old)) if naive.len() >= 100 => {
                                if h < heard {
                                    naive.remove(&old);
                                    naive.insert(n, heard);
                                    evictions += 1;
                                }
                            }
                            _ => {
                                naive.insert(n, heard);
                            }
                        }
                    }
                }
            }
            if step.is_multiple_of(400) {
                t.expire(now);
                naive.retain(|_, h| now - *h <= EXPIRE_TICKS);
            }
            let have: Vec<(u128, u64)> = t
                .entries
                .iter()
                .map(|(key, e)| (u128::from(key.mid) << 64 | u128::from(key.lo), e.heard()))
                .collect();
            let want: Vec<(u128, u64)> = naive.iter().map(|(n, h)| (*n, *h)).collect();
            assert_eq!(have, want, "step {step}");
        }
        assert!(evictions > 5_000, "{evictions} evictions");
    }

    #[test]
    fn keys_round_trip_and_sort_like_ids() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut ids = vec![Id::ZERO, Id::MAX, id(1), Id::from_parts(1, 0)];
        for _ in 0..1_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let lo = u128::from(x) << 64 | u128::from(x.rotate_left(17));
            ids.push(Id::from_parts((x >> 40) as u32, lo));
        }
        for a in &ids {
            assert_eq!(Key::from(*a).id(), *a);
            for b in ids.iter().take(50) {
                assert_eq!(Key::from(*a).cmp(&Key::from(*b)), a.cmp(b));
            }
        }
        assert_eq!(
            std::mem::size_of::<Key>() + std::mem::size_of::<Entry>(),
            48
        );
    }
}
