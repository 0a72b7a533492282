//! Object bodies: a byte stream of known length, moved chunk by chunk (never held whole).
//!
//! A [`Body`] checks its own length: a stream that ends early or runs past its declared length
//! fails with [`BodyError::Length`], so no layer above can mistake a cut transfer for a whole
//! one. [`Body::with_progress_timeout`] fails a stream that stops moving.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::io::AsyncReadExt;

/// Chunks read from files are this large.
pub const CHUNK: usize = 256 * 1024;

/// Why a body stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the stream ended after {got} of {expected} bytes, or ran past them")]
    Length { expected: u64, got: u64 },
    #[error("no data for {0:?}")]
    Stalled(Duration),
    #[error("{0}")]
    Io(String),
    #[error("the transfer missed its deadline of {0:?}")]
    Deadline(Duration),
}

/// A byte stream of known length.
pub struct Body {
    len: u64,
    stream: BoxStream<'static, Result<Bytes, BodyError>>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes)", self.len)
    }
}

impl Body {
    /// A body of `len` bytes from `stream`, checked against `len`.
    pub fn new(len: u64, stream: BoxStream<'static, Result<Bytes, BodyError>>) -> Body {
        Body {
            len,
            stream: checked(len, stream),
        }
    }

    pub fn empty() -> Body {
        Body::from_bytes(Bytes::new())
    }

    /// A body already in memory (small bodies, tests).
    pub fn from_bytes(data: Bytes) -> Body {
        let len = data.len() as u64;
        let chunks: Vec<Result<Bytes, BodyError>> = if data.is_empty() {
            Vec::new()
        } else {
            vec![Ok(data)]
        };
        Body {
            len,
            stream: stream::iter(chunks).boxed(),
        }
    }

    /// The first `len` bytes of the file at `path`, read in [`CHUNK`]s as they are consumed.
    pub fn from_file(path: PathBuf, len: u64) -> Body {
        let opened = async move {
            tokio::fs::File::open(&path)
                .await
                .map_err(|e| BodyError::Io(format!("{}: {e}", path.display())))
        };
        let chunks = stream::once(opened)
            .map(move |file| match file {
                Ok(file) => read_chunks(file, len).boxed(),
                Err(e) => stream::iter([Err(e)]).boxed(),
            })
            .flatten();
        Body::new(len, chunks.boxed())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next chunk; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Bytes, BodyError>> {
        self.stream.next().await
    }

    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, BodyError>> {
        self.stream
    }

    /// Fails the stream when no chunk arrives for `idle`.
    pub fn with_progress_timeout(self, idle: Duration) -> Body {
        let inner = self.stream;
        let stream = stream::unfold((inner, false), move |(mut inner, failed)| async move {
            if failed {
                return None;
            }
            match tokio::time::timeout(idle, inner.next()).await {
                Ok(Some(item)) => Some((item, (inner, false))),
                Ok(None) => None,
                Err(_) => Some((Err(BodyError::Stalled(idle)), (inner, true))),
            }
        });
        Body {
            len: self.len,
            stream: stream.boxed(),
        }
    }

    /// Fails the stream once `deadline` has passed since this call.
    pub fn with_deadline(self, limit: Duration) -> Body {
        let deadline = tokio::time::Instant::now() + limit;
        let inner = self.stream;
        let stream = stream::unfold((inner, false), move |(mut inner, failed)| async move {
            if failed {
                return None;
            }
            match tokio::time::timeout_at(deadline, inner.next()).await {
                Ok(Some(item)) => Some((item, (inner, false))),
                Ok(None) => None,
                Err(_) => Some((Err(BodyError::Deadline(limit)), (inner, true))),
            }
        });
        Body {
            len: self.len,
            stream: stream.boxed(),
        }
    }

    /// Keeps `guard` (a permit, a temporary file) alive until the stream ends or is dropped.
    pub fn holding<G: Send + 'static>(self, guard: G) -> Body {
        let inner = self.stream;
        let stream = stream::unfold((inner, Some(guard)), |(mut inner, mut guard)| async move {
            match inner.next().await {
                Some(item) => Some((item, (inner, guard))),
                None => {
                    guard.take();
                    None
                }
            }
        });
        Body {
            len: self.len,
            stream: stream.boxed(),
        }
    }

