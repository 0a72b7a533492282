//! HTTP range requests on downloads (RFC 9110 §14): `Range: bytes=a-b`, `bytes=a-`,
//! `bytes=-n`, with `If-Range` against the ETag. One range per request; a request for several
//! is answered with the whole file (the RFC lets a server ignore `Range`).

use axum::http::{HeaderMap, header};

/// What a `Range` header asks of a file of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The whole file (no `Range`, one not in bytes, several ranges, or an `If-Range` that no
    /// longer matches).
    Whole,
    /// Bytes `first..=last`.
    Part { first: u64, last: u64 },
    /// A range in bytes that the file cannot satisfy, or a malformed one: 416.
    Unsatisfiable,
}

/// Reads `Range` (and `If-Range` against `etag`, the quoted strong ETag) for a file of `size`.
pub fn wanted(headers: &HeaderMap, size: u64, etag: &str) -> Wanted {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Wanted::Whole;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.to_str().ok().map(str::trim) != Some(etag)
    {
        return Wanted::Whole;
    }
    parse(range, size)
}

fn parse(range: &str, size: u64) -> Wanted {
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Wanted::Whole; // another unit: ignored
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Wanted::Unsatisfiable;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (first, last) = match (a.trim().is_empty(), b.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match number(b) {
            Some(0) | None => return Wanted::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size.saturating_sub(1)),
        },
        // bytes=a-: from a to the end.
        (false, true) => match number(a) {
            Some(a) => (a, size.saturating_sub(1)),
            None => return Wanted::Unsatisfiable,
        },
        (false, false) => match (number(a), number(b)) {
            (Some(a), Some(b)) if a <= b => (a, b.min(size.saturating_sub(1))),
            _ => return Wanted::Unsatisfiable,
        },
        (true, true) => return Wanted::Unsatisfiable,
    };
    if size == 0 || first >= size {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part { first, last }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(first: u64, last: u64) -> Wanted {
        Wanted::Part { first, last }
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse("bytes=0-0", 10), part(0, 0));
        assert_eq!(parse("bytes=9-9", 10), part(9, 9));
        assert_eq!(parse("bytes=3-", 10), part(3, 9));
        assert_eq!(parse("bytes=-4", 10), part(6, 9));
        assert_eq!(parse("bytes=-40", 10), part(0, 9));
        assert_eq!(parse("bytes=5-400", 10), part(5, 9));
        assert_eq!(parse("bytes=10-", 10), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=10-12", 10), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=5-4", 10), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 10), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=x-4", 10), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=-", 10), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=0-0", 0), Wanted::Unsatisfiable);
        assert_eq!(parse("bytes=0-1,3-4", 10), Wanted::Whole);
        assert_eq!(parse("items=0-1", 10), Wanted::Whole);
    }

    #[test]
    fn if_range_must_match_the_etag() {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, "bytes=1-2".parse().unwrap());
        assert_eq!(wanted(&h, 10, "\"abc\""), part(1, 2));
        h.insert(header::IF_RANGE, "\"abc\"".parse().unwrap());
        assert_eq!(wanted(&h, 10, "\"abc\""), part(1, 2));
        h.insert(header::IF_RANGE, "\"old\"".parse().unwrap());
        assert_eq!(wanted(&h, 10, "\"abc\""), Wanted::Whole);
    }
}
