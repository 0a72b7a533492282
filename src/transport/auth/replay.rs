//! The bounded memory of authenticators already accepted (replay protection).
//!
//! Entries live for the message window only (an older message is refused for its age anyway).
//! When more than `capacity` messages arrive within one window the oldest entries go, and
//! the cache then refuses anything not newer than the newest entry it dropped: it never
//! forgets a message it could still accept, it narrows the window instead.

use std::collections::BTreeSet;

/// Accepted `(timestamp in ms, nonce)` pairs, oldest first.
#[derive(Debug)]
pub struct Replays {
    seen: BTreeSet<(u64, u128)>,
    capacity: usize,
    /// Messages stamped at or before this were dropped for room: refused.
    floor: u64,
}

impl Replays {
    pub fn new(capacity: usize) -> Replays {
        Replays {
            seen: BTreeSet::new(),
            capacity: capacity.max(1),
            floor: 0,
        }
    }

    /// Records a message stamped `ts` with `nonce`; false if it was seen before (or may have
    /// been: it is older than what the cache still remembers). `oldest` is the oldest stamp
    /// the window still accepts.
    pub fn admit(&mut self, ts: u64, nonce: u128, oldest: u64) -> bool {
        while let Some(&(t, _)) = self.seen.first() {
            if t >= oldest {
                break;
            }
            self.seen.pop_first();
        }
        if ts <= self.floor || !self.seen.insert((ts, nonce)) {
            return false;
        }
        while self.seen.len() > self.capacity {
            if let Some((t, _)) = self.seen.pop_first() {
                self.floor = self.floor.max(t);
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_accepted_once() {
        let mut r = Replays::new(10);
        assert!(r.admit(100, 1, 0));
        assert!(!r.admit(100, 1, 0), "replayed");
        assert!(r.admit(100, 2, 0), "another nonce");
        assert!(r.admit(101, 1, 0), "another time");
    }

    #[test]
    fn entries_expire_with_the_window_and_the_cache_stays_bounded() {
        let mut r = Replays::new(3);
        for i in 0..3 {
            assert!(r.admit(10 + i, i as u128, 0));
        }
        assert!(r.admit(20, 9, 0));
        assert_eq!(r.len(), 3);
        // 10 was dropped for room: a replay of it is still refused.
        assert!(!r.admit(10, 0, 0));
        assert!(!r.admit(10, 77, 0), "not newer than what was dropped");
        // Expired entries go; the floor stays.
        assert!(r.admit(1000, 5, 990));
        assert_eq!(r.len(), 1);
        for n in 0..10_000u128 {
            r.admit(2000 + n as u64, n, 1990);
        }
        assert!(r.len() <= 3);
    }
}
