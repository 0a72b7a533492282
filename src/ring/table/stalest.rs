//! Which entry a full membership table drops next: the stalest, by (tick last heard, id).
//!
//! An index of every entry by age (a `BTreeSet<(heard, id)>` beside the table) did this exactly,
//! but cost a removal and an insertion in a second tree for nearly every `learn` (the table is
//! refreshed far more often than it evicts): with 10,000 simulated nodes a third of the run went
//! there, and the second tree half the memory. This keeps only the stalest part of the table
//! (a sixteenth, at least [`MIN_BATCH`] entries) as sorted (heard, id) pairs, collected in one
//! pass over the table when they run out. The answer is the same as the full index's.

use std::collections::BTreeMap;

/// The fewest entries a collection takes (a sixteenth of the table when that is more).
const MIN_BATCH: usize = 64;

/// The stalest entries of a table, to evict from (module docs).
#[derive(Debug, Default)]
pub(super) struct Stalest<K> {
    /// The pairs are complete: every entry whose (heard, id) is at or before `upto` has that
    /// pair in `pairs[next..]`. When false, the next [`Stalest::first`] collects again.
    ready: bool,
    upto: (u64, K),
    /// (heard, id), stalest first from `next` on (those before `next` are used up). Pairs go
    /// stale (the entry was heard from again, or removed): a pair counts only while the table
    /// still holds `id` heard at exactly `heard`.
    pairs: Vec<(u64, K)>,
    next: usize,
    /// More pairs than this (stale ones piling up) and the next `first` collects again.
    cap: usize,
}

impl<K: Ord + Copy> Stalest<K> {
    /// Forget everything: the next [`Stalest::first`] collects from the table.
    pub fn reset(&mut self) {
        self.ready = false;
        self.pairs = Vec::new();
        self.next = 0;
    }

    /// Entry `id` is now heard at `heard` (new, or heard from again).
    pub fn heard(&mut self, id: K, heard: u64) {
        let pair = (heard, id);
        if !self.ready || pair > self.upto {
            return;
        }
        let at = self.next + self.pairs[self.next..].partition_point(|p| *p < pair);
        self.pairs.insert(at, pair);
        if self.pairs.len() - self.next > self.cap {
            // Stale entries heard from again by hearsay that is stale too, over and over.
            self.reset();
        }
    }

    /// The stalest entry of `entries` (smallest tick last heard, then smallest id).
    pub fn first<E>(
        &mut self,
        entries: &BTreeMap<K, E>,
        heard_of: impl Fn(&E) -> u64,
    ) -> Option<(u64, K)> {
        for _ in 0..2 {
            if !self.ready {
                self.collect(entries, &heard_of);
            }
            while let Some(&(heard, id)) = self.pairs.get(self.next) {
                if entries.get(&id).map(&heard_of) == Some(heard) {
                    return Some((heard, id));
                }
                self.next += 1;
            }
            // Every pair was stale: no entry is at or before `upto` any more.
            self.reset();
        }
        None
    }

    fn collect<E>(&mut self, entries: &BTreeMap<K, E>, heard_of: &impl Fn(&E) -> u64) {
        let mut all: Vec<(u64, K)> = entries.iter().map(|(id, e)| (heard_of(e), *id)).collect();
        let Some(k) = MIN_BATCH.max(all.len() / 16).min(all.len()).checked_sub(1) else {
            self.reset();
            return;
        };
        let (_, upto, _) = all.select_nth_unstable(k);
        self.upto = *upto;
        all.truncate(k + 1);
        all.sort_unstable();
        self.cap = 2 * all.len() + MIN_BATCH;
        self.pairs = all;
        self.next = 0;
        self.ready = true;
    }
}
