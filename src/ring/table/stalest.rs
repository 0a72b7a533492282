//! Which entry a full membership table drops next: the stalest, by (tick last heard, id).
//!
//! An index of every entry by age (a `BTreeSet<(heard, id)>` beside the table) did this exactly,
//! but cost a removal and an insertion in a second tree for nearly every `learn` (the table is
//! refreshed far more often than it evicts): with 10,000 simulated nodes a third of the run went
//! there, and the second tree half the memory. This keeps only the stalest few: every entry
//! heard at or before a threshold, as (heard, id) pairs, rebuilt from one pass over the table
//! when they run out. The answer is the same as the full index's.

use std::collections::BTreeMap;

use crate::id::Id;

/// How many of the stalest entries a rebuild collects (more when several share a tick).
const BATCH: usize = 64;

/// The stalest entries of a table, to evict from (module docs).
#[derive(Debug, Default)]
pub(super) struct Stalest {
    /// The pairs are complete: every entry heard at or before `upto` has its (heard, id) pair
    /// in `pairs`. When false, the next [`Stalest::first`] rebuilds.
    ready: bool,
    upto: u64,
    /// (heard, id), stalest last. Pairs go stale (the entry was heard from again, or removed);
    /// a pair counts only while the table still holds `id` heard at exactly `heard`.
    pairs: Vec<(u64, Id)>,
    /// More pairs than this (stale ones piling up) and the next `first` starts over.
    cap: usize,
}

impl Stalest {
    /// Forget everything: the next [`Stalest::first`] rebuilds from the table.
    pub fn reset(&mut self) {
        self.ready = false;
        self.pairs.clear();
    }

    /// Entry `id` is now heard at `heard` (new, or heard from again).
    pub fn heard(&mut self, id: Id, heard: u64) {
        if !self.ready || heard > self.upto {
            return;
        }
        let pair = (heard, id);
        let at = self.pairs.partition_point(|p| *p > pair);
        self.pairs.insert(at, pair);
        if self.pairs.len() > self.cap {
            // Many stale entries heard from again by hearsay that is stale too: start over.
            self.reset();
        }
    }

    /// The stalest entry of `entries` (smallest tick last heard, then smallest id).
    pub fn first<E>(
        &mut self,
        entries: &BTreeMap<Id, E>,
        heard_of: impl Fn(&E) -> u64,
    ) -> Option<(u64, Id)> {
        for _ in 0..2 {
            if !self.ready {
                self.rebuild(entries, &heard_of);
            }
            while let Some(&(heard, id)) = self.pairs.last() {
                if entries.get(&id).map(&heard_of) == Some(heard) {
                    return Some((heard, id));
                }
                self.pairs.pop();
            }
            // Every pair was stale: no entry is heard at or before `upto` any more.
            self.ready = false;
        }
        None
    }

    fn rebuild<E>(&mut self, entries: &BTreeMap<Id, E>, heard_of: &impl Fn(&E) -> u64) {
        self.pairs.clear();
        self.ready = true;
        let mut ticks: Vec<u64> = entries.values().map(heard_of).collect();
        if ticks.is_empty() {
            self.upto = 0;
            self.ready = false;
            return;
        }
        let k = BATCH.min(ticks.len()) - 1;
        let (_, upto, _) = ticks.select_nth_unstable(k);
        self.upto = *upto;
        self.pairs.extend(
            entries
                .iter()
                .map(|(id, e)| (heard_of(e), *id))
                .filter(|(heard, _)| *heard <= self.upto),
        );
        self.pairs.sort_unstable_by(|a, b| b.cmp(a));
        self.cap = 2 * self.pairs.len() + 4 * BATCH;
    }
}
