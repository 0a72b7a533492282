//! The maintenance timers: one task per timer that asks the driver to tick the node.

use std::sync::Arc;

use tracing::{Instrument, Span, info_span};

use super::Service;
use super::commands::Command;
use crate::ring::Timer;
use crate::telemetry;

/// Starts the timers; they end when the service stops.
pub(super) fn start(svc: &Arc<Service>) {
    let ring = &svc.config.ring;
    for (timer, every) in [
        (Timer::Stabilize, ring.stabilize_interval),
        (Timer::FixFingers, ring.fix_fingers_interval),
        (Timer::CheckPredecessor, ring.check_predecessor_interval),
    ] {
        let svc = Arc::clone(svc);
        let mut stop = svc.shutdown.subscribe();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stop.changed() => return,
                }
                // A full mailbox delays the tick (the interval then skips the missed ones).
                let span = tick_span(&svc, timer);
                if svc
                    .mailbox
                    .send(Command::Tick { timer })
                    .instrument(span)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// The span of one maintenance tick: the root of the requests the tick sends.
fn tick_span(svc: &Service, timer: Timer) -> Span {
    let span = match timer {
        // The round is only read when the span is enabled (tracing on).
        Timer::Stabilize => info_span!(
            "chord.stabilize",
            chord.round = svc.status().stabilize_rounds + 1
        ),
        Timer::FixFingers => info_span!("chord.fix_fingers"),
        Timer::CheckPredecessor => info_span!("chord.check_predecessor"),
    };
    telemetry::mark_trace(&span);
    span
}
