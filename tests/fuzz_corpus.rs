//! The fuzz targets' inputs under `cargo test` (issue 14, "Fuzzing"): every entry point of
//! `chordnet::fuzzing` (the decoders a remote peer or a user reaches) runs over valid seeds, the
//! files committed under `fuzz/seeds/<target>/` (inputs a fuzzing run found worth keeping) and
//! 4,000 seeded mutations of each seed: bit flips, truncations, splices, repeated bytes and
//! boundary numbers. Deterministic: the same inputs on every run. The real fuzzing runs are
//! `cargo +nightly fuzz run TARGET` in `fuzz/` (README "Fuzzing").
//!
//! `CHORDNET_WRITE_FUZZ_SEEDS=1` writes the valid seeds into `fuzz/seeds/` (the starting corpus
//! of a fuzzing run).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chordnet::id::Id;
use chordnet::wire::files::{
    BlobAnswer, BlobQuery, FileMeta, Layout, ObjectInfo, ProviderRecord, Version,
};
use chordnet::wire::ring::{Request, RequestEnvelope, Response, ResponseEnvelope};
use chordnet::wire::{Address, Peer, RingId};

const MUTATIONS: usize = 4_000;

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn peer(i: u64) -> Peer {
    Peer {
        id: Id::hash(format!("peer-{i}")),
        address: Address::new(format!("10.0.0.{i}:7000")),
    }
}

fn meta(layout: Layout, deleted: bool) -> FileMeta {
    FileMeta {
        name: "reports/q3 ünï.pdf".into(),
        id: Id::hash("reports/q3 ünï.pdf"),
        size: 5,
        sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
        version: Version {
            millis: 1_765_000_000_000,
            logical: 3,
            origin: Id::hash("peer-1"),
        },
        deleted,
        layout,
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("encodes")
}

/// Valid inputs of each target.
fn seeds() -> BTreeMap<&'static str, Vec<Vec<u8>>> {
    let mut s: BTreeMap<&'static str, Vec<Vec<u8>>> = BTreeMap::new();
    let envelope = |body: Request| RequestEnvelope {
        protocol: 1,
        ring_id: Some(RingId(0x1234_5678_9abc_def0_1122_3344_5566_7788)),
        from: peer(1),
        body,
        renamed_from: None,
    };
    let requests = [
        Request::FindSuccessor {
            target: Id::hash("k"),
        },
        Request::GetNeighbors,
        Request::Notify,
        Request::Ping,
        Request::Leaving {
            predecessor: Some(peer(2)),
            successors: vec![peer(3), peer(4)],
        },
        Request::MergeHint {
            contact: peer(5),
            ttl: 3,
            toward_successor: true,
        },
    ];
    let responses = [
        Response::Found {
            successors: vec![peer(3), peer(4)],
            owns_after: Some(peer(2).id),
        },
        Response::Closer {
            candidates: vec![peer(6)],
        },
        Response::Neighbors {
            predecessor: Some(peer(2)),
            successors: vec![peer(3)],
            hint: None,
        },
        Response::Ack,
    ];
    let mut peer_inputs: Vec<Vec<u8>> = requests.into_iter().map(|r| json(&envelope(r))).collect();
    for r in responses {
        let v = serde_json::json!({"protocol": 1, "ring_id": null, "from": peer(2), "body": r});
        peer_inputs.push(serde_json::to_vec(&v).expect("json"));
    }
    // The envelope decodes as a response too (what a peer reads back).
    assert!(
        peer_inputs
            .iter()
            .skip(6)
            .all(|i| serde_json::from_slice::<ResponseEnvelope>(i).is_ok()),
        "response seeds decode"
    );
    s.insert("peer_message", peer_inputs);

    let blocks = Layout::Blocks {
        block_size: 1 << 20,
        digests: vec!["ab".repeat(32), "cd".repeat(32)],
    };
    let lists = Layout::Lists {
        block_size: 64 << 10,
        per_list: 16_384,
        lists: vec!["ef".repeat(32), "01".repeat(32)],
    };
    let record = ProviderRecord {
        name: "song.mp3".into(),
        id: Id::hash("song.mp3"),
        size: 42,
        sha256: "ab".repeat(32),
        peer_id: Id::hash("peer-7"),
        peer: "10.0.0.7:7000".into(),
    };
    s.insert(
        "blob_message",
        vec![
            json(&BlobQuery::Info { id: Id::hash("x") }),
            json(&BlobQuery::PutProvider {
                record: record.clone(),
            }),
            json(&BlobQuery::Missing {
                have: vec![(Id::hash("a"), meta(Layout::Inline, false).version)],
            }),
            json(&BlobQuery::Referenced {
                ids: vec![Id::hash("b")],
            }),
            json(&BlobAnswer::Info(ObjectInfo {
                meta: Some(meta(blocks.clone(), false)),
                providers: vec![record],
            })),
            json(&BlobAnswer::Done),
            json(&meta(Layout::Block, false)),
            json(&meta(Layout::Inline, true)),
            json(&BlobAnswer::Info(ObjectInfo {
                meta: Some(meta(lists.clone(), false)),
                providers: Vec::new(),
            })),
        ],
    );

    let frame = |m: &FileMeta, content: &[u8], cut: u8| {
        let head = json(m);
        let mut out = vec![cut];
        out.extend_from_slice(&(head.len() as u32).to_be_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(content);
        out
    };
    s.insert(
        "object_frame",
        vec![
            frame(&meta(Layout::Inline, false), b"hello", 1),
            frame(&meta(Layout::Inline, false), b"hello", 200),
            frame(&meta(Layout::Inline, true), b"", 7),
            frame(&meta(blocks, false), b"", 64),
            frame(&meta(lists, false), b"", 64),
        ],
    );
    s.insert(
        "config_toml",
        vec![
            include_bytes!("../chordnet.example.toml").to_vec(),
            b"[ring]\nsuccessors = 8\nrpc_timeout = \"250ms\"\n[files]\nmax_file_size = \"1GiB\"\n"
                .to_vec(),
            b"[api]\nmax_connections = 10\nidle_timeout = \"5s\"\n".to_vec(),
        ],
    );
    s.insert(
        "file_name",
        [
            "report.pdf",
            "a-b_c (1).txt",
            "ünïcødé ☃",
            "x",
            ".hidden",
            "a..b",
        ]
        .iter()
        .map(|n| n.as_bytes().to_vec())
        .collect(),
    );
    let range = |size: u64, h: &str| {
        let mut out = size.to_le_bytes().to_vec();
        out.extend_from_slice(h.as_bytes());
        out
    };
    s.insert(
        "range_header",
        vec![
            range(1000, "bytes=0-499"),
            range(1000, "bytes=500-"),
            range(1000, "bytes=-200"),
            range(0, "bytes=0-0"),
            range(u64::MAX, "bytes=18446744073709551614-"),
        ],
    );
    let list = |digests: &[[u8; 32]]| {
        let mut out = (digests.len() as u16).to_le_bytes().to_vec();
        let block = chordnet::files::lists::encode_raw(digests).expect("a list block");
        out.extend_from_slice(&block);
        out
    };
    s.insert(
        "list_block",
        vec![
            list(&[[0u8; 32]]),
            list(&[[0xab; 32], [0x01; 32], [0xff; 32]]),
            list(&(0..40u8).map(|k| [k; 32]).collect::<Vec<_>>()),
        ],
    );
    s.insert(
        "request_head",
        vec![
            b"GET /v1/node HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            b"PUT /v1/files/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            b"PUT /v1/files/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ],
    );
    s
}

/// One mutation of `seed`.
fn mutate(seed: &[u8], rng: &mut Rng, all: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(at),
            2 => {
                let other = &all[rng.below(all.len())];
                let from = rng.below(other.len() + 1);
                v.splice(at..at, other[from..].iter().copied().take(64));
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let b = v[i];
                v.splice(i..i, std::iter::repeat_n(b, 1 + rng.below(300)));
            }
            4 => {
                let boundary: &[&[u8]] = &[
                    b"18446744073709551615",
                    b"-1",
                    b"4294967296",
                    b"1e308",
                    b"null",
                    b"\"\"",
                    b"\xff\xff\xff\xff",
                    b"\0",
                    b"\\u0000",
                ];
                v.splice(at..at, boundary[rng.below(boundary.len())].iter().copied());
            }
            5 if v.len() > 1 => {
                let end = at + rng.below(v.len() - at.min(v.len()) + 1);
                v.drain(at.min(v.len())..end.min(v.len()));
            }
            _ => v.insert(at, rng.next() as u8),
        }
    }
    v
}

