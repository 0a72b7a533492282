//! The event queue and the virtual network: timers, request delivery with latency, loss and
//! partitions, time-outs, and what the simulator does with each node's outputs.

use super::{LookupRecord, Micros, NodeIndex, Sim};
use crate::id::Id;
use crate::ring::{
    Address, LookupResult, Output, RequestEnvelope, RequestId, ResponseEnvelope, RingEvent, Timer,
};

pub(super) enum Event {
    Timer {
        node: NodeIndex,
        incarnation: u32,
        timer: Timer,
    },
    Request {
        to: NodeIndex,
        from: NodeIndex,
        from_incarnation: u32,
        request: RequestId,
        sent_at: Micros,
        message: RequestEnvelope,
    },
    Response {
        to: NodeIndex,
        incarnation: u32,
        request: RequestId,
        message: ResponseEnvelope,
    },
    Failure {
        to: NodeIndex,
        incarnation: u32,
        request: RequestId,
    },
}

/// A queue entry, ordered so that the heap pops the earliest, then the first scheduled. The
/// event itself waits in a slab: moving small entries keeps the heap fast.
pub(super) struct Queued {
    pub(super) at: Micros,
    seq: u64,
    pub(super) slot: usize,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Queued) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Queued) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Queued) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl Sim {
    pub(super) fn schedule(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        let slot = match self.free_events.pop() {
            Some(slot) => {
                self.events[slot] = Some(event);
                slot
            }
            None => {
                self.events.push(Some(event));
                self.events.len() - 1
            }
        };
        self.queue.push(Queued {
            at,
            seq: self.seq,
            slot,
        });
    }

    pub(super) fn start_timers(&mut self, i: NodeIndex) {
        let incarnation = self.slots[i].incarnation;
        for (timer, interval) in [
            (Timer::Stabilize, self.config.stabilize_interval),
            (Timer::FixFingers, self.config.fix_fingers_interval),
            (
                Timer::CheckPredecessor,
                self.config.check_predecessor_interval,
            ),
        ] {
            // A random phase so that nodes do not all act in lock-step.
            let at = self.now + self.rng.range(1, interval.max(1));
            self.schedule(
                at,
                Event::Timer {
                    node: i,
                    incarnation,
                    timer,
                },
            );
        }
    }

    fn latency(&mut self) -> Micros {
        self.rng
            .range(self.config.latency_min, self.config.latency_max)
    }

    fn can_talk(&self, a: NodeIndex, b: NodeIndex) -> bool {
        self.slots[a].group == self.slots[b].group
    }

    pub(super) fn dispatch(&mut self, event: Event) {
        match event {
            Event::Timer {
                node,
                incarnation,
                timer,
            } => {
                let slot = &mut self.slots[node];
                if !slot.alive || slot.incarnation != incarnation {
                    return;
                }
                slot.node.tick(timer);
                let interval = match timer {
                    Timer::Stabilize => self.config.stabilize_interval,
                    Timer::FixFingers => self.config.fix_fingers_interval,
                    Timer::CheckPredecessor => self.config.check_predecessor_interval,
                };
                self.schedule(
                    self.now + interval,
                    Event::Timer {
                        node,
                        incarnation,
                        timer,
                    },
                );
                self.flush(node);
            }
            Event::Request {
                to,
                from,
                from_incarnation,
                request,
                sent_at,
                message,
            } => {
                let timeout_at = sent_at + self.config.rpc_timeout;
                // A partition that began while the request was on its way stops it too.
                if !self.slots[to].alive || !self.can_talk(to, from) {
                    let at = timeout_at.max(self.now);
                    self.schedule(
                        at,
                        Event::Failure {
                            to: from,
                            incarnation: from_incarnation,
                            request,
                        },
                    );
                    return;
                }
                let response = self.slots[to].node.handle_request(message);
                self.flush(to);
                self.stats.messages += 1;
                if self.rng.chance(self.config.loss) || !self.can_talk(to, from) {
                    self.stats.requests_lost += 1;
                    self.schedule(
                        timeout_at.max(self.now),
                        Event::Failure {
                            to: from,
                            incarnation: from_incarnation,
                            request,
                        },
                    );
                } else {
                    let at = self.now + self.latency();
                    self.schedule(
                        at.min(timeout_at.max(self.now)),
                        Event::Response {
                            to: from,
                            incarnation: from_incarnation,
                            request,
                            message: response,
                        },
                    );
                }
            }
            Event::Response {
                to,
                incarnation,
                request,
                message,
            } => {
                let slot = &mut self.slots[to];
                if !slot.alive || slot.incarnation != incarnation {
                    return;
                }
                slot.node.handle_response(request, message);
                self.flush(to);
            }
            Event::Failure {
                to,
                incarnation,
                request,
            } => {
                let slot = &mut self.slots[to];
                if !slot.alive || slot.incarnation != incarnation {
                    return;
                }
                slot.node.handle_failure(request);
                self.flush(to);
            }
        }
    }

    /// Executes what node `i` asked for.
    pub(super) fn flush(&mut self, i: NodeIndex) {
        let mut outputs = std::mem::take(&mut self.outputs);
        self.slots[i].node.drain_outputs(&mut outputs);
        for output in outputs.drain(..) {
            match output {
                Output::Send {
                    request,
                    to,
                    message,
                    ..
                } => self.send(i, request, to, message),
                Output::LookupDone { lookup, outcome } => {
                    if let Some((target, issued_at)) = self.pending_lookups.remove(&(i, lookup)) {
                        self.record_lookup(i, target, issued_at, outcome.as_ref().ok());
                    }
                }
                Output::Event(event) => self.on_event(i, event),
                Output::Persist(remembered) => self.slots[i].disk = Some(remembered),
            }
        }
        self.outputs = outputs;
    }

    fn send(&mut self, from: NodeIndex, request: RequestId, to: Address, message: RequestEnvelope) {
        self.stats.messages += 1;
        let incarnation = self.slots[from].incarnation;
        let timeout_at = self.now + self.config.rpc_timeout;
        let target = self.by_address.get(&to).copied();
        match target {
            Some(t) if self.can_talk(from, t) && !self.rng.chance(self.config.loss) => {
                let at = self.now + self.latency();
                self.schedule(
                    at,
                    Event::Request {
                        to: t,
                        from,
                        from_incarnation: incarnation,
                        request,
                        sent_at: self.now,
                        message,
                    },
                );
            }
            _ => {
                self.stats.requests_lost += 1;
                self.schedule(
                    timeout_at,
                    Event::Failure {
                        to: from,
                        incarnation,
                        request,
                    },
                );
            }
        }
    }

    fn on_event(&mut self, i: NodeIndex, event: RingEvent) {
        match event {
            RingEvent::Created { ring_id, .. } | RingEvent::Joined { ring_id, .. } => {
                self.slots[i].join_outcome = Some(Ok(ring_id));
                self.stats.joins += 1;
                let id = self.slots[i].node.id();
                self.members.insert(id, i);
            }
            RingEvent::JoinFailed { failure } => {
                self.slots[i].join_outcome = Some(Err(failure));
                self.stats.join_failures += 1;
            }
            RingEvent::SuccessorChanged { .. } => self.stats.successor_changes += 1,
            RingEvent::PredecessorChanged { .. } => self.stats.predecessor_changes += 1,
            RingEvent::PeerFailed { .. } => self.stats.peer_failures_detected += 1,
            RingEvent::Left => {
                self.stats.leaves += 1;
                let id = self.slots[i].node.id();
                if self.members.get(&id) == Some(&i) {
                    self.members.remove(&id);
                }
            }
            RingEvent::MergeStarted { .. } => self.stats.merges_started += 1,
            RingEvent::MergeDone { adopted, .. } => {
                self.stats.merges_adopted += u64::from(adopted.is_some());
            }
            RingEvent::ForeignRing { .. } => self.stats.foreign_rings_seen += 1,
            RingEvent::PeerLeft { .. }
            | RingEvent::Stabilized { .. }
            | RingEvent::RingRenamed { .. }
            | RingEvent::RingsMerged { .. } => {}
        }
    }

    fn record_lookup(
        &mut self,
        origin: NodeIndex,
        target: Id,
        issued_at: Micros,
        result: Option<&LookupResult>,
    ) {
        let truth = self.true_successor(target);
        let record = match result {
            Some(r) => LookupRecord {
                origin,
                target,
                issued_at,
                finished_at: self.now,
                hops: r.hops,
                timeouts: r.timeouts,
                correct: truth.is_some_and(|t| self.slots[t].node.id() == r.node.id),
                failed: false,
                result: Some(r.clone()),
            },
            None => LookupRecord {
                origin,
                target,
                issued_at,
                finished_at: self.now,
                hops: 0,
                timeouts: 0,
                correct: false,
                failed: true,
                result: None,
            },
        };
        self.lookups.push(record);
    }
}
