//! Becoming a ring member: the founder rule as a sans-io state machine.
//!
//! A peer runs one [`Bootstrap`] from start until it is a member. The driver (the runtime, or
//! the simulator) feeds it the outcome of every action it asked for and the time since start
//! (`now`; no clock inside), and executes the [`Action`] each call returns:
//! [`Action::TryJoin`] (join through that peer, report a [`JoinOutcome`] with
//! [`Bootstrap::on_join`]), [`Action::CheckResolves`] (does the name still resolve? answer with
//! [`Bootstrap::on_resolves`]), [`Action::Create`] (found a ring with this id), [`Action::Wait`]
//! (call [`Bootstrap::on_wake`] after that long) and [`Action::Done`].
//!
//! # Targets
//! The peers to try, in this order and without duplicates or ourselves: `bootstrap`, the
//! `seeds` (the same list on every peer, pod-0 first), then the remembered neighbours. One
//! *round* tries every target once; between rounds the machine waits `join_retry_interval`.
//! The first target that lets us in ends it ([`JoinOutcome::Joined`] → [`Action::Done`]).
//!
//! # Rule 1: the founder (what the runtime always did)
//! - The *founder* is the peer for which no bootstrap and no seeds are configured
//!   (*standalone*), or which advertises the first seed, or whose `bootstrap` is itself.
//! - "No ring out there" in a round: there is at least one target, and every target answered
//!   [`JoinOutcome::NotMember`] or was [`JoinOutcome::Unreachable`] with a name that no longer
//!   resolves (a pod scaled away), and at least one answered NotMember (so that a DNS outage is
//!   not mistaken for an empty ring).
//! - At the end of a round the founder creates when: there are no targets at all, or there is
//!   no ring out there, or `create_after` has passed since start and it may found on a time-out.
//!   It may found on a time-out only when standalone or when it remembers no ring (the others
//!   may just be unreachable; a remembered ring is never refounded on a time-out).
//! - One deliberate refinement of the runtime's old rule: "no ring out there" must hold for
//!   two consecutive rounds, the second starting `max(join_retry_interval, 2·answer_timeout)`
//!   after the first ended (the runtime founded after one). This closes the race with rule 2
//!   below: a refounder creates at most `answer_timeout` after its last look at the founder,
//!   so a founder that came up unseen asks the refounder again after it created, and joins.
//!   Without it the simulator found two rings in about 4 % of full restarts where pod-0
//!   returned near the refound moment.
//!
//! # Rule 2: refounding without the first seed (new)
//! After a full restart the ring must form again with its remembered id even if pod-0 never
//! comes back. A peer *refounds* its remembered ring `R` at the end of a round when all hold:
//! 1. it is not the founder, it advertises the seed at position `k >= 1` of `seeds`, and it
//!    remembers `R` (a remembered state whose ring id is unreadable does not count);
//! 2. every peer *ahead* of it — the configured `bootstrap` (if not itself) and every seed
//!    before position `k` — has been *down* for at least `create_after`: every one of at least
//!    [`MIN_DOWN_ATTEMPTS`] consecutive attempts, the first of them at least `create_after`
//!    ago, was [`JoinOutcome::Unreachable`] (whether or not the name still resolves); any
//!    answer at all ends the streak;
//! 3. in this round no target answered anything but NotMember (no
//!    [`JoinOutcome::Other`]: a peer that errs may be a member we cannot use), at least one
//!    answered NotMember (we are not alone behind a broken network), and no NotMember answer
//!    remembers a ring other than `R` (a stale memory must not decide);
//! 4. a last *confirmation* right before founding: every peer ahead is tried once more and
//!    each is still Unreachable. Any answer aborts (a member lets us in; a NotMember answer ends
//!    that peer's streak) and the next round starts after the usual wait.
//!
//! So exactly one peer refounds: the lowest-position seed that is alive. Each seed behind it
//! sees it answer (NotMember, then as a member it lets them in), so their streaks never grow;
//! non-seeds never found. A seed that comes back after the refound — pod-0 included — finds a
//! member among its targets (the refounder is a seed every peer tries) and joins: pod-0 founds
//! only when every target answers NotMember or is gone, or on a time-out without a remembered
//! ring, never while a seed answers as a member.
//!
//! Races: two seeds at positions `j < k` cannot both refound: `k` needs `j` silent for
//! `create_after`, while `j` needs `create_after` of its own since it started, during which it
//! answers `k` (or, once `k` created, `k` lets it in). The founder and a refounder: see the
//! two-round refinement of rule 1. Not closed here: a partition that hides a live seed from
//! the one behind it for `create_after` while both see answering non-members (both rings carry
//! the id `R`, so the same-id unification of DESIGN.md §11 can zip them). A peer that alone
//! survived its ring (nobody answers at all) never refounds.

