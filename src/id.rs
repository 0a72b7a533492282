//! 160-bit Chord identifiers and ring interval arithmetic.
//!
//! Identifiers live on a ring of size 2^160 (the SHA-1 output space). Everything in Chord is
//! phrased with intervals on that ring that may wrap around zero; the degenerate interval whose
//! two ends are the same point follows the Chord paper: `(a, a)` is the whole ring except `a`
//! and `(a, a]` is the whole ring.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::{Digest, Sha1};

/// Number of bits in an identifier (and entries in a finger table).
pub const BITS: usize = 160;

/// A point on the 2^160 identifier ring.
///
/// Stored as a 32-bit high part and a 128-bit low part so that ring arithmetic is a handful of
/// machine instructions; the derived ordering is the numeric ordering.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id {
    hi: u32,
    lo: u128,
}

/// Why a string is not an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    #[error("an identifier is 40 hex characters, got {0} characters")]
    Length(usize),
    #[error("an identifier is 40 hex characters, found {found:?} at position {position}")]
    NotHex { found: char, position: usize },
}

impl Id {
    /// The zero identifier.
    pub const ZERO: Id = Id { hi: 0, lo: 0 };
    /// The largest identifier, 2^160 - 1.
    pub const MAX: Id = Id {
        hi: u32::MAX,
        lo: u128::MAX,
    };

    /// SHA-1 of arbitrary bytes: node ids (of the advertised address) and keys (of file names).
    pub fn hash(data: impl AsRef<[u8]>) -> Id {
        let digest = Sha1::digest(data.as_ref());
        let mut bytes = [0u8; 20];
        bytes.copy_from_slice(&digest);
        Id::from_bytes(bytes)
    }

    /// The identifier whose big-endian encoding is `bytes`.
    pub fn from_bytes(bytes: [u8; 20]) -> Id {
        let mut hi = [0u8; 4];
        hi.copy_from_slice(&bytes[..4]);
        let mut lo = [0u8; 16];
        lo.copy_from_slice(&bytes[4..]);
        Id {
            hi: u32::from_be_bytes(hi),
            lo: u128::from_be_bytes(lo),
        }
    }

