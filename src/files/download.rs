//! Downloads as they stream out: a file found by [`Files::download`] is either one object from
//! a holder (inline files, small shared files) or a manifest whose blocks are fetched only
//! when the body is read — a window of them in parallel, each verified against its digest
//! before a byte of it is handed on, in order — from the blocks' holders on the ring, or, for
//! a shared file, spread over the providers that share it. A byte range fetches only the
//! blocks that hold it.

use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};

use super::lists::Shape;
use super::manifest::{Geometry, window};
use super::ops::{Files, FilesError};
use super::providers::Providers;
use super::{FileMeta, Layout};
use crate::transport::{Body, BodyError};

/// A file found for download: its record, and where its bytes come from.
pub struct Download {
    pub meta: FileMeta,
    source: Source,
}

enum Source {
    /// One object's content, as a holder or provider streams it.
    Whole(Body),
    /// The blocks of a manifest, fetched by this peer's file layer.
    Blocks(BlockSource),
}

/// Where the blocks of a manifest come from.
#[derive(Clone)]
enum BlockSource {
    /// Their holders on the ring.
    Ring(Arc<Files>),
    /// The providers of a shared file (each block from one of them, spread).
    Providers(Arc<Files>, Arc<Providers>),
}

impl BlockSource {
    /// List `k` (`digest`) of a manifest of `shape`, verified and decoded: from the ring, or
    /// from the providers of a shared file (which serve their manifests' lists).
    async fn fetch_list(
        &self,
        digest: &str,
        shape: Shape,
        k: u64,
    ) -> Result<Vec<String>, FilesError> {
        match self {
            BlockSource::Ring(files) => files.fetch_list(digest, shape, k).await,
            BlockSource::Providers(files, set) => {
                files.fetch_provided_list(set, digest, shape, k).await
            }
        }
    }

    /// Block `i` (`digest`, `len` bytes), verified.
    async fn fetch(&self, i: u64, digest: &str, len: u64) -> Result<Bytes, FilesError> {
        match self {
            BlockSource::Ring(files) => files.fetch_block(digest, len).await,
            BlockSource::Providers(files, set) => files.fetch_provided(set, i, digest, len).await,
        }
    }
}

impl Download {
    pub(super) fn whole(meta: FileMeta, body: Body) -> Download {
        Download {
            meta,
            source: Source::Whole(body),
        }
    }

    pub(super) fn blocks(meta: FileMeta, files: Arc<Files>) -> Download {
        Download {
            meta,
            source: Source::Blocks(BlockSource::Ring(files)),
        }
    }

    /// A shared file in blocks, from `providers`.
    pub(super) fn provided(meta: FileMeta, files: Arc<Files>, providers: Providers) -> Download {
        Download {
            meta,
            source: Source::Blocks(BlockSource::Providers(files, Arc::new(providers))),
        }
    }

    /// Whether the bytes come from blocks (each verified on its own).
    pub fn is_blocks(&self) -> bool {
        matches!(self.source, Source::Blocks(_))
    }

    /// The bytes `range` (first and last byte, inclusive; both below the size) or all of them.
    pub fn body(self, range: Option<(u64, u64)>) -> Body {
        let size = self.meta.size;
        let (first, last) = match range {
            Some(r) => r,
            None if size == 0 => return Body::empty(),
            None => (0, size - 1),
        };
        match (self.source, &self.meta.layout) {
            (
                Source::Blocks(from),
                layout @ (Layout::Blocks { block_size, .. } | Layout::Lists { block_size, .. }),
            ) => {
                let g = Geometry {
                    size,
                    block_size: *block_size,
                };
                let listed = Listed::of(layout, g);
                block_body(from, g, listed, first, last)
            }
            (Source::Whole(body), _) if range.is_none() => body,
            (Source::Whole(body), _) => slice(body, first, last),
            (Source::Blocks(_), _) => Body::new(
                last - first + 1,
                stream::iter([Err(BodyError::Io("a manifest without blocks".into()))]).boxed(),
            ),
        }
    }
}

/// Where a manifest lists its blocks' digests.
enum Listed {
    /// In the record itself.
    Inline(Arc<Vec<String>>),
    /// In list blocks.
    Lists(Arc<Vec<String>>, Shape),
}

