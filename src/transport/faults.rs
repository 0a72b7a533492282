//! Fault injection **for tests only**: dropping this peer's calls to chosen peers, so a
//! real-process test can split a ring in two and heal it (DESIGN.md §11).
//!
//! It is off unless the environment variable [`ENV`] names a file; nothing in the configuration
//! (file, `CHORDNET_<SECTION>__<KEY>` variables, flags, Helm chart) can turn it on, and a peer
//! that has it on says so in a warning at start. The file lists peer addresses, one a line; a
//! call from this peer to a listed address fails at once as unreachable, on both planes (a
//! missing or empty file drops nothing). The file is read at every call, so a test partitions
//! and heals by rewriting it. Calls to this peer itself are never dropped.

use std::path::PathBuf;

use super::TransportError;
use crate::wire::Address;

/// The test-only variable that names the file of unreachable addresses.
pub const ENV: &str = "CHORDNET_TEST_FAULTS_FILE";

/// The addresses this peer must not reach, when a test asked for it.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    file: Option<PathBuf>,
}

impl Faults {
    /// From [`ENV`]; off when it is unset or empty.
    pub fn from_env() -> Faults {
        let file = std::env::var_os(ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if let Some(f) = &file {
            tracing::warn!(
                file = %f.display(),
                "TEST-ONLY fault injection is on ({ENV}): calls to the peers listed in the file fail"
            );
        }
        Faults { file }
    }

    /// Fails when the file lists `to`.
    pub fn check(&self, to: &Address) -> Result<(), TransportError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let listed = std::fs::read_to_string(file)
            .map(|text| text.lines().any(|l| l.trim() == to.as_str()))
            .unwrap_or(false);
        if listed {
            return Err(TransportError::Unreachable(format!(
                "{to}: dropped by test fault injection"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_addresses_are_dropped_and_the_file_is_read_at_every_call() {
        let dir = std::env::temp_dir().join(format!("chordnet-faults-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("drop");
        let faults = Faults {
            file: Some(file.clone()),
        };
        let (a, b) = (Address::new("10.0.0.1:7000"), Address::new("10.0.0.2:7000"));
        assert!(faults.check(&a).is_ok(), "a missing file drops nothing");
        std::fs::write(&file, "10.0.0.1:7000\n").unwrap();
        assert!(matches!(
            faults.check(&a),
            Err(TransportError::Unreachable(_))
        ));
        assert!(faults.check(&b).is_ok());
        std::fs::write(&file, "").unwrap();
        assert!(faults.check(&a).is_ok(), "healed");
        assert!(
            Faults::default().check(&a).is_ok(),
            "off without the variable"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
