//! Unit tests of the founder machine against a scripted world: every peer's behaviour is a
//! function of virtual time, an answer costs `ANSWER`, a dead peer costs `TIMEOUT`.

use std::time::Duration;

use super::*;

const ANSWER: Duration = Duration::from_millis(10);
const TIMEOUT: Duration = Duration::from_millis(200);
const CREATE_AFTER: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(1);
const FRESH: RingId = RingId(0xf);
const R: RingId = RingId(0x42);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Is {
    Member,
    NotMember(Option<RingId>),
    /// Down; its name resolves (or not).
    Down {
        resolves: bool,
    },
    Erring,
}

fn a(s: &str) -> Address {
    Address::new(s)
}

fn pods(n: usize) -> Vec<Address> {
    (0..n).map(|i| a(&format!("pod-{i}:7000"))).collect()
}

fn config(me: &str, seeds: Vec<Address>, remembered: Option<RingId>) -> BootstrapConfig {
    BootstrapConfig {
        me: a(me),
        bootstrap: None,
        seeds,
        remembered: remembered.map(|r| Remembered {
            ring_id: Some(r),
            peers: vec![a("pod-3:7000")],
        }),
        fresh_ring_id: FRESH,
        create_after: CREATE_AFTER,
        join_retry_interval: RETRY,
        answer_timeout: TIMEOUT,
    }
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Created(RingId, FoundReason),
    Joined(Address),
    StillTrying,
}

struct Run {
    end: End,
    at: Duration,
    tried: Vec<(Duration, Address)>,
}

/// Drives the machine until it is done or `limit` passes.
fn run(config: BootstrapConfig, limit: Duration, world: impl Fn(Duration, &Address) -> Is) -> Run {
    let mut b = Bootstrap::new(config);
    let mut now = Duration::ZERO;
    let mut tried = Vec::new();
    let mut action = b.start(now);
    let mut last_join = None;
    while now <= limit {
        action = match action {
            Action::TryJoin(t) => {
                tried.push((now, t.clone()));
                let outcome = match world(now, &t) {
                    Is::Member => JoinOutcome::Joined,
                    Is::NotMember(remembers) => JoinOutcome::NotMember { remembers },
                    Is::Down { .. } => JoinOutcome::Unreachable,
                    Is::Erring => JoinOutcome::Other("boom".into()),
                };
                now += if outcome == JoinOutcome::Unreachable {
                    TIMEOUT
                } else {
                    ANSWER
                };
                if outcome == JoinOutcome::Joined {
                    last_join = Some(t);
                }
                b.on_join(now, outcome)
            }
            Action::CheckResolves(t) => {
                let resolves = !matches!(world(now, &t), Is::Down { resolves: false });
                b.on_resolves(now, resolves)
            }
            Action::Wait(d) => {
                now += d;
                b.on_wake(now)
            }
            Action::Create(r) => {
                let reason = b.founded().expect("a reason");
                assert!(b.is_done());
                return Run {
                    end: End::Created(r, reason),
                    at: now,
                    tried,
                };
            }
            Action::Done => {
                return Run {
                    end: End::Joined(last_join.expect("joined through someone")),
                    at: now,
                    tried,
                };
            }
        };
    }
    Run {
        end: End::StillTrying,
        at: now,
        tried,
    }
}

const LONG: Duration = Duration::from_secs(120);

