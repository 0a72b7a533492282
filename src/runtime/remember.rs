//! Remembering the ring in the store directory: one writer task, so saves land in the order the
//! driver asked for them (the file always ends with the newest state), off the async threads,
//! and a burst of changes costs one write (only the latest state not yet saved is written).

use std::path::PathBuf;

use tokio::sync::watch;
use tracing::warn;

use crate::persist::{self, RingState};

/// The driver's side of the writer.
pub(super) struct Remember {
    states: watch::Sender<Option<RingState>>,
    writer: tokio::task::JoinHandle<()>,
}

impl Remember {
    /// Starts the writer for `dir`; it ends once this handle is dropped (or closed) and the
    /// last state asked for is saved.
    pub fn start(dir: PathBuf) -> Remember {
        let (states, rx) = watch::channel(None);
        let writer = tokio::spawn(write_loop(dir, rx));
        Remember { states, writer }
    }

    /// Asks for `state` to be saved (replacing a state not yet written).
    pub fn save(&self, state: RingState) {
        self.states.send_replace(Some(state));
    }

    /// Stops taking states and returns once the last one asked for is written.
    pub async fn close(self) {
        drop(self.states);
        let _ = self.writer.await;
    }
}

async fn write_loop(dir: PathBuf, mut rx: watch::Receiver<Option<RingState>>) {
    let mut saved: Option<RingState> = None;
    loop {
        let closed = rx.changed().await.is_err();
        let state = rx.borrow_and_update().clone();
        if let Some(state) = state
            && saved.as_ref() != Some(&state)
        {
            let dir = dir.clone();
            let to_save = state.clone();
            match tokio::task::spawn_blocking(move || persist::save(&dir, &to_save)).await {
                Ok(Ok(())) => saved = Some(state),
                Ok(Err(e)) => warn!(error = %e, "could not remember the ring state"),
                Err(e) => warn!(error = %e, "could not remember the ring state"),
            }
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(i: usize) -> RingState {
        RingState {
            ring_id: format!("00000000-0000-4000-8000-{i:012}"),
            peers: vec![format!("p{i}:7000")],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_file_ends_with_the_newest_state_whatever_the_burst() {
        let dir = std::env::temp_dir().join(format!("chordnet-remember-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let remember = Remember::start(dir.clone());
        for i in 0..500 {
            remember.save(state(i));
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // Closing waits for the writer: whatever it skipped, the newest state is on disk.
        tokio::time::timeout(std::time::Duration::from_secs(10), remember.close())
            .await
            .expect("the writer finishes");
        assert_eq!(persist::load(&dir).unwrap(), Some(state(499)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
