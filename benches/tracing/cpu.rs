//! CPU time from /proc: of the rings' peers, the receiver's threads, this process and the
//! whole machine.

use crate::RECEIVER_THREAD;
use crate::rings::Ring;

/// Linux reports process CPU time in ticks of 1/100 s to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// user + system CPU ticks from a `/proc/…/stat` file (0 when unreadable, e.g. not Linux).
pub(crate) fn cpu_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces), starting at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// CPU ticks of this process's receiver threads.
fn receiver_ticks() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(RECEIVER_THREAD))
        })
        .filter_map(|t| cpu_ticks(&t.path().join("stat").to_string_lossy()))
        .sum()
}

/// CPU ticks by who used them.
#[derive(Clone, Copy, Default)]
pub(crate) struct Cpu {
    /// The peers of the ring measured.
    pub(crate) own: u64,
    /// The peers of the other rings (idle: maintenance, and its export where on).
    pub(crate) others: u64,
    /// The receiver's threads.
    pub(crate) receiver: u64,
    /// The rest of this process: the load generator.
    pub(crate) client: u64,
    /// Every process on the machine (busy ticks of all CPUs, from /proc/stat).
    pub(crate) machine: u64,
}

/// Busy ticks of all CPUs together (all but idle and iowait), from /proc/stat.
fn machine_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    cpu.split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(k, _)| *k != 3 && *k != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

impl Cpu {
    /// Now, with ring `measured` as the own ring.
    pub(crate) fn now(rings: &[Ring], measured: usize) -> Cpu {
        let mut cpu = Cpu::default();
        for (i, ring) in rings.iter().enumerate() {
            if i == measured {
                cpu.own += ring.cpu_ticks();
            } else {
                cpu.others += ring.cpu_ticks();
            }
        }
        cpu.receiver = receiver_ticks();
        cpu.client = cpu_ticks("/proc/self/stat")
            .unwrap_or(0)
            .saturating_sub(cpu.receiver);
        cpu.machine = machine_ticks();
        cpu
    }

    pub(crate) fn since(self, before: Cpu) -> Cpu {
        Cpu {
            own: self.own.saturating_sub(before.own),
            others: self.others.saturating_sub(before.others),
            receiver: self.receiver.saturating_sub(before.receiver),
            client: self.client.saturating_sub(before.client),
            machine: self.machine.saturating_sub(before.machine),
        }
    }

    pub(crate) fn add(&mut self, other: Cpu) {
        self.own += other.own;
        self.others += other.others;
        self.receiver += other.receiver;
        self.client += other.client;
        self.machine += other.machine;
    }

    pub(crate) fn total(&self) -> u64 {
        self.own + self.others + self.receiver + self.client
    }
}

pub(crate) fn ms_of_ticks(ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / TICKS_PER_SECOND
}
