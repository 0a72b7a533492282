//! The hybrid logical clock that stamps file versions (Kulkarni et al., "Logical physical
//! clocks", 2014): a version is (physical ms, logical counter, writer id). A new version is
//! newer than every version this peer issued *or saw*, so a writer whose clock is behind still
//! overwrites what it read, and two writes in one millisecond are ordered. Versions stamped
//! further ahead than `max_skew` of this peer's clock are refused, so no copy can pin a name.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Version;
use crate::id::Id;

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A version too far in the future.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "version stamped {ahead_ms} ms ahead of this peer's clock (at most {max_ms} ms allowed): a writer's clock is wrong"
)]
pub struct ClockSkew {
    pub ahead_ms: u64,
    pub max_ms: u64,
}

pub struct Hlc {
    origin: Id,
    max_skew: Duration,
    last: Mutex<(u64, u32)>,
    /// Added to the wall clock (tests shift one peer's clock in-process).
    offset_ms: AtomicI64,
}

impl Hlc {
    pub fn new(origin: Id, max_skew: Duration) -> Hlc {
        Hlc {
            origin,
            max_skew,
            last: Mutex::new((0, 0)),
            offset_ms: AtomicI64::new(0),
        }
    }

    /// This peer's physical time in milliseconds.
    pub fn now(&self) -> u64 {
        let offset = self.offset_ms.load(Ordering::Relaxed);
        wall_millis().saturating_add_signed(offset)
    }

    /// Shifts this clock by `ms` (negative: behind). For tests of clock skew in one process.
    #[doc(hidden)]
    pub fn shift(&self, ms: i64) {
        self.offset_ms.store(ms, Ordering::Relaxed);
    }

    /// A new version, newer than everything issued or observed, at physical time `now_ms`.
    pub fn next_at(&self, now_ms: u64) -> Version {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let (ms, logical) = if now_ms > last.0 {
            (now_ms, 0)
        } else {
            match last.1.checked_add(1) {
                Some(l) => (last.0, l),
                None => (last.0 + 1, 0),
            }
        };
        *last = (ms, logical);
        Version {
            millis: ms,
            logical,
            origin: self.origin,
        }
    }

    pub fn next(&self) -> Version {
        self.next_at(self.now())
    }

    /// The version of a write that replaces `current` (the newest version the writer found at
    /// the key's holders): newer than it and than everything this clock issued, even when this
    /// peer's clock is behind the one that wrote `current`. (Not bounded by this peer's own
    /// skew limit: the holders check the result against theirs.)
    pub fn next_after_at(&self, current: Option<&Version>, now_ms: u64) -> Version {
        let mine = self.next_at(now_ms);
        match current {
            Some(c) if (c.millis, c.logical) >= (mine.millis, mine.logical) => {
                let (millis, logical) = match c.logical.checked_add(1) {
                    Some(l) => (c.millis, l),
                    None => (c.millis.saturating_add(1), 0),
                };
                self.observe_at(
                    &Version {
                        millis,
                        logical,
                        origin: self.origin,
                    },
                    now_ms,
                );
                Version {
                    millis,
                    logical,
                    origin: self.origin,
                }
            }
            _ => mine,
        }
    }

    pub fn next_after(&self, current: Option<&Version>) -> Version {
        self.next_after_at(current, self.now())
    }

    /// Whether `v` is acceptable at physical time `now_ms` (not too far ahead).
    pub fn check_at(&self, v: &Version, now_ms: u64) -> Result<(), ClockSkew> {
        let max_ms = self.max_skew.as_millis() as u64;
        let ahead_ms = v.millis.saturating_sub(now_ms);
        if ahead_ms > max_ms {
            return Err(ClockSkew { ahead_ms, max_ms });
        }
        Ok(())
    }

    pub fn check(&self, v: &Version) -> Result<(), ClockSkew> {
        self.check_at(v, self.now())
    }

    /// Moves the clock past `v` (a version seen from another peer), unless `v` is too far
    /// ahead of `now_ms` (then it is ignored: the version will be refused anyway).
    pub fn observe_at(&self, v: &Version, now_ms: u64) {
        if self.check_at(v, now_ms).is_err() {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if (v.millis, v.logical) > *last {
            *last = (v.millis, v.logical);
        }
    }

    pub fn observe(&self, v: &Version) {
        self.observe_at(v, self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn versions_increase_within_one_millisecond() {
        let c = Hlc::new(Id::ZERO, MIN);
        let a = c.next_at(1000);
        let b = c.next_at(1000);
        let d = c.next_at(999); // the clock stepped back
        assert!(a < b && b < d, "{a:?} {b:?} {d:?}");
        assert_eq!(c.next_at(2000).logical, 0);
    }

    #[test]
    fn a_slow_writer_still_overwrites_what_it_saw() {
        let fast = Hlc::new(Id::from_parts(0, 9), MIN);
        let slow = Hlc::new(Id::from_parts(0, 1), MIN);
        let now = 10_000_000;
        let seen = fast.next_at(now);
        // The slow peer's clock is 10 minutes behind.
        let behind = now - 600_000;
        assert!(slow.next_at(behind) < seen, "a plain clock loses the write");
        // Observing is bounded by its own skew limit: 10 minutes ahead is ignored...
        slow.observe_at(&seen, behind);
        assert!(slow.next_at(behind) < seen);
        // ...but a write that replaces what it found is newer than that, however slow.
        let v = slow.next_after_at(Some(&seen), behind);
        assert!(v > seen, "{v:?} {seen:?}");
        assert!(slow.next_after_at(Some(&v), behind) > v);
        // A newer local clock wins over an old version.
        let old = Version {
            millis: 5,
            logical: 0,
            origin: Id::ZERO,
        };
        assert_eq!(slow.next_after_at(Some(&old), now).millis, now);
    }

    #[test]
    fn versions_far_in_the_future_are_refused_and_not_observed() {
        let c = Hlc::new(Id::ZERO, MIN);
        let future = Version {
            millis: 1_000 + 3_600_000,
            logical: 0,
            origin: Id::ZERO,
        };
        assert!(c.check_at(&future, 1_000).is_err());
        c.observe_at(&future, 1_000);
        assert!(c.next_at(1_000).millis < future.millis);
        let near = Version {
            millis: 1_000 + 59_000,
            ..future
        };
        assert!(c.check_at(&near, 1_000).is_ok());
        let pinned = Version {
            millis: u64::MAX,
            ..future
        };
        assert!(c.check_at(&pinned, 1_000).is_err());
    }
}
