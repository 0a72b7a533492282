//! The gather behind `GET /v1/ring/view`: starting from this peer, ask every peer that any
//! answer names (successor lists, predecessors, fingers) for its card, [`FAN_OUT`] at a time,
//! each bounded by `ring.rpc_timeout` in all. A peer's card comes from its API (`GET /v1/node/view`);
//! when that cannot be reached the peer protocol's `GetNeighbors` still gives its neighbours;
//! a peer that answers neither is unreachable (shown only while a successor list or a
//! predecessor still names it: a finger alone does not keep a dead peer on the page).
//!
//! A peer's API address is its advertised host with this peer's API-to-peer port offset (the
//! layout of a StatefulSet, where every pod uses the same two ports, and of `chordnet dev`);
//! the card must name the expected id and address, or it is not used.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use tokio::task::JoinSet;

use super::agree::{self, Reported};
use super::{FAN_OUT, MAX_CARD, MAX_PEERS, NodeCard, RingNode, RingView, ViewGroup};
use crate::api::App;
use crate::config::Config;
use crate::id::Id;
use crate::ring::Peer;
use crate::runtime::Service;

enum Outcome {
    Mine(Box<NodeCard>),
    Card(Box<NodeCard>),
    Neighbors(Box<NodeCard>),
    Silent,
}

/// The API address of the peer advertised at `address`, by this peer's port offset.
pub fn api_address(config: &Config, address: &str) -> Option<String> {
    let (_, my_peer_port) = config.node.advertise.rsplit_once(':')?;
    let offset = i32::from(config.api.listen.port()) - my_peer_port.parse::<i32>().ok()?;
    let (host, port) = address.rsplit_once(':')?;
    let port = u16::try_from(port.parse::<i32>().ok()? + offset).ok()?;
    (port > 0 && !host.is_empty()).then(|| format!("{host}:{port}"))
}

pub(super) async fn gather(
    app: &App,
    http: &reqwest::Client,
    authorization: Option<HeaderValue>,
) -> RingView {
    let started = Instant::now();
    let config = app.ring.config().clone();
    let timeout = config.ring.rpc_timeout;
    let mine = NodeCard::of(app);
    let me = Peer::new(mine.id, crate::ring::Address::new(&mine.address));

    let mut known: HashMap<Id, Peer> = HashMap::from([(me.id, me.clone())]);
    let mut named: HashMap<Id, usize> = HashMap::new();
    let mut outcomes: HashMap<Id, Outcome> = HashMap::new();
    let mut queue: VecDeque<Peer> = VecDeque::new();
    let mut complete = true;
    let mut tasks: JoinSet<(Peer, Outcome)> = JoinSet::new();
    let mut next = Some(Outcome::Mine(Box::new(mine)));
    let mut from = me;
    loop {
        if let Some(outcome) = next.take() {
            if let Outcome::Mine(c) | Outcome::Card(c) | Outcome::Neighbors(c) = &outcome {
                let ring = c.successors.iter().chain(c.predecessor.as_ref());
                for p in ring {
                    if p.id != c.id {
                        *named.entry(p.id).or_default() += 1;
                    }
                }
                let ring = c.successors.iter().chain(c.predecessor.as_ref());
                for p in ring.chain(c.fingers.iter()) {
                    if known.contains_key(&p.id) {
                        continue;
                    }
                    if known.len() >= MAX_PEERS {
                        complete = false;
                        break;
                    }
                    known.insert(p.id, p.clone());
                    queue.push_back(p.clone());
                }
            }
            outcomes.insert(from.id, outcome);
        }
        while tasks.len() < FAN_OUT {
            let Some(peer) = queue.pop_front() else { break };
            let api = api_address(&config, peer.address.as_str());
            let (http, ring) = (http.clone(), Arc::clone(&app.ring));
            let auth = authorization.clone();
            tasks.spawn(async move {
                // One bound per peer for both attempts: a hung peer costs one time-out.
                let asked = ask(&http, &ring, &peer, api, auth, timeout);
                let outcome = tokio::time::timeout(timeout, asked)
                    .await
                    .unwrap_or(Outcome::Silent);
                (peer, outcome)
            });
        }
        match tasks.join_next().await {
            Some(Ok((peer, outcome))) => {
                from = peer;
                next = Some(outcome);
            }
            Some(Err(_)) => {}
            None => break,
        }
    }
    assemble(app, known, named, outcomes, complete, started)
}

/// One peer's card: from its API, else its neighbours over the peer protocol, else nothing.
async fn ask(
    http: &reqwest::Client,
    ring: &Service,
    peer: &Peer,
    api: Option<String>,
    authorization: Option<HeaderValue>,
    timeout: Duration,
) -> Outcome {
    if let Some(api) = api
        && let Some(mut card) = fetch_card(http, &api, authorization, timeout).await
        && card.id == peer.id
        && card.address == peer.address.as_str()
    {
        card.api = api;
        return Outcome::Card(Box::new(card));
    }
    match ring.neighbors(&peer.address).await {
        Some(n) => Outcome::Neighbors(Box::new(NodeCard {
            ring_id: n.ring_id.map(|r| r.to_string()),
            predecessor: n.predecessor,
            successors: n.successors.into_iter().take(64).collect(),
            ..bare_card(peer, "unknown")
        })),
        None => Outcome::Silent,
    }
}