#[test]
fn a_standalone_peer_founds_at_once_or_after_its_remembered_peers() {
    let mut c = config("solo:7000", vec![], None);
    let r = run(c.clone(), LONG, |_, _| Is::Down { resolves: true });
    assert_eq!(r.end, End::Created(FRESH, FoundReason::NoTargets));
    assert_eq!(r.at, Duration::ZERO);
    assert!(r.tried.is_empty());

    c.remembered = Some(Remembered {
        ring_id: Some(R),
        peers: vec![a("old:7000")],
    });
    let r = run(c.clone(), LONG, |_, _| Is::NotMember(None));
    assert_eq!(r.end, End::Created(R, FoundReason::NoRingOutThere));
    // Standalone may found on a time-out even while it remembers a ring.
    let r = run(c, LONG, |_, _| Is::Down { resolves: true });
    assert_eq!(r.end, End::Created(R, FoundReason::TimedOut));
    assert!(
        r.at >= CREATE_AFTER && r.at < CREATE_AFTER + 2 * RETRY,
        "{:?}",
        r.at
    );
}

#[test]
fn the_first_seed_founds_at_once_when_every_seed_is_a_non_member_or_gone() {
    let seeds = pods(3);
    let r = run(config("pod-0:7000", seeds.clone(), None), LONG, |_, _| {
        Is::NotMember(None)
    });
    assert_eq!(r.end, End::Created(FRESH, FoundReason::NoRingOutThere));
    assert_eq!(r.tried.len(), 4, "two rounds: pod-1, pod-2");
    assert!(r.at >= RETRY && r.at < 2 * RETRY, "{:?}", r.at);
    // pod-2 was scaled away (does not resolve): still no ring out there.
    let r = run(
        config("pod-0:7000", seeds.clone(), Some(R)),
        LONG,
        |_, t| {
            if t.as_str() == "pod-2:7000" {
                Is::Down { resolves: false }
            } else {
                Is::NotMember(Some(R))
            }
        },
    );
    assert_eq!(r.end, End::Created(R, FoundReason::NoRingOutThere));
    assert!(r.at < 2 * RETRY, "{:?}", r.at);
}

#[test]
fn nobody_answering_is_not_an_empty_ring() {
    let seeds = pods(3);
    // Nothing resolves (a DNS outage): a fresh founder waits create_after ...
    let gone = |_: Duration, _: &Address| Is::Down { resolves: false };
    let r = run(config("pod-0:7000", seeds.clone(), None), LONG, gone);
    assert_eq!(r.end, End::Created(FRESH, FoundReason::TimedOut));
    assert!(r.at >= CREATE_AFTER);
    // ... and a founder that remembers a ring never founds on a time-out.
    let r = run(config("pod-0:7000", seeds, Some(R)), LONG, gone);
    assert_eq!(r.end, End::StillTrying);
}

#[test]
fn a_fresh_first_seed_founds_after_create_after_when_a_seed_does_not_answer() {
    let seeds = pods(3);
    let r = run(config("pod-0:7000", seeds, None), LONG, |_, t| {
        if t.as_str() == "pod-1:7000" {
            Is::Down { resolves: true }
        } else {
            Is::NotMember(None)
        }
    });
    assert_eq!(r.end, End::Created(FRESH, FoundReason::TimedOut));
    assert!(
        r.at >= CREATE_AFTER && r.at < CREATE_AFTER + 2 * RETRY,
        "{:?}",
        r.at
    );
}

#[test]
fn a_first_seed_that_remembers_a_ring_never_founds_on_a_time_out_and_joins_a_member() {
    let seeds = pods(3);
    let r = run(
        config("pod-0:7000", seeds.clone(), Some(R)),
        LONG,
        |_, t| {
            if t.as_str() == "pod-1:7000" {
                Is::Down { resolves: true }
            } else {
                Is::NotMember(Some(R))
            }
        },
    );
    assert_eq!(r.end, End::StillTrying);
    // pod-1 refounded; pod-0 comes back with its memory: it joins.
    let r = run(
        config("pod-0:7000", seeds.clone(), Some(R)),
        LONG,
        |_, t| match t.as_str() {
            "pod-1:7000" => Is::Member,
            _ => Is::NotMember(Some(R)),
        },
    );
    assert_eq!(r.end, End::Joined(a("pod-1:7000")));
    // Fresh disk: it joins too, it does not found.
    let r = run(config("pod-0:7000", seeds, None), LONG, |_, t| {
        match t.as_str() {
            "pod-2:7000" => Is::Member,
            _ => Is::Down { resolves: true },
        }
    });
    assert_eq!(r.end, End::Joined(a("pod-2:7000")));
}

