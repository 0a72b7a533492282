//! The ring secret's keys: the key file's format, and HMAC-SHA256 over them.
//!
//! A key file holds one key per line, each at least [`MIN_KEY_BYTES`] bytes written as hex or
//! as base64 (standard or URL-safe alphabet, padding optional); blank lines and `#` comments
//! are skipped. The first key signs, every key verifies: rotation installs a new key as a
//! second line everywhere, then moves it first, then removes the old one.
//!
//! HMAC (RFC 2104) is written here over the `sha2` the crate already has (a few lines; no
//! second digest stack to keep in step with it). Errors never quote a key.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The shortest key accepted, in bytes (HMAC-SHA256's full strength).
pub const MIN_KEY_BYTES: usize = 32;
/// The longest key line accepted (a key file is small; anything else is a mistake).
const MAX_LINE: usize = 4096;
/// Most keys in one file (rotation needs two; a few more do no harm).
pub const MAX_KEYS: usize = 16;

const BLOCK: usize = 64;

/// One HMAC-SHA256 key, with its pads computed once.
#[derive(Clone)]
pub struct Key {
    inner: [u8; BLOCK],
    outer: [u8; BLOCK],
}

impl Key {
    pub fn new(secret: &[u8]) -> Key {
        let mut block = [0u8; BLOCK];
        if secret.len() > BLOCK {
            block[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            block[..secret.len()].copy_from_slice(secret);
        }
        let mut inner = [0u8; BLOCK];
        let mut outer = [0u8; BLOCK];
        for i in 0..BLOCK {
            inner[i] = block[i] ^ 0x36;
            outer[i] = block[i] ^ 0x5c;
        }
        Key { inner, outer }
    }

    /// HMAC-SHA256 of the concatenation of `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.inner);
        for p in parts {
            h.update(p);
        }
        let inner = h.finalize();
        let mut h = Sha256::new();
        h.update(self.outer);
        h.update(inner);
        h.finalize().into()
    }
}

/// Equality in time independent of where the inputs differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The keys of a ring secret file: the first signs, all verify.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
    /// SHA-256 of the decoded keys in order: tells a changed file from a touched one.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

/// Why a ring secret file cannot be used. Never quotes the file's content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the ring secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ring secret file {path}, line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "ring secret file {path} holds no key (one key per line, hex or base64, at least {MIN_KEY_BYTES} bytes)"
    )]
    Empty { path: PathBuf },
    #[error("ring secret file {path} holds more than {MAX_KEYS} keys")]
    TooMany { path: PathBuf },
}

impl Keyring {
    /// Reads and checks the key file at `path`.
    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Keyring::parse(&text, path)
    }

    /// Parses a key file's text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Keyring, KeyError> {
        let mut keys = Vec::new();
        let mut all = Sha256::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |message: String| KeyError::Line {
                path: path.to_owned(),
                line: n + 1,
                message,
            };
            if line.len() > MAX_LINE {
                return Err(err(format!("longer than {MAX_LINE} characters")));
            }
            let bytes = decode(line).ok_or_else(|| {
                err("not a key: write each key as hex or base64 on a line of its own".into())
            })?;
            if bytes.len() < MIN_KEY_BYTES {
                return Err(err(format!(
                    "a key of {} bytes: keys are at least {MIN_KEY_BYTES} bytes \
                     (e.g. `openssl rand -hex 32`)",
                    bytes.len()
                )));
            }
            if keys.len() == MAX_KEYS {
                return Err(KeyError::TooMany {
                    path: path.to_owned(),
                });
            }
            all.update((bytes.len() as u64).to_be_bytes());
            all.update(&bytes);
            keys.push(Key::new(&bytes));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Keyring {
            keys,
            fingerprint: all.finalize().into(),
        })
    }

    /// The key that signs.
    pub fn signing(&self) -> &Key {
        &self.keys[0]
    }

    /// Every key that verifies, the signing one first.
    pub fn accepted(&self) -> &[Key] {
        &self.keys
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

/// Hex (even length, all hex digits) first, else base64.
fn decode(s: &str) -> Option<Vec<u8>> {
    if s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex(s);
    }
    base64(s)
}

pub fn hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding of the last byte (6 bits never are).
    (bits < 6 && acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> &'static Path {
        Path::new("/secret/ring")
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2: a short key.
        let mac = Key::new(b"Jefe").mac(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            to_hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let key = [0xaau8; 131];
        let mac = Key::new(&key).mac(&[b"Test Using Larger Than Block-Size Key - Hash Key First"]);
        assert_eq!(
            to_hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn keys_are_hex_or_base64_with_comments_and_the_first_signs() {
        let hex_key = "00".repeat(31) + "01";
        let b64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAI="; // 32 bytes, last = 2
        let text = format!("# rotation\n\n{hex_key}  # new\n{b64}\n");
        let ring = Keyring::parse(&text, path()).unwrap();
        assert_eq!(ring.accepted().len(), 2);
        let mut one = vec![0u8; 32];
        one[31] = 1;
        assert_eq!(
            ring.signing().mac(&[b"m"]),
            Key::new(&one).mac(&[b"m"]),
            "the first line signs"
        );
        let mut two = vec![0u8; 32];
        two[31] = 2;
        assert_eq!(ring.accepted()[1].mac(&[b"m"]), Key::new(&two).mac(&[b"m"]));
        // URL-safe base64 without padding reads the same.
        let url = Keyring::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAI", path()).unwrap();
        assert_eq!(
            url.fingerprint(),
            Keyring::parse(b64, path()).unwrap().fingerprint()
        );
    }

    #[test]
    fn short_empty_or_garbled_files_are_refused_without_quoting_them() {
        let short = "ab".repeat(16 - 1);
        let e = Keyring::parse(&format!("# c\n{short}\n"), path()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("line 2") && text.contains("15 bytes"),
            "{text}"
        );
        assert!(!text.contains(&short), "{text}");
        let e = Keyring::parse("# only a comment\n\n", path()).unwrap_err();
        assert!(matches!(e, KeyError::Empty { .. }), "{e}");
        let e = Keyring::parse("not a key at all!", path()).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = Keyring::load(Path::new("/nonexistent/ring-secret")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ring-secret"), "{e}");
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