use std::time::Duration;

use super::message::{Address, RingId};

/// Consecutive failed attempts that, with `create_after`, make a peer ahead count as down.
pub const MIN_DOWN_ATTEMPTS: u32 = 3;

/// What a peer's store directory remembers of its last ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remembered {
    /// `None` when the remembered id could not be read: still a remembered ring for rule 1.
    pub ring_id: Option<RingId>,
    /// Recent neighbours.
    pub peers: Vec<Address>,
}

/// Everything the machine needs to know at construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapConfig {
    /// Our own advertised address.
    pub me: Address,
    pub bootstrap: Option<Address>,
    /// Ordered, the same on every peer, pod-0 first.
    pub seeds: Vec<Address>,
    pub remembered: Option<Remembered>,
    /// The id of a ring founded fresh (when nothing readable is remembered).
    pub fresh_ring_id: RingId,
    pub create_after: Duration,
    pub join_retry_interval: Duration,
    /// The longest a [`Action::TryJoin`] takes to report [`JoinOutcome::Unreachable`] (the
    /// driver's RPC time-out).
    pub answer_timeout: Duration,
}

/// The outcome of one join attempt through a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// We are a member now (also: we already were one).
    Joined,
    /// The target is alive but not in a ring; it remembers this ring id, if it says.
    NotMember { remembers: Option<RingId> },
    /// No answer (time-out, refused connection).
    Unreachable,
    /// Any other failure (identifier in use, a later hop failed, wrong ring, ...).
    Other(String),
}

/// What the driver should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    TryJoin(Address),
    CheckResolves(Address),
    /// Found a ring with this id, then the machine is done.
    Create(RingId),
    /// Call [`Bootstrap::on_wake`] after this long.
    Wait(Duration),
    Done,
}

/// Why the machine founded a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoundReason {
    /// Rule 1: there was nobody to try.
    NoTargets,
    /// Rule 1: every target is a non-member or gone.
    NoRingOutThere,
    /// Rule 1: `create_after` passed without a member answering.
    TimedOut,
    /// Rule 2: every peer ahead is down and the remembered ring is refounded.
    Refound,
}

impl std::fmt::Display for FoundReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FoundReason::NoTargets => "no bootstrap, seed or remembered peer to ask",
            FoundReason::NoRingOutThere => {
                "every peer asked is up but in no ring, or no longer exists (asked twice)"
            }
            FoundReason::TimedOut => "no ring member answered within ring.create_after",
            FoundReason::Refound => {
                "every seed ahead of this one has been down for ring.create_after"
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    NotStarted,
    /// Waiting for the outcome of trying `targets[i]`.
    Joining(usize),
    /// Waiting for whether `targets[i]` resolves.
    Resolving(usize),
    /// Waiting for the outcome of confirming `ahead[j]` is down (rule 2.4).
    Confirming(usize),
    Waiting,
    Done,
}

/// The consecutive failed attempts of one target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Streak {
    since: Option<Duration>,
    failures: u32,
}

/// What one round found out.
#[derive(Clone, Copy, Debug, Default)]
struct Round {
    answered_not_member: bool,
    /// Every target so far answered NotMember or does not resolve.
    no_ring_out_there: bool,
    /// Some target answered something other than NotMember (rule 2.3).
    other_answer: bool,
    /// Some NotMember answer remembers another ring (rule 2.3).
    other_memory: bool,
}

/// The founder machine of one peer.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    config: BootstrapConfig,
    targets: Vec<Address>,
    /// Indices into `targets` of the peers ahead of us (rule 2.2), for a seed at position >= 1.
    ahead: Vec<usize>,
    standalone: bool,
    founder: bool,
    ring_id: RingId,
    started: Duration,
    step: Step,
    round: Round,
    rounds: u64,
    /// The previous round found no ring out there (rule 1 refinement).
    seen_empty: bool,
    streaks: Vec<Streak>,
    founded: Option<FoundReason>,
}