#[test]
fn the_bootstrap_being_oneself_makes_the_founder() {
    let mut c = config("boot:7000", vec![], None);
    c.bootstrap = Some(a("boot:7000"));
    let b = Bootstrap::new(c.clone());
    assert!(b.is_founder());
    assert!(b.targets().is_empty());
    let r = run(c, LONG, |_, _| Is::Member);
    assert_eq!(r.end, End::Created(FRESH, FoundReason::NoTargets));
}

#[test]
fn an_erring_target_means_there_may_be_a_ring() {
    let seeds = pods(3);
    let r = run(config("pod-0:7000", seeds, Some(R)), LONG, |_, t| {
        match t.as_str() {
            "pod-1:7000" => Is::Erring,
            _ => Is::NotMember(None),
        }
    });
    assert_eq!(r.end, End::StillTrying);
}

#[test]
fn non_seeds_and_seeds_without_memory_never_found() {
    let seeds = pods(3);
    let down = |_: Duration, t: &Address| {
        if t.as_str() == "pod-0:7000" {
            Is::Down { resolves: true }
        } else {
            Is::NotMember(Some(R))
        }
    };
    let r = run(config("pod-9:7000", seeds.clone(), Some(R)), LONG, down);
    assert_eq!(r.end, End::StillTrying);
    let r = run(config("pod-1:7000", seeds, None), LONG, down);
    assert_eq!(r.end, End::StillTrying);
}

#[test]
fn the_second_seed_refounds_the_remembered_ring_when_the_first_stays_down() {
    let seeds = pods(3);
    let r = run(config("pod-1:7000", seeds, Some(R)), LONG, |_, t| {
        if t.as_str() == "pod-0:7000" {
            Is::Down { resolves: true }
        } else {
            Is::NotMember(Some(R))
        }
    });
    assert_eq!(r.end, End::Created(R, FoundReason::Refound));
    assert!(
        r.at >= CREATE_AFTER && r.at < CREATE_AFTER + 3 * RETRY,
        "{:?}",
        r.at
    );
    // The confirmation: pod-0 was tried once more right before founding.
    assert_eq!(r.tried.last().map(|t| t.1.clone()), Some(a("pod-0:7000")));
    // A first seed that no longer resolves is down as well.
    let r = run(config("pod-1:7000", pods(3), Some(R)), LONG, |_, t| {
        if t.as_str() == "pod-0:7000" {
            Is::Down { resolves: false }
        } else {
            Is::NotMember(None)
        }
    });
    assert_eq!(r.end, End::Created(R, FoundReason::Refound));
}

#[test]
fn only_the_lowest_live_seed_refounds() {
    let seeds = pods(3);
    // pod-1 is alive (not a member yet): pod-2 never refounds.
    let r = run(
        config("pod-2:7000", seeds.clone(), Some(R)),
        LONG,
        |_, t| match t.as_str() {
            "pod-0:7000" => Is::Down { resolves: true },
            _ => Is::NotMember(Some(R)),
        },
    );
    assert_eq!(r.end, End::StillTrying);
    // Both pod-0 and pod-1 are down for good: pod-2 refounds.
    let r = run(
        config("pod-2:7000", seeds.clone(), Some(R)),
        LONG,
        |_, t| match t.as_str() {
            "pod-0:7000" | "pod-1:7000" => Is::Down { resolves: true },
            _ => Is::NotMember(Some(R)),
        },
    );
    assert_eq!(r.end, End::Created(R, FoundReason::Refound));
    // pod-1 answers only now and then (it was restarting): its streak starts over each time.
    let r = run(
        config("pod-2:7000", seeds, Some(R)),
        LONG,
        |now, t| match t.as_str() {
            "pod-0:7000" => Is::Down { resolves: true },
            "pod-1:7000" if now.as_millis() % 5000 < 1500 => Is::NotMember(None),
            "pod-1:7000" => Is::Down { resolves: true },
            _ => Is::NotMember(Some(R)),
        },
    );
    assert_eq!(r.end, End::StillTrying);
}

