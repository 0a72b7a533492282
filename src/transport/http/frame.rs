//! Objects on the HTTP data plane travel as one body: a 4-byte big-endian length, the JSON
//! [`FileMeta`], then the content (binary-safe for any name, no extra encoding). Both
//! directions stream: the header is read first, the content follows as a [`Body`].

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::transport::{Body, BodyError};
use crate::wire::files::FileMeta;

/// The largest metadata header accepted: a manifest of 65536 blocks is about 4.4 MB of JSON.
pub const MAX_HEADER: usize = 8 << 20;

/// The header of `meta`'s frame.
pub fn header(meta: &FileMeta) -> Bytes {
    let json = serde_json::to_vec(meta).unwrap_or_default();
    let mut out = BytesMut::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.freeze()
}

/// The whole frame as a stream, and its length.
pub fn encode(
    meta: &FileMeta,
    body: Option<Body>,
) -> (u64, BoxStream<'static, Result<Bytes, BodyError>>) {
    let head = header(meta);
    let len = head.len() as u64 + body.as_ref().map_or(0, Body::len);
    let first = stream::iter([Ok(head)]);
    let stream = match body {
        Some(b) => first.chain(b.into_stream()).boxed(),
        None => first.boxed(),
    };
    (len, stream)
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("object frame: {0}")]
    Malformed(String),
    #[error(transparent)]
    Body(#[from] BodyError),
}

/// Reads the header off `stream`; the rest is the content, checked against `meta.size`
/// (nothing for a tombstone).
pub async fn decode(
    mut stream: BoxStream<'static, Result<Bytes, BodyError>>,
) -> Result<(FileMeta, Option<Body>), FrameError> {
    let mut buf = BytesMut::new();
    let mut need = 4usize;
    let mut json_len = None;
    loop {
        while buf.len() < need {
            match stream.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk?),
                None => return Err(FrameError::Malformed("truncated header".into())),
            }
        }
        match json_len {
            None => {
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if len > MAX_HEADER {
                    return Err(FrameError::Malformed(format!(
                        "metadata of {len} bytes (at most {MAX_HEADER})"
                    )));
                }
                json_len = Some(len);
                need = 4 + len;
            }
            Some(len) => {
                let rest = buf.split_off(4 + len).freeze();
                let meta: FileMeta = serde_json::from_slice(&buf[4..])
                    .map_err(|e| FrameError::Malformed(format!("metadata: {e}")))?;
                let prefix: Vec<Result<Bytes, BodyError>> = if rest.is_empty() {
                    Vec::new()
                } else {
                    vec![Ok(rest)]
                };
                let content = stream::iter(prefix).chain(stream).boxed();
                let size = if meta.has_content() { meta.size } else { 0 };
                let body = Body::new(size, content);
                if !meta.has_content() {
                    // A tombstone or a manifest carries nothing: make sure of it.
                    body.collect(0).await?;
                    return Ok((meta, None));
                }
                return Ok((meta, Some(body)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use crate::wire::files::Version;

    fn meta(size: u64, deleted: bool) -> FileMeta {
        FileMeta {
            name: "ünï/x".into(),
            id: Id::hash("x"),
            size,
            sha256: String::new(),
            version: Version {
                millis: 1,
                logical: 2,
                origin: Id::ZERO,
            },
            deleted,
            layout: Default::default(),
        }
    }

    /// Re-chunks a stream into pieces of `n` bytes, to cut the header anywhere.
    fn rechunk(data: Vec<u8>, n: usize) -> BoxStream<'static, Result<Bytes, BodyError>> {
        let parts: Vec<Result<Bytes, BodyError>> = data
            .chunks(n)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(parts).boxed()
    }

    async fn flatten(mut s: BoxStream<'static, Result<Bytes, BodyError>>) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn frames_round_trip_however_they_are_cut() {
        let m = meta(5, false);
        let (len, s) = encode(&m, Some(Body::from_bytes(Bytes::from_static(b"hello"))));
        let wire = flatten(s).await;
        assert_eq!(wire.len() as u64, len);
        for n in [1, 3, 4, 5, 17, 1000] {
            let (got, body) = decode(rechunk(wire.clone(), n)).await.unwrap();
            assert_eq!(got, m);
            assert_eq!(body.unwrap().collect(100).await.unwrap(), &b"hello"[..]);
        }
        let t = meta(0, true);
        let (_, s) = encode(&t, None);
        let (got, body) = decode(s).await.unwrap();
        assert!(got.deleted && body.is_none());
    }

    #[tokio::test]
    async fn bad_frames_are_errors() {
        assert!(decode(rechunk(vec![0, 0], 1)).await.is_err());
        assert!(
            decode(rechunk(vec![0xff, 0xff, 0xff, 0xff], 4))
                .await
                .is_err()
        );
        let mut bad = 3u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"{x}");
        assert!(decode(rechunk(bad, 4)).await.is_err());
        // Content shorter than the metadata says.
        let m = meta(10, false);
        let (_, s) = encode(&m, Some(Body::from_bytes(Bytes::from_static(b"hello"))));
        let wire = flatten(s).await;
        let (_, body) = decode(rechunk(wire, 7)).await.unwrap();
        assert!(body.unwrap().collect(100).await.is_err());
    }
}