impl Bootstrap {
    pub fn new(config: BootstrapConfig) -> Bootstrap {
        let me = &config.me;
        let standalone = config.bootstrap.is_none() && config.seeds.is_empty();
        let founder =
            standalone || config.seeds.first() == Some(me) || config.bootstrap.as_ref() == Some(me);
        let mut targets: Vec<Address> = Vec::new();
        let configured = config.bootstrap.iter().chain(&config.seeds);
        let recalled = config.remembered.iter().flat_map(|r| r.peers.iter());
        for t in configured.chain(recalled) {
            if t != me && !targets.contains(t) {
                targets.push(t.clone());
            }
        }
        let mut ahead = Vec::new();
        if let Some(k) = config.seeds.iter().position(|s| s == me)
            && k > 0
        {
            for a in config.bootstrap.iter().chain(&config.seeds[..k]) {
                if let Some(i) = targets.iter().position(|t| t == a)
                    && !ahead.contains(&i)
                {
                    ahead.push(i);
                }
            }
        }
        let ring_id = config
            .remembered
            .as_ref()
            .and_then(|r| r.ring_id)
            .unwrap_or(config.fresh_ring_id);
        let streaks = vec![Streak::default(); targets.len()];
        Bootstrap {
            config,
            targets,
            ahead,
            standalone,
            founder,
            ring_id,
            started: Duration::ZERO,
            step: Step::NotStarted,
            round: Round::default(),
            rounds: 0,
            seen_empty: false,
            streaks,
            founded: None,
        }
    }

    /// The peers tried each round, in order.
    pub fn targets(&self) -> &[Address] {
        &self.targets
    }

    /// Whether this peer founds under rule 1.
    pub fn is_founder(&self) -> bool {
        self.founder
    }

    /// Whether this peer may refound its remembered ring under rule 2.
    pub fn may_refound(&self) -> bool {
        !self.founder && !self.ahead.is_empty() && self.remembered_id().is_some()
    }

    /// The ring id a founded ring gets: the remembered one, else the fresh one.
    pub fn ring_id(&self) -> RingId {
        self.ring_id
    }

    /// Completed rounds.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Whether `ring_id` is the ring this peer's disk remembers.
    pub fn remembers(&self, ring_id: RingId) -> bool {
        self.remembered_id() == Some(ring_id)
    }

    /// Why the machine asked to create a ring, once it did.
    pub fn founded(&self) -> Option<FoundReason> {
        self.founded
    }

    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// Starts the first round; `now` is the time since the peer started.
    pub fn start(&mut self, now: Duration) -> Action {
        if self.step != Step::NotStarted {
            return self.pending();
        }
        self.started = now;
        self.begin_round(now)
    }

    /// The outcome of the [`Action::TryJoin`] asked for last.
    pub fn on_join(&mut self, now: Duration, outcome: JoinOutcome) -> Action {
        match self.step {
            Step::Joining(i) => {
                if outcome == JoinOutcome::Joined {
                    return self.finish();
                }
                match outcome {
                    JoinOutcome::Unreachable => {
                        self.streak_failed(i, now);
                        self.step = Step::Resolving(i);
                        return Action::CheckResolves(self.targets[i].clone());
                    }
                    JoinOutcome::NotMember { remembers } => {
                        self.streaks[i] = Streak::default();
                        self.round.answered_not_member = true;
                        if remembers.is_some_and(|r| Some(r) != self.remembered_id()) {
                            self.round.other_memory = true;
                        }
                    }
                    JoinOutcome::Other(_) | JoinOutcome::Joined => {
                        self.streaks[i] = Streak::default();
                        self.round.no_ring_out_there = false;
                        self.round.other_answer = true;
                    }
                }
                self.next_target(i + 1, now)
            }
            Step::Confirming(j) => match outcome {
                JoinOutcome::Joined => self.finish(),
                JoinOutcome::Unreachable => {
                    let i = self.ahead[j];
                    self.streak_failed(i, now);
                    self.confirm(j + 1)
                }
                JoinOutcome::NotMember { .. } | JoinOutcome::Other(_) => {
                    let i = self.ahead[j];
                    self.streaks[i] = Streak::default();
                    self.wait()
                }
            },
            _ => self.pending(),
        }
    }