/// `GET http://{api}/v1/node/view`, bounded in time and size.
async fn fetch_card(
    http: &reqwest::Client,
    api: &str,
    authorization: Option<HeaderValue>,
    timeout: Duration,
) -> Option<NodeCard> {
    let read = async {
        let mut request = http.get(format!("http://{api}/v1/node/view"));
        if let Some(auth) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        let mut resp = request.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.ok()? {
            if body.len() + chunk.len() > MAX_CARD {
                return None;
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice::<NodeCard>(&body).ok()
    };
    tokio::time::timeout(timeout, read)
        .await
        .ok()
        .flatten()
        .map(NodeCard::bounded)
}

fn assemble(
    app: &App,
    known: HashMap<Id, Peer>,
    named: HashMap<Id, usize>,
    mut outcomes: HashMap<Id, Outcome>,
    complete: bool,
    started: Instant,
) -> RingView {
    let replicas = app.ring.config().ring.replicas;
    let me = app.ring.me();
    let mut ids: Vec<Id> = known.keys().copied().collect();
    ids.sort();
    let mut nodes: Vec<RingNode> = Vec::new();
    let mut unreachable: Vec<Peer> = Vec::new();
    for id in ids {
        let named_by = named.get(&id).copied().unwrap_or(0);
        let (card, source) = match outcomes.remove(&id) {
            Some(Outcome::Mine(c)) => (*c, "self"),
            Some(Outcome::Card(c)) => (*c, "api"),
            Some(Outcome::Neighbors(c)) => (*c, "peer"),
            Some(Outcome::Silent) | None => {
                if named_by == 0 {
                    continue;
                }
                let peer = known[&id].clone();
                unreachable.push(peer.clone());
                (bare_card(&peer, "unreachable"), "none")
            }
        };
        nodes.push(RingNode {
            card,
            reachable: source != "none",
            source,
            view_digest: None,
            problem: None,
            named_by,
        });
    }
    let answering: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].reachable).collect();
    let reported: Vec<Reported> = answering
        .iter()
        .map(|&i| {
            let c = &nodes[i].card;
            Reported {
                id: c.id,
                ring_id: c.ring_id.clone(),
                predecessor: c.predecessor.as_ref().map(|p| p.id),
                successors: c.successors.iter().map(|p| p.id).collect(),
            }
        })
        .collect();
    let verdict = agree::judge(&reported, unreachable.len());
    for (&i, v) in answering.iter().zip(verdict.peers) {
        nodes[i].view_digest = Some(v.view_digest);
        nodes[i].problem = v.problem;
    }
    let mut ring_ids: Vec<String> = nodes
        .iter()
        .flat_map(|n| n.card.ring_id.iter().chain(&n.card.foreign_ring_ids))
        .cloned()
        .collect();
    ring_ids.sort();
    ring_ids.dedup();
    let disagreeing = nodes
        .iter()
        .filter(|n| n.problem.is_some())
        .map(|n| n.card.id)
        .collect();
    let gathered_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    RingView {
        ring_id: app.ring.status().ring_id.map(|r| r.to_string()),
        agree: verdict.agree && complete && ring_ids.len() <= 1,
        served_by: me.id,
        nodes,
        unreachable,
        disagreeing,
        ring_ids,
        views: verdict
            .views
            .into_iter()
            .map(|(digest, peers)| ViewGroup { digest, peers })
            .collect(),
        replicas,
        complete,
        gather_ms: started.elapsed().as_millis() as u64,
        gathered_at,
    }
}

/// A card of a peer that sent none: its id and address, `state`, the rest empty.
fn bare_card(peer: &Peer, state: &str) -> NodeCard {
    NodeCard {
        id: peer.id,
        address: peer.address.to_string(),
        api: String::new(),
        transport: String::new(),
        state: state.into(),
        ring_id: None,
        predecessor: None,
        successors: Vec::new(),
        keys: 0,
        bytes: 0,
        fingers: Vec::new(),
        stabilization_rounds: 0,
        seconds_since_stabilization: 0.0,
        ring_size_estimate: 0.0,
        pod: super::pod_from_host(peer.address.as_str()),
        foreign_ring_ids: Vec::new(),
        replicas: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_address_keeps_this_peers_port_offset() {
        let mut c = Config::default();
        c.node.advertise = "chordnet-0.chordnet-headless.ns.svc.cluster.local:7000".into();
        c.api.listen = "0.0.0.0:8080".parse().expect("socket address");
        assert_eq!(
            api_address(&c, "chordnet-3.chordnet-headless.ns.svc.cluster.local:7000").as_deref(),
            Some("chordnet-3.chordnet-headless.ns.svc.cluster.local:8080")
        );
        c.node.advertise = "127.0.0.1:7002".into();
        c.api.listen = "127.0.0.1:8082".parse().expect("socket address");
        assert_eq!(
            api_address(&c, "127.0.0.1:7005").as_deref(),
            Some("127.0.0.1:8085")
        );
        assert_eq!(api_address(&c, "[::1]:7005").as_deref(), Some("[::1]:8085"));
        assert_eq!(api_address(&c, "no-port"), None);
        assert_eq!(api_address(&c, "h:65535"), None);
    }
}
