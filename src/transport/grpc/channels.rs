//! The gRPC client's channels, one per peer address: made on first use, dropped after a
//! failed connection (a DNS name may point to a restarted pod's new address) and after
//! `transport.idle_timeout` without a call, which closes the connection on both sides.
//!
//! A call in progress holds its own handle of the channel, so dropping it here never cuts a
//! call short: the connection closes when the last call on it ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;

use crate::wire::Address;

/// Channels kept at most (a ring member talks to its fingers and successors: far fewer).
const MAX_CHANNELS: usize = 1024;

struct Kept {
    channel: Channel,
    /// When a call last took this channel.
    used: Instant,
}

type Map = HashMap<Address, Kept>;

pub struct Channels {
    map: Arc<Mutex<Map>>,
    idle_timeout: Duration,
    /// Whether the task that drops idle channels runs (started with the first channel: a
    /// client may be made outside a runtime).
    sweeping: AtomicBool,
}

impl Channels {
    pub fn new(idle_timeout: Duration) -> Channels {
        Channels {
            map: Arc::new(Mutex::new(HashMap::new())),
            idle_timeout,
            sweeping: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The channel to `to`, made with `make` when there is none.
    pub fn get_or_make<E>(
        &self,
        to: &Address,
        make: impl FnOnce() -> Result<Channel, E>,
    ) -> Result<Channel, E> {
        let now = Instant::now();
        let channel = {
            let mut map = self.lock();
            if let Some(kept) = map.get_mut(to) {
                kept.used = now;
                return Ok(kept.channel.clone());
            }
            let channel = make()?;
            if map.len() >= MAX_CHANNELS {
                map.clear();
            }
            map.insert(
                to.clone(),
                Kept {
                    channel: channel.clone(),
                    used: now,
                },
            );
            channel
        };
        self.start_sweeping();
        Ok(channel)
    }

    /// Drops the channel to `to` (its connection failed): the next call connects again.
    pub fn forget(&self, to: &Address) {
        self.lock().remove(to);
    }

    /// How many channels are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn start_sweeping(&self) {
        if self.sweeping.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            runtime.spawn(sweep(Arc::downgrade(&self.map), self.idle_timeout));
        }
    }
}

/// Every half `idle_timeout`, drops the channels no call took for `idle_timeout`; ends with
/// the client.
async fn sweep(map: Weak<Mutex<Map>>, idle_timeout: Duration) {
    let every = (idle_timeout / 2).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        let Some(map) = map.upgrade() else {
            return;
        };
        let now = Instant::now();
        map.lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, kept| now.duration_since(kept.used) < idle_timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy_channel(port: u16) -> Result<Channel, ()> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .map_err(|_| ())?;
        Ok(endpoint.connect_lazy())
    }

    #[tokio::test(start_paused = true)]
    async fn a_channel_no_call_took_for_the_idle_timeout_is_dropped() {
        let channels = Channels::new(Duration::from_secs(10));
        let busy = Address::new("127.0.0.1:1");
        let quiet = Address::new("127.0.0.1:2");
        channels
            .get_or_make(&busy, || lazy_channel(1))
            .expect("made");
        channels
            .get_or_make(&quiet, || lazy_channel(2))
            .expect("made");
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            channels
                .get_or_make(&busy, || -> Result<Channel, ()> { panic!("made again") })
                .expect("kept");
        }
        // 16 s on: the busy one was taken every 4 s, the quiet one never again.
        assert_eq!(channels.len(), 1);
        let mut made = false;
        channels
            .get_or_make(&quiet, || {
                made = true;
                lazy_channel(2)
            })
            .expect("made");
        assert!(made, "the quiet channel was kept past the idle time-out");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_and_the_channels_end_with_the_client() {
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let channels = Channels::new(Duration::from_secs(1));
        channels
            .get_or_make(&Address::new("127.0.0.1:1"), || lazy_channel(1))
            .expect("made");
        assert!(tasks() >= 1, "no sweeper");
        drop(channels);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(tasks(), 0, "a task outlived the client");
    }
}