fn committed(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

#[test]
fn every_decoder_survives_its_corpus_and_mutations() {
    let seeds = seeds();
    let names: Vec<&str> = chordnet::fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        seeds.keys().copied().collect::<Vec<_>>().len(),
        names.len(),
        "a seed list for every target: {names:?}"
    );
    let write = std::env::var_os("CHORDNET_WRITE_FUZZ_SEEDS").is_some();
    for (i, (name, target)) in chordnet::fuzzing::TARGETS.iter().enumerate() {
        let valid = seeds
            .get(name)
            .unwrap_or_else(|| panic!("no seeds for {name}"));
        if write {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/seeds")
                .join(name);
            std::fs::create_dir_all(&dir).expect("seed dir");
            for (k, input) in valid.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{k}")), input).expect("seed");
            }
        }
        let mut inputs: Vec<Vec<u8>> = valid.clone();
        inputs.extend(committed(name));
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
        let base = inputs.clone();
        for k in 0..MUTATIONS {
            inputs.push(mutate(&base[k % base.len()], &mut rng, &base));
        }
        for input in &inputs {
            let result = std::panic::catch_unwind(|| target(input));
            assert!(
                result.is_ok(),
                "{name} panicked on {:?}",
                String::from_utf8_lossy(input)
            );
        }
        println!("{name}: {} inputs", inputs.len());
    }
}

/// The seeds are valid: the mutations start from inputs the decoders accept.
#[test]
fn the_seeds_decode() {
    let s = seeds();
    for input in &s["peer_message"][..6] {
        serde_json::from_slice::<RequestEnvelope>(input).expect("request seed");
    }
    for input in &s["config_toml"] {
        let text = std::str::from_utf8(input).expect("utf-8");
        chordnet::config::Config::from_toml_str(text).expect("config seed");
    }
    for input in &s["list_block"] {
        let (count, block) = input.split_at(2);
        let expected = u64::from(u16::from_le_bytes([count[0], count[1]]));
        chordnet::files::lists::decode(block, expected).expect("list seed");
    }
    for input in &s["file_name"] {
        chordnet::files::validate_name(std::str::from_utf8(input).expect("utf-8"))
            .expect("name seed");
    }
}
