//! One entry point per decoder that a remote peer or a user reaches, for the `cargo fuzz`
//! targets in `fuzz/` and for the corpus test that runs the same inputs under `cargo test`
//! (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes, must never panic, and checks what the
//! decoder promises about what it accepts (a decoded message encodes and decodes to itself, a
//! range lies inside the file, a head's length lies inside the bytes read).

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::stream::{self, StreamExt};

use crate::transport::BodyError;
use crate::wire::files::{BlobAnswer, BlobQuery, FileMeta};
use crate::wire::ring::{RequestEnvelope, ResponseEnvelope};

/// One fuzz entry point: arbitrary bytes in, a panic on a broken promise.
pub type Target = fn(&[u8]);

/// Every entry point by name (the fuzz targets' names).
pub const TARGETS: &[(&str, Target)] = &[
    ("peer_message", peer_message),
    ("blob_message", blob_message),
    ("object_frame", object_frame),
    ("config_toml", config_toml),
    ("file_name", file_name),
    ("range_header", range_header),
    ("request_head", request_head),
    ("list_block", list_block),
];

/// A JSON value that decodes must encode to JSON that decodes to the same value.
fn round_trips<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let again = serde_json::to_vec(&value).unwrap_or_default();
        let back = serde_json::from_slice::<T>(&again);
        assert_eq!(
            back.as_ref().ok(),
            Some(&value),
            "{}",
            String::from_utf8_lossy(&again)
        );
    }
}

/// The control plane: request and response envelopes (JSON on HTTP, inside protobuf on gRPC).
pub fn peer_message(data: &[u8]) {
    round_trips::<RequestEnvelope>(data);
    round_trips::<ResponseEnvelope>(data);
}

/// The data plane's small messages and object metadata.
pub fn blob_message(data: &[u8]) {
    round_trips::<BlobQuery>(data);
    round_trips::<BlobAnswer>(data);
    round_trips::<FileMeta>(data);
}

/// An HTTP data-plane object frame (length, JSON metadata, content), delivered in pieces whose
/// size the first byte picks. Whatever is accepted yields exactly the content the metadata
/// announces.
pub fn object_frame(data: &[u8]) {
    let Some((&cut, wire)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut).max(1);
    let chunks: Vec<Result<Bytes, BodyError>> = wire
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    // An in-memory stream never waits: the futures finish on their first poll.
    let decoded =
        crate::transport::http::frame::decode(stream::iter(chunks).boxed()).now_or_never();
    if let Some(Ok((meta, Some(body)))) = decoded {
        let size = meta.size;
        if let Some(Ok(content)) = body.collect(u64::MAX).now_or_never() {
            assert_eq!(content.len() as u64, size);
        }
    }
}

/// A configuration file (TOML) over the defaults, validated.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::from_toml_str(text);
    }
}

/// A file name as the API and the peer protocol take it.
pub fn file_name(data: &[u8]) {
    if let Ok(name) = std::str::from_utf8(data)
        && crate::files::validate_name(name).is_ok()
    {
        assert!(!name.is_empty());
        assert!(!name.contains('\0'));
    }
}

/// A `Range` header (the first 8 bytes are the file's size): a part lies inside the file.
pub fn range_header(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (size, text) = data.split_at(8);
    let size = u64::from_le_bytes(size.try_into().unwrap_or([0; 8]));
    let Ok(value) = axum::http::HeaderValue::from_bytes(text) else {
        return;
    };
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(axum::http::header::RANGE, value);
    if let crate::api::range::Wanted::Part { first, last } =
        crate::api::range::wanted(&headers, size, "\"etag\"")
    {
        assert!(first <= last && last < size, "{first}-{last} of {size}");
    }
}

/// The bytes at the start of an API connection, as the front checks request heads.
pub fn request_head(data: &[u8]) {
    if let Ok(Some((len, _))) = crate::api::front::head::check_head(data) {
        assert!(len <= data.len());
    }
}

/// A list block of a two-level manifest (the digests of up to `MAX_PER_LIST` blocks), after two
/// bytes (little-endian) giving how many digests the manifest says it lists. What decodes has
/// exactly that many lowercase hex SHA-256 digests and encodes back to the same bytes.
pub fn list_block(data: &[u8]) {
    let Some((count, block)) = data.split_first_chunk::<2>() else {
        return;
    };
    let expected = u64::from(u16::from_le_bytes(*count));
    if let Ok(digests) = crate::files::lists::decode(block, expected) {
        assert_eq!(digests.len() as u64, expected);
        for d in &digests {
            assert!(d.len() == 64 && d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        }
        let again = crate::files::lists::encode(&digests).ok();
        assert_eq!(again.as_deref(), Some(block));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_takes_empty_and_garbage_input() {
        for (name, target) in TARGETS {
            for input in [&b""[..], b"\xff\xfe", b"{}", b"[]", b"\0\0\0\x05{}abc"] {
                target(input);
            }
            assert!(!name.is_empty());
        }
    }
}