    /// Whether the target of the last [`Action::CheckResolves`] still resolves.
    pub fn on_resolves(&mut self, now: Duration, resolves: bool) -> Action {
        let Step::Resolving(i) = self.step else {
            return self.pending();
        };
        if resolves {
            // Alive somewhere, or not: we cannot tell that the ring is gone.
            self.round.no_ring_out_there = false;
        }
        self.next_target(i + 1, now)
    }

    /// The [`Action::Wait`] is over: the next round.
    pub fn on_wake(&mut self, now: Duration) -> Action {
        if self.step != Step::Waiting {
            return self.pending();
        }
        self.begin_round(now)
    }

    /// The action the machine is waiting on (what the last call returned).
    pub fn pending(&self) -> Action {
        match self.step {
            Step::NotStarted | Step::Waiting => Action::Wait(self.config.join_retry_interval),
            Step::Joining(i) => Action::TryJoin(self.targets[i].clone()),
            Step::Resolving(i) => Action::CheckResolves(self.targets[i].clone()),
            Step::Confirming(j) => Action::TryJoin(self.targets[self.ahead[j]].clone()),
            Step::Done => Action::Done,
        }
    }

    fn remembered_id(&self) -> Option<RingId> {
        self.config.remembered.as_ref().and_then(|r| r.ring_id)
    }

    fn begin_round(&mut self, now: Duration) -> Action {
        self.round = Round {
            no_ring_out_there: !self.targets.is_empty(),
            ..Round::default()
        };
        self.next_target(0, now)
    }

    fn next_target(&mut self, i: usize, now: Duration) -> Action {
        if i < self.targets.len() {
            self.step = Step::Joining(i);
            return Action::TryJoin(self.targets[i].clone());
        }
        self.rounds += 1;
        self.end_round(now)
    }

    fn streak_failed(&mut self, i: usize, now: Duration) {
        let s = &mut self.streaks[i];
        s.since.get_or_insert(now);
        s.failures = s.failures.saturating_add(1);
    }

    fn end_round(&mut self, now: Duration) -> Action {
        let round = self.round;
        if self.founder {
            let all_not_member = round.no_ring_out_there && round.answered_not_member;
            let waited = now.saturating_sub(self.started) >= self.config.create_after;
            let may_time_out = self.standalone || self.config.remembered.is_none();
            let seen_before = std::mem::replace(&mut self.seen_empty, all_not_member);
            let reason = if self.targets.is_empty() {
                Some(FoundReason::NoTargets)
            } else if all_not_member && seen_before {
                Some(FoundReason::NoRingOutThere)
            } else if waited && may_time_out {
                Some(FoundReason::TimedOut)
            } else {
                None
            };
            return match reason {
                Some(reason) => self.create(reason),
                None if all_not_member => {
                    self.step = Step::Waiting;
                    let wait = self
                        .config
                        .join_retry_interval
                        .max(self.config.answer_timeout.saturating_mul(2));
                    Action::Wait(wait)
                }
                None => self.wait(),
            };
        }
        let ahead_down = self.ahead.iter().all(|&i| {
            let s = self.streaks[i];
            s.failures >= MIN_DOWN_ATTEMPTS
                && s.since
                    .is_some_and(|t| now.saturating_sub(t) >= self.config.create_after)
        });
        if self.may_refound()
            && ahead_down
            && round.answered_not_member
            && !round.other_answer
            && !round.other_memory
        {
            return self.confirm(0);
        }
        self.wait()
    }

    /// Rule 2.4: tries the peers ahead once more, from `j` on; founds when all are down.
    fn confirm(&mut self, j: usize) -> Action {
        if j < self.ahead.len() {
            self.step = Step::Confirming(j);
            return Action::TryJoin(self.targets[self.ahead[j]].clone());
        }
        self.create(FoundReason::Refound)
    }

    fn create(&mut self, reason: FoundReason) -> Action {
        self.founded = Some(reason);
        self.step = Step::Done;
        Action::Create(self.ring_id)
    }

    fn wait(&mut self) -> Action {
        self.step = Step::Waiting;
        Action::Wait(self.config.join_retry_interval)
    }

    fn finish(&mut self) -> Action {
        self.step = Step::Done;
        Action::Done
    }
}

#[cfg(test)]
#[path = "bootstrap_tests.rs"]
mod tests;