#[test]
fn refounding_needs_an_answer_no_errors_and_no_other_memory() {
    let seeds = pods(3);
    let cases: [(&str, Is); 3] = [
        ("nobody answers", Is::Down { resolves: true }),
        ("an erring peer", Is::Erring),
        ("another ring remembered", Is::NotMember(Some(RingId(7)))),
    ];
    for (what, others) in cases {
        let r = run(
            config("pod-1:7000", seeds.clone(), Some(R)),
            LONG,
            |_, t| match t.as_str() {
                "pod-0:7000" => Is::Down { resolves: true },
                "pod-2:7000" => others,
                _ => Is::Down { resolves: true },
            },
        );
        assert_eq!(r.end, End::StillTrying, "{what}");
    }
}

/// Plays one round of pod-1 (remembering R; pod-0 down, the others not members) from `action`:
/// returns how the round ended (a wait, or the confirmation `TryJoin(pod-0)`) and the time.
fn play_round(b: &mut Bootstrap, mut now: Duration, mut action: Action) -> (Action, Duration) {
    loop {
        action = match action {
            Action::TryJoin(t) if t.as_str() == "pod-0:7000" => {
                now += TIMEOUT;
                b.on_join(now, JoinOutcome::Unreachable)
            }
            Action::TryJoin(_) => {
                now += ANSWER;
                let next = b.on_join(now, JoinOutcome::NotMember { remembers: Some(R) });
                if matches!(&next, Action::TryJoin(t) if t.as_str() == "pod-0:7000") {
                    return (next, now);
                }
                next
            }
            Action::CheckResolves(_) => b.on_resolves(now, true),
            other => return (other, now),
        };
    }
}

/// Plays rounds until one ends in the confirmation.
fn until_confirmation(b: &mut Bootstrap) -> (Action, Duration) {
    let first = b.start(Duration::ZERO);
    let (mut action, mut now) = play_round(b, Duration::ZERO, first);
    loop {
        match action {
            Action::Wait(d) => {
                now += d;
                let next = b.on_wake(now);
                (action, now) = play_round(b, now, next);
            }
            other => return (other, now),
        }
    }
}

#[test]
fn the_refound_is_confirmed_by_one_more_try_of_the_peers_ahead() {
    // Confirmed: pod-0 is still down.
    let mut b = Bootstrap::new(config("pod-1:7000", pods(3), Some(R)));
    let (action, now) = until_confirmation(&mut b);
    assert_eq!(action, Action::TryJoin(a("pod-0:7000")));
    assert!(now >= CREATE_AFTER, "{now:?}");
    assert_eq!(
        b.on_join(now + TIMEOUT, JoinOutcome::Unreachable),
        Action::Create(R)
    );
    assert_eq!(b.founded(), Some(FoundReason::Refound));

    // pod-0 came back during the round: the confirmation hears it and nobody founds.
    let mut b = Bootstrap::new(config("pod-1:7000", pods(3), Some(R)));
    let (_, now) = until_confirmation(&mut b);
    let back = JoinOutcome::NotMember { remembers: Some(R) };
    let mut now = now + ANSWER;
    assert_eq!(b.on_join(now, back), Action::Wait(RETRY));
    // Its streak starts over: the next rounds (pod-0 down again) end in plain waits.
    for _ in 0..3 {
        now += RETRY;
        let next = b.on_wake(now);
        let (action, t) = play_round(&mut b, now, next);
        assert_eq!(action, Action::Wait(RETRY));
        now = t;
    }

    // pod-0 came back as a member: we join it.
    let mut b = Bootstrap::new(config("pod-1:7000", pods(3), Some(R)));
    let (_, now) = until_confirmation(&mut b);
    assert_eq!(b.on_join(now + ANSWER, JoinOutcome::Joined), Action::Done);
    assert_eq!(b.founded(), None);
}

