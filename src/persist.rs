//! What a peer remembers across restarts, in its store directory: the ring it belonged to and a
//! few peers of it. A restarted peer rejoins through them, and the founder never starts a
//! second ring while it remembers one (DESIGN.md §6).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ring::RingId;

const FILE: &str = "ring.json";

/// The remembered ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    pub ring_id: String,
    /// Peer-protocol addresses of recent neighbours.
    pub peers: Vec<String>,
}

impl RingState {
    pub fn ring_id(&self) -> Option<RingId> {
        self.ring_id.parse().ok()
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a ring state file: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Reads the remembered ring, if any.
pub fn load(store_dir: &Path) -> Result<Option<RingState>, PersistError> {
    let path = store_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| PersistError::Corrupt { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Io { path, source }),
    }
}

/// Writes the state atomically: a temporary file, fsync, rename, fsync of the directory.
pub fn save(store_dir: &Path, state: &RingState) -> Result<(), PersistError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PersistError::Io { path, source }
    };
    std::fs::create_dir_all(store_dir).map_err(io(store_dir))?;
    let path = store_dir.join(FILE);
    // A name of its own per write: saves may run concurrently, and each must rename a whole
    // file of its own (the last rename wins).
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = store_dir.join(format!("{FILE}.{}.{n}.tmp", std::process::id()));
    let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    if let Ok(dir) = std::fs::File::open(store_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("chordnet-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(load(&dir).unwrap(), None);
        let state = RingState {
            ring_id: RingId(5).to_string(),
            peers: vec!["a:1".into()],
        };
        save(&dir, &state).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(state.clone()));
        assert_eq!(state.ring_id(), Some(RingId(5)));
        std::fs::write(dir.join(FILE), b"{nope").unwrap();
        assert!(matches!(load(&dir), Err(PersistError::Corrupt { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