impl Listed {
    fn of(layout: &Layout, g: Geometry) -> Listed {
        match layout {
            Layout::Lists {
                per_list, lists, ..
            } => Listed::Lists(
                Arc::new(lists.clone()),
                Shape {
                    blocks: g.size.div_ceil(g.block_size.max(1)),
                    per_list: *per_list,
                },
            ),
            Layout::Blocks { digests, .. } => Listed::Inline(Arc::new(digests.clone())),
            _ => Listed::Inline(Arc::default()),
        }
    }

    /// The digests of blocks `blocks`, in order: from the record, or from the list blocks
    /// that hold them (only those, each fetched and verified when its first block is next).
    fn digests(self, from: BlockSource, blocks: RangeInclusive<u64>) -> DigestStream {
        let no = |i: u64| BodyError::Io(format!("no block {i} in the manifest"));
        match self {
            Listed::Inline(digests) => stream::iter(blocks)
                .map(move |i| {
                    usize::try_from(i)
                        .ok()
                        .and_then(|k| digests.get(k))
                        .map(|d| (i, d.clone()))
                        .ok_or_else(|| no(i))
                })
                .boxed(),
            Listed::Lists(lists, shape) => {
                let (a, b) = (*blocks.start(), *blocks.end());
                stream::iter(shape.list_of(a)..=shape.list_of(b))
                    .then(move |k| {
                        let (from, lists) = (from.clone(), Arc::clone(&lists));
                        async move {
                            let digest = usize::try_from(k)
                                .ok()
                                .and_then(|k| lists.get(k))
                                .ok_or_else(|| {
                                    BodyError::Io(format!("no list {k} in the manifest"))
                                })?;
                            let digests = from
                                .fetch_list(digest, shape, k)
                                .await
                                .map_err(|e| BodyError::Io(e.to_string()))?;
                            Ok::<_, BodyError>((k, digests))
                        }
                    })
                    .flat_map(move |list| {
                        let items: Vec<Result<(u64, String), BodyError>> = match list {
                            Err(e) => vec![Err(e)],
                            Ok((k, digests)) => {
                                let base = k.saturating_mul(shape.per_list);
                                digests
                                    .into_iter()
                                    .enumerate()
                                    .map(|(j, d)| (base + j as u64, d))
                                    .filter(|(i, _)| (a..=b).contains(i))
                                    .map(Ok)
                                    .collect()
                            }
                        };
                        stream::iter(items)
                    })
                    .boxed()
            }
        }
    }
}

type DigestStream = BoxStream<'static, Result<(u64, String), BodyError>>;

/// Bytes `first..=last` of a file in blocks: the blocks holding them, `window` at a time in
/// parallel, verified, in order, trimmed at both ends.
fn block_body(from: BlockSource, g: Geometry, listed: Listed, first: u64, last: u64) -> Body {
    let chunks = listed
        .digests(from.clone(), g.blocks_of(first, last))
        .map(move |entry| {
            let from = from.clone();
            async move {
                let (i, digest) = entry?;
                let data = from
                    .fetch(i, &digest, g.block_len(i))
                    .await
                    .map_err(|e| BodyError::Io(e.to_string()))?;
                let start = i * g.block_size;
                let from = first.saturating_sub(start) as usize;
                let to = (last + 1 - start).min(data.len() as u64) as usize;
                Ok::<Bytes, BodyError>(data.slice(from..to))
            }
        })
        .buffered(window(g.block_size));
    Body::new(last - first + 1, chunks.boxed())
}

/// Bytes `first..=last` of `body` (the others are read and dropped: an inline file is at most
/// one block).
fn slice(body: Body, first: u64, last: u64) -> Body {
    let mut offset = 0u64;
    let chunks = body.into_stream().filter_map(move |chunk| {
        let out = match chunk {
            Err(e) => Some(Err(e)),
            Ok(c) => {
                let (start, end) = (offset, offset + c.len() as u64);
                offset = end;
                let from = first.max(start);
                let to = (last + 1).min(end);
                (from < to).then(|| Ok(c.slice((from - start) as usize..(to - start) as usize)))
            }
        };
        std::future::ready(out)
    });
    Body::new(last - first + 1, chunks.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(mut body: Body) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = body.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn slices_of_a_stream_are_exact() {
        let data: Vec<u8> = (0..=255).collect();
        let body = || {
            let chunks: Vec<Result<Bytes, BodyError>> = data
                .chunks(10)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Body::new(256, stream::iter(chunks).boxed())
        };
        for (a, b) in [(0, 0), (0, 255), (9, 10), (255, 255), (17, 203)] {
            let got = read(slice(body(), a, b)).await;
            assert_eq!(got, data[a as usize..=b as usize], "{a}-{b}");
        }
    }
}