#[test]
fn an_unreadable_remembered_id_blocks_time_outs_and_founds_fresh() {
    let mut c = config("pod-0:7000", pods(2), None);
    c.remembered = Some(Remembered {
        ring_id: None,
        peers: vec![],
    });
    let r = run(c.clone(), LONG, |_, _| Is::Down { resolves: true });
    assert_eq!(r.end, End::StillTrying);
    let r = run(c, LONG, |_, _| Is::NotMember(None));
    assert_eq!(r.end, End::Created(FRESH, FoundReason::NoRingOutThere));
    // ... and never counts for a refound.
    let mut c = config("pod-1:7000", pods(2), None);
    c.remembered = Some(Remembered {
        ring_id: None,
        peers: vec![],
    });
    assert!(!Bootstrap::new(c).may_refound());
}

#[test]
fn targets_are_bootstrap_seeds_then_memory_without_self_or_duplicates() {
    let mut c = config("pod-1:7000", pods(3), Some(R));
    c.bootstrap = Some(a("pod-0:7000"));
    let b = Bootstrap::new(c);
    assert_eq!(
        b.targets(),
        &[a("pod-0:7000"), a("pod-2:7000"), a("pod-3:7000")]
    );
    assert!(!b.is_founder());
    assert!(b.may_refound());
    assert_eq!(b.ring_id(), R);
}

#[test]
fn calls_out_of_turn_are_ignored() {
    let mut b = Bootstrap::new(config("pod-0:7000", pods(2), None));
    let first = b.start(Duration::ZERO);
    assert_eq!(first, Action::TryJoin(a("pod-1:7000")));
    assert_eq!(b.on_resolves(Duration::ZERO, true), first);
    assert_eq!(b.on_wake(Duration::ZERO), first);
    assert_eq!(b.start(Duration::ZERO), first);
    let next = b.on_join(ANSWER, JoinOutcome::Joined);
    assert_eq!(next, Action::Done);
    assert_eq!(b.on_join(ANSWER, JoinOutcome::Unreachable), Action::Done);
    assert_eq!(b.rounds(), 0);
}

#[test]
fn the_founder_looks_twice_before_deciding_the_ring_is_gone() {
    // pod-1 refounds while pod-0 finishes its first empty round: pod-0 joins it.
    let r = run(
        config("pod-0:7000", pods(3), Some(R)),
        LONG,
        |now, t| match t.as_str() {
            "pod-1:7000" if now > Duration::from_millis(100) => Is::Member,
            _ => Is::NotMember(Some(R)),
        },
    );
    assert_eq!(r.end, End::Joined(a("pod-1:7000")));
    // The second look waits at least two answer time-outs, however short the retry interval.
    let mut c = config("pod-0:7000", pods(2), None);
    c.join_retry_interval = Duration::from_millis(10);
    c.answer_timeout = Duration::from_secs(3);
    let mut b = Bootstrap::new(c);
    assert_eq!(b.start(Duration::ZERO), Action::TryJoin(a("pod-1:7000")));
    let empty = JoinOutcome::NotMember { remembers: None };
    assert_eq!(
        b.on_join(ANSWER, empty.clone()),
        Action::Wait(Duration::from_secs(6))
    );
    assert_eq!(
        b.on_wake(Duration::from_secs(6)),
        Action::TryJoin(a("pod-1:7000"))
    );
    assert_eq!(
        b.on_join(Duration::from_secs(7), empty),
        Action::Create(FRESH)
    );
    assert_eq!(b.rounds(), 2);
}