    /// Big-endian bytes.
    pub fn to_bytes(self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..4].copy_from_slice(&self.hi.to_be_bytes());
        out[4..].copy_from_slice(&self.lo.to_be_bytes());
        out
    }

    /// An identifier from its high 32 and low 128 bits (handy for tests and simulations).
    pub const fn from_parts(hi: u32, lo: u128) -> Id {
        Id { hi, lo }
    }

    /// `self + other` modulo 2^160.
    pub fn wrapping_add(self, other: Id) -> Id {
        let (lo, carry) = self.lo.overflowing_add(other.lo);
        let hi = self
            .hi
            .wrapping_add(other.hi)
            .wrapping_add(u32::from(carry));
        Id { hi, lo }
    }

    /// `self - other` modulo 2^160.
    pub fn wrapping_sub(self, other: Id) -> Id {
        let (lo, borrow) = self.lo.overflowing_sub(other.lo);
        let hi = self
            .hi
            .wrapping_sub(other.hi)
            .wrapping_sub(u32::from(borrow));
        Id { hi, lo }
    }

    /// 2^i for i in 0..160.
    ///
    /// # Panics
    /// If `i >= 160`; callers index finger tables, whose size is the constant [`BITS`].
    pub fn pow2(i: usize) -> Id {
        assert!(i < BITS, "2^{i} is outside the 160-bit ring");
        if i < 128 {
            Id { hi: 0, lo: 1 << i }
        } else {
            Id {
                hi: 1 << (i - 128),
                lo: 0,
            }
        }
    }

    /// `self + 2^i` modulo 2^160: the start of finger `i`.
    pub fn add_pow2(self, i: usize) -> Id {
        self.wrapping_add(Id::pow2(i))
    }

    /// Clockwise distance from `self` to `to`: `(to - self) mod 2^160`.
    pub fn distance_to(self, to: Id) -> Id {
        to.wrapping_sub(self)
    }

    /// `self ∈ (a, b)`, going clockwise from `a`. `(a, a)` is every point except `a`.
    pub fn in_open(self, a: Id, b: Id) -> bool {
        if a == b {
            return self != a;
        }
        let d = a.distance_to(self);
        d != Id::ZERO && d < a.distance_to(b)
    }

    /// `self ∈ (a, b]`, going clockwise from `a`. `(a, a]` is the whole ring.
    pub fn in_half_open(self, a: Id, b: Id) -> bool {
        if a == b {
            return true;
        }
        let d = a.distance_to(self);
        d != Id::ZERO && d <= a.distance_to(b)
    }

    /// Number of significant bits: 0 for zero, 160 for values at or above 2^159.
    pub fn bit_length(self) -> usize {
        if self.hi != 0 {
            128 + (32 - self.hi.leading_zeros() as usize)
        } else {
            128 - self.lo.leading_zeros() as usize
        }
    }

    /// The identifier as an `f64` fraction of the ring, in [0, 1). Used for reports and spacing.
    pub fn as_fraction(self) -> f64 {
        (f64::from(self.hi) + (self.lo as f64) / 2f64.powi(128)) / 2f64.powi(32)
    }

    /// The identifier at fraction `f` (clamped to [0, 1)) of the ring.
    pub fn from_fraction(f: f64) -> Id {
        let f = f.clamp(0.0, 1.0 - f64::EPSILON);
        let scaled = f * 2f64.powi(32);
        let hi = scaled.floor();
        let lo = ((scaled - hi) * 2f64.powi(128)) as u128;
        Id { hi: hi as u32, lo }
    }

    /// The first 8 hex characters: enough to tell peers apart in logs and tables.
    pub fn short(self) -> String {
        format!("{:08x}", self.hi)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}{:032x}", self.hi, self.lo)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = ParseIdError;

    /// Parses 40 hex characters (either case).
    fn from_str(s: &str) -> Result<Id, ParseIdError> {
        let chars = s.chars().count();
        if chars != 40 || s.len() != 40 {
            return Err(ParseIdError::Length(chars));
        }
        let mut bytes = [0u8; 20];
        let raw = s.as_bytes();
        for (i, byte) in bytes.iter_mut().enumerate() {
            let high = hex_value(raw[2 * i], 2 * i)?;
            let low = hex_value(raw[2 * i + 1], 2 * i + 1)?;
            *byte = (high << 4) | low;
        }
        Ok(Id::from_bytes(bytes))
    }
}

fn hex_value(c: u8, position: usize) -> Result<u8, ParseIdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseIdError::NotHex {
            found: char::from(c),
            position,
        }),
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id {
    /// Parses the text where it is (a `Cow<str>` is always copied into a new `String` first:
    /// a peer message carries dozens of ids).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Id, D::Error> {
        deserializer.deserialize_str(IdVisitor)
    }
}

struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an identifier of 40 hex characters")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Id, E> {
        s.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u128) -> Id {
        Id::from_parts(0, n)
    }

    fn any_id() -> impl Strategy<Value = Id> {
        (any::<u32>(), any::<u128>()).prop_map(|(hi, lo)| Id::from_parts(hi, lo))
    }

    /// Small ids make wrap-around and equal ends likely.
    fn small_or_any_id() -> impl Strategy<Value = Id> {
        prop_oneof![
            (0u128..8).prop_map(id),
            (0u128..8).prop_map(|n| Id::MAX.wrapping_sub(id(n))),
            any_id(),
        ]
    }

    #[test]
    fn sha1_of_known_string() {
        // RFC 3174 test vector.
        assert_eq!(
            Id::hash("abc").to_string(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = "00000001ffffffffffffffffffffffffffffff00";
        let parsed: Id = h.parse().unwrap();
        assert_eq!(parsed.to_string(), h);
        assert_eq!(
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
                .parse::<Id>()
                .unwrap(),
            Id::hash("abc")
        );
        assert_eq!("abc".parse::<Id>(), Err(ParseIdError::Length(3)));
        assert_eq!(
            "g9993e364706816aba3e25717850c26c9cd0d89d".parse::<Id>(),
            Err(ParseIdError::NotHex {
                found: 'g',
                position: 0
            })
        );
        // Multi-byte characters are reported by character count, never sliced mid-character.
        assert!("é".repeat(20).parse::<Id>().is_err());
    }

    #[test]
    fn serde_is_hex_string() {
        let a = Id::hash("x");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{a}\""));
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Id>("\"zz\"").is_err());
    }

    #[test]
    fn arithmetic_wraps() {
        assert_eq!(Id::MAX.wrapping_add(id(1)), Id::ZERO);
        assert_eq!(Id::ZERO.wrapping_sub(id(1)), Id::MAX);
        assert_eq!(id(u128::MAX).wrapping_add(id(1)), Id::from_parts(1, 0));
        assert_eq!(Id::ZERO.add_pow2(159), Id::from_parts(1 << 31, 0));
        assert_eq!(Id::pow2(159).add_pow2(159), Id::ZERO);
        assert_eq!(id(5).distance_to(id(3)), Id::MAX.wrapping_sub(id(1)));
    }

    #[test]
    fn degenerate_intervals() {
        let a = id(7);
        assert!(!a.in_open(a, a));
        assert!(id(8).in_open(a, a));
        assert!(a.in_half_open(a, a));
        assert!(id(0).in_half_open(a, a));
        // Wrap-around.
        assert!(id(1).in_open(Id::MAX, id(3)));
        assert!(Id::ZERO.in_open(Id::MAX, id(3)));
        assert!(!id(3).in_open(Id::MAX, id(3)));
        assert!(id(3).in_half_open(Id::MAX, id(3)));
        assert!(!Id::MAX.in_half_open(Id::MAX, id(3)));
    }

    #[test]
    fn bit_length_counts_significant_bits() {
        assert_eq!(Id::ZERO.bit_length(), 0);
        assert_eq!(id(1).bit_length(), 1);
        assert_eq!(id(u128::MAX).bit_length(), 128);
        assert_eq!(Id::pow2(128).bit_length(), 129);
        assert_eq!(Id::MAX.bit_length(), 160);
    }

    #[test]
    fn fraction_round_trip() {
        let x = Id::from_fraction(0.25);
        assert_eq!(x, Id::from_parts(1 << 30, 0));
        assert!((x.as_fraction() - 0.25).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in any_id(), b in any_id()) {
            prop_assert_eq!(a.wrapping_add(b).wrapping_sub(b), a);
            prop_assert_eq!(a.distance_to(b).wrapping_add(a), b);
        }

        #[test]
        fn bytes_and_hex_round_trip(a in any_id()) {
            prop_assert_eq!(Id::from_bytes(a.to_bytes()), a);
            prop_assert_eq!(a.to_string().parse::<Id>().unwrap(), a);
        }

        /// For a != b, exactly one of: x == a, x ∈ (a, b), x == b, x ∈ (b, a).
        #[test]
        fn open_intervals_partition_the_ring(a in small_or_any_id(), b in small_or_any_id(), x in small_or_any_id()) {
            prop_assume!(a != b);
            let count = [x == a, x.in_open(a, b), x == b, x.in_open(b, a)]
                .iter()
                .filter(|&&t| t)
                .count();
            prop_assert_eq!(count, 1);
        }

        #[test]
        fn half_open_is_open_plus_end(a in small_or_any_id(), b in small_or_any_id(), x in small_or_any_id()) {
            prop_assume!(a != b);
            prop_assert_eq!(x.in_half_open(a, b), x.in_open(a, b) || x == b);
        }

        /// Membership agrees with a model that unrolls the ring into plain integer comparisons.
        #[test]
        fn open_interval_matches_unrolled_model(a in small_or_any_id(), b in small_or_any_id(), x in small_or_any_id()) {
            let model = if a < b {
                a < x && x < b
            } else if a > b {
                x > a || x < b
            } else {
                x != a
            };
            prop_assert_eq!(x.in_open(a, b), model);
        }

        #[test]
        fn interval_is_rotation_invariant(a in small_or_any_id(), b in small_or_any_id(), x in small_or_any_id(), r in any_id()) {
            prop_assert_eq!(
                x.in_open(a, b),
                x.wrapping_add(r).in_open(a.wrapping_add(r), b.wrapping_add(r))
            );
            prop_assert_eq!(
                x.in_half_open(a, b),
                x.wrapping_add(r).in_half_open(a.wrapping_add(r), b.wrapping_add(r))
            );
        }
    }
}