    /// Reads the whole body into memory. Only for bodies known to be small (bounded by
    /// `limit`; a longer one is an error).
    pub async fn collect(mut self, limit: u64) -> Result<Bytes, BodyError> {
        if self.len > limit {
            return Err(BodyError::Length {
                expected: limit,
                got: self.len,
            });
        }
        let mut out = Vec::with_capacity(self.len as usize);
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(Bytes::from(out))
    }
}

fn read_chunks(
    file: tokio::fs::File,
    len: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, BodyError>> + Send {
    stream::unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let want = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
        let mut buf = vec![0u8; want];
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(BodyError::Io("file shorter than expected".into())),
                (file, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
            }
            Err(e) => Some((Err(BodyError::Io(e.to_string())), (file, 0))),
        }
    })
}

/// Passes `inner` through, failing when it yields more or fewer than `len` bytes.
fn checked(
    len: u64,
    inner: BoxStream<'static, Result<Bytes, BodyError>>,
) -> BoxStream<'static, Result<Bytes, BodyError>> {
    stream::unfold(
        (inner, 0u64, false),
        move |(mut inner, seen, done)| async move {
            if done {
                return None;
            }
            match inner.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > len {
                        let e = BodyError::Length {
                            expected: len,
                            got: seen,
                        };
                        return Some((Err(e), (inner, seen, true)));
                    }
                    Some((Ok(chunk), (inner, seen, false)))
                }
                Some(Err(e)) => Some((Err(e), (inner, seen, true))),
                None if seen == len => None,
                None => {
                    let e = BodyError::Length {
                        expected: len,
                        got: seen,
                    };
                    Some((Err(e), (inner, seen, true)))
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> BoxStream<'static, Result<Bytes, BodyError>> {
        let v: Vec<Result<Bytes, BodyError>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        stream::iter(v).boxed()
    }

    #[tokio::test]
    async fn a_body_yields_exactly_its_length() {
        let b = Body::new(6, chunks(&[b"abc", b"def"]));
        assert_eq!(b.collect(100).await.unwrap(), Bytes::from_static(b"abcdef"));
        let short = Body::new(7, chunks(&[b"abc", b"def"]));
        assert_eq!(
            short.collect(100).await,
            Err(BodyError::Length {
                expected: 7,
                got: 6
            })
        );
        let long = Body::new(5, chunks(&[b"abc", b"def"]));
        assert!(matches!(
            long.collect(100).await,
            Err(BodyError::Length { expected: 5, .. })
        ));
        assert!(
            Body::from_bytes(Bytes::new())
                .collect(0)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_stalled_body_fails_after_the_progress_timeout() {
        let stalled = stream::iter([Ok(Bytes::from_static(b"ab"))])
            .chain(stream::pending())
            .boxed();
        let idle = Duration::from_millis(50);
        let mut b = Body::new(4, stalled).with_progress_timeout(idle);
        assert_eq!(b.next().await, Some(Ok(Bytes::from_static(b"ab"))));
        assert_eq!(b.next().await, Some(Err(BodyError::Stalled(idle))));
        assert_eq!(b.next().await, None);
    }

    #[tokio::test]
    async fn file_bodies_stream_in_chunks() {
        let dir = std::env::temp_dir().join(format!("chordnet-body-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let data: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut b = Body::from_file(path.clone(), data.len() as u64);
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(c) = b.next().await {
            let c = c.unwrap();
            sizes.push(c.len());
            all.extend_from_slice(&c);
        }
        assert_eq!(all, data);
        assert_eq!(sizes, vec![CHUNK, CHUNK, 17]);
        let missing = Body::from_file(dir.join("nope"), 3).collect(10).await;
        assert!(matches!(missing, Err(BodyError::Io(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
