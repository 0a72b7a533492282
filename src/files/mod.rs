//! File sharing on the ring: names, versions, the on-disk content store, the shared-directory
//! index, and the operations (upload, download, delete, replication, hand-off, repair).
//!
//! Key = SHA-1 of the file name; the peer responsible for it (its successor on the ring) holds
//! the content and its next `replicas - 1` successors hold copies. Every stored version carries
//! a [`Version`]; replication, hand-off and repair keep the newest, and a delete is a tombstone
//! version, so a stale copy never overwrites a newer one and a deleted file never comes back.

pub mod blocks;
pub mod download;
pub mod handler;
pub mod hlc;
mod list_cache;
pub mod lists;
pub mod manifest;
pub mod ops;
pub mod outcome;
mod providers;
mod publish;
mod replicate;
pub mod shared;
pub mod spool;
pub mod store;
pub mod upload;

pub use crate::wire::files::{FileMeta, Layout, ProviderRecord, Version};

/// Why a file name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a file name is 1 to 255 bytes of UTF-8, got {0} bytes")]
    Length(usize),
    #[error("a file name may not contain '/'")]
    Slash,
    #[error("a file name may not contain NUL")]
    Nul,
    #[error("'.' and '..' are not file names")]
    Dots,
}

/// Checks a file name against the API contract: 1..255 bytes of UTF-8, no `/`, no NUL, not
/// `.` or `..`. (Being a `&str`, it is UTF-8 already.) Names pass through this before they
/// touch a path, so no name can escape a directory.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 255 {
        return Err(NameError::Length(name.len()));
    }
    if name.contains('/') {
        return Err(NameError::Slash);
    }
    if name.contains('\0') {
        return Err(NameError::Nul);
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots);
    }
    Ok(())
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert!(validate_name("report 2026.pdf").is_ok());
        assert!(validate_name("ünïcødé ✓").is_ok());
        assert!(validate_name(&"a".repeat(255)).is_ok());
        assert_eq!(validate_name(""), Err(NameError::Length(0)));
        assert_eq!(validate_name(&"a".repeat(256)), Err(NameError::Length(256)));
        assert_eq!(validate_name("../etc/passwd"), Err(NameError::Slash));
        assert_eq!(validate_name("a\0b"), Err(NameError::Nul));
        assert_eq!(validate_name("."), Err(NameError::Dots));
        assert_eq!(validate_name(".."), Err(NameError::Dots));
        assert!(validate_name("..hidden").is_ok());
        assert!(validate_name("back\\slash").is_ok());
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
