//! Prometheus metrics of one peer. Names follow the Prometheus conventions: `chordnet_` prefix,
//! `_total` for counters, base units (`_seconds`, `_bytes`).

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric a peer exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub lookup_hops: Histogram,
    pub lookup_duration: Histogram,
    pub lookups: IntCounterVec,
    /// API lookups answered from what the responsible peer said this period (no message).
    pub lookups_reused: IntCounter,
    pub joins: IntCounter,
    pub leaves: IntCounter,
    pub peer_failures: IntCounter,
    pub peers_left: IntCounter,
    pub successor_changes: IntCounter,
    pub predecessor_changes: IntCounter,
    pub stabilization_rounds: IntCounter,
    pub seconds_since_stabilization: Gauge,
    pub ring_size: Gauge,
    pub successors: IntGauge,
    pub predecessor_known: IntGauge,
    pub keys_stored: IntGauge,
    pub bytes_stored: IntGauge,
    pub replica_repairs: IntCounter,
    pub replica_deficit: IntGauge,
    pub handoff_bytes: IntCounter,
    pub rpcs: IntCounterVec,
    pub rpc_duration: HistogramVec,
    pub ring_info: IntGaugeVec,
    pub ready: IntGauge,
    pub protocol_rejections: IntCounter,
    pub write_quorum_failures: IntCounterVec,
    pub read_repairs: IntCounter,
    pub blocks_stored: IntGauge,
    /// Block copies that failed their digest check (on a holder's disk or in transit).
    pub blocks_corrupt: IntCounter,
    /// Blocks no live manifest referenced any more, removed.
    pub blocks_collected: IntCounter,
    /// Blocks of shared files this peer served as their provider.
    pub shared_blocks_served: IntCounter,
    /// Blocks a provider sent that failed their digest (the provider is skipped).
    pub shared_blocks_corrupt: IntCounter,
    /// List blocks of shared files' manifests this peer served as their provider.
    pub shared_list_blocks_served: IntCounter,
    pub merges_started: IntCounterVec,
    pub merges_completed: IntCounterVec,
    pub merge_duration: Histogram,
    pub foreign_rings: IntGaugeVec,
    /// API requests refused for their bearer token, by reason.
    pub api_auth_failures: IntCounterVec,
    /// API connections open now.
    pub api_connections: IntGauge,
    /// API connections refused (503) because `api.max_connections` were open.
    pub api_connections_shed: IntCounter,
    /// API connections closed for idleness or a request head that did not arrive in time.
    pub api_connections_timed_out: IntCounter,
    /// Uploads and downloads in progress on the API.
    pub api_transfers: IntGauge,
    /// Uploads and downloads refused (503) because `api.max_transfers` were in progress.
    pub api_transfers_shed: IntCounter,
    /// Peer messages refused by the ring secret, by reason (`transport::auth`).
    pub auth_rejections: IntCounterVec,
    /// Re-reads of the ring secret file that changed the keys, or failed.
    pub secret_reloads: IntCounterVec,
    /// Ring events the stream acknowledged, by kind (`events`).
    pub events_published: IntCounterVec,
    /// Ring events dropped because the publisher's queue was full.
    pub events_dropped: IntCounter,
    /// Re-reads of the TLS files that changed the certificates, by result (`ok`, `error`).
    pub tls_reloads: IntCounterVec,
    /// Connections to the peer port whose TLS handshake failed or timed out.
    pub tls_handshake_failures: IntCounter,
    /// Resident bytes of executable code given back to the page cache (`memory.*`).
    pub code_released_bytes: IntCounter,
}

/// Why metrics could not be set up (a programming error in metric definitions).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let hops_buckets: Vec<f64> = (0..=16).map(f64::from).chain([20.0, 32.0]).collect();
        let latency_buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let m = Metrics {
            lookup_hops: Histogram::with_opts(
                HistogramOpts::new(
                    "chordnet_lookup_hops",
                    "Remote peers that answered a lookup",
                )
                .buckets(hops_buckets),
            )?,
            lookup_duration: Histogram::with_opts(
                HistogramOpts::new("chordnet_lookup_duration_seconds", "Lookup latency")
                    .buckets(latency_buckets.clone()),
            )?,
            lookups: IntCounterVec::new(
                Opts::new("chordnet_lookups_total", "Lookups by outcome"),
                &["outcome"],
            )?,
            lookups_reused: IntCounter::new(
                "chordnet_lookup_answers_reused_total",
                "Lookups answered from what the responsible peer said this stabilization period",
            )?,
            joins: IntCounter::new("chordnet_joins_total", "Times this peer joined a ring")?,
            leaves: IntCounter::new("chordnet_leaves_total", "Graceful leaves of this peer")?,
            peer_failures: IntCounter::new(
                "chordnet_peer_failures_detected_total",
                "Peers this peer found dead and removed",
            )?,
            peers_left: IntCounter::new(
                "chordnet_peer_leaves_seen_total",
                "Neighbours that announced a graceful leave",
            )?,
            successor_changes: IntCounter::new(
                "chordnet_successor_changes_total",
                "Changes of the immediate successor",
            )?,
            predecessor_changes: IntCounter::new(
                "chordnet_predecessor_changes_total",
                "Changes of the predecessor (key range changes)",
            )?,
            stabilization_rounds: IntCounter::new(
                "chordnet_stabilization_rounds_total",
                "Completed stabilization rounds",
            )?,
            seconds_since_stabilization: Gauge::new(
                "chordnet_stabilization_last_success_age_seconds",
                "Seconds since the last completed stabilization round",
            )?,
            ring_size: Gauge::new(
                "chordnet_ring_size_estimate",
                "Ring members estimated from the successor list's spread",
            )?,
            successors: IntGauge::new(
                "chordnet_successor_list_length",
                "Entries in the successor list",
            )?,
            predecessor_known: IntGauge::new(
                "chordnet_predecessor_known",
                "1 when the predecessor is known",
            )?,
            keys_stored: IntGauge::new("chordnet_keys_stored", "Keys stored on this peer")?,
            bytes_stored: IntGauge::new("chordnet_stored_bytes", "Bytes stored on this peer")?,
            replica_repairs: IntCounter::new(
                "chordnet_replica_repairs_total",
                "Replicas re-created after a failure",
            )?,
            replica_deficit: IntGauge::new(
                "chordnet_replica_deficit",
                "Keys this peer is responsible for with fewer copies than the replication factor",
            )?,
            handoff_bytes: IntCounter::new(
                "chordnet_handoff_bytes_total",
                "Bytes handed to other peers on join or leave",
            )?,
            rpcs: IntCounterVec::new(
                Opts::new(
                    "chordnet_peer_rpcs_total",
                    "Peer RPCs sent, by method and outcome",
                ),
                &["method", "outcome"],
            )?,
            rpc_duration: HistogramVec::new(
                HistogramOpts::new("chordnet_peer_rpc_duration_seconds", "Peer RPC latency")
                    .buckets(latency_buckets),
                &["method"],
            )?,
            ring_info: IntGaugeVec::new(
                Opts::new(
                    "chordnet_ring_info",
                    "The ring this peer belongs to (value 1)",
                ),
                &["ring_id", "node_id"],
            )?,
            ready: IntGauge::new("chordnet_ready", "1 when the peer is ready")?,
            protocol_rejections: IntCounter::new(
                "chordnet_peer_protocol_rejections_total",
                "Peer messages refused for a peer-protocol version this build does not speak",
            )?,
            write_quorum_failures: IntCounterVec::new(
                Opts::new(
                    "chordnet_write_quorum_failures_total",
                    "Uploads and deletes not acknowledged: fewer copies than files.write_quorum",
                ),
                &["op"],
            )?,
            read_repairs: IntCounter::new(
                "chordnet_read_repairs_total",
                "Stale copies a download found and sent the newest version to",
            )?,
            blocks_stored: IntGauge::new(
                "chordnet_blocks_stored",
                "Content-addressed blocks stored on this peer",
            )?,
            blocks_corrupt: IntCounter::new(
                "chordnet_blocks_corrupt_total",
                "Block copies that failed their SHA-256 check (on disk or in transit)",
            )?,
            blocks_collected: IntCounter::new(
                "chordnet_blocks_collected_total",
                "Blocks no live file referenced any more, removed by garbage collection",
            )?,
            shared_blocks_served: IntCounter::new(
                "chordnet_shared_blocks_served_total",
                "Blocks of files in this peer's shared directory served to downloaders",
            )?,
            shared_blocks_corrupt: IntCounter::new(
                "chordnet_shared_blocks_corrupt_total",
                "Blocks a provider of a shared file sent that failed their SHA-256 check",
            )?,
            shared_list_blocks_served: IntCounter::new(
                "chordnet_shared_list_blocks_served_total",
                "List blocks of the manifests of files in this peer's shared directory served",
            )?,
            merges_started: IntCounterVec::new(
                Opts::new(
                    "chordnet_ring_merges_started_total",
                    "Ring unifications this peer started, by trigger (passive: a peer declared \
                     dead answered from outside this ring; hint: a neighbour passed one on; \
                     explicit: asked for; seed: a configured seed answered from outside this \
                     ring)",
                ),
                &["trigger"],
            )?,
            merges_completed: IntCounterVec::new(
                Opts::new(
                    "chordnet_ring_merges_completed_total",
                    "Ring unifications this peer completed, by outcome (merged: it found a \
                     closer successor in the other ring; unchanged: nothing closer there)",
                ),
                &["outcome"],
            )?,
            merge_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "chordnet_ring_merge_duration_seconds",
                    "From the start of this peer's ring unification to its completion",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )?,
            foreign_rings: IntGaugeVec::new(
                Opts::new(
                    "chordnet_foreign_ring_seen",
                    "A peer this peer knew answered from another ring id (value 1; never merged \
                     automatically)",
                ),
                &["ring_id"],
            )?,
            api_auth_failures: IntCounterVec::new(
                Opts::new(
                    "chordnet_api_auth_failures_total",
                    "API requests refused for their bearer token (missing: none sent; unknown: \
                     not in api.tokens_file; forbidden: a role too weak)",
                ),
                &["reason"],
            )?,
            api_connections: IntGauge::new("chordnet_api_connections", "API connections open now")?,
            api_connections_shed: IntCounter::new(
                "chordnet_api_connections_shed_total",
                "API connections answered 503 and closed because api.max_connections were open",
            )?,
            api_connections_timed_out: IntCounter::new(
                "chordnet_api_connections_timed_out_total",
                "API connections closed after api.idle_timeout without a request, or a request \
                 head that did not arrive whole in time",
            )?,
            api_transfers: IntGauge::new(
                "chordnet_api_transfers",
                "Uploads and downloads in progress on the REST API",
            )?,
            api_transfers_shed: IntCounter::new(
                "chordnet_api_transfers_shed_total",
                "Uploads and downloads answered 503 because api.max_transfers were in progress",
            )?,
            auth_rejections: IntCounterVec::new(
                Opts::new(
                    "chordnet_peer_auth_rejections_total",
                    "Peer messages refused for their ring-secret authenticator, by reason",
                ),
                &["reason"],
            )?,
            secret_reloads: IntCounterVec::new(
                Opts::new(
                    "chordnet_ring_secret_reloads_total",
                    "Re-reads of the ring secret file that changed the keys or failed, by outcome",
                ),
                &["outcome"],
            )?,
            events_published: IntCounterVec::new(
                Opts::new(
                    "chordnet_events_published_total",
                    "Ring events the JetStream stream acknowledged, by kind",
                ),
                &["kind"],
            )?,
            events_dropped: IntCounter::new(
                "chordnet_events_dropped_total",
                "Ring events dropped because the publisher's queue (events.queue) was full",
            )?,
            tls_reloads: IntCounterVec::new(
                Opts::new(
                    "chordnet_tls_reloads_total",
                    "Re-reads of the TLS files (security.tls) after they changed, by result",
                ),
                &["result"],
            )?,
            tls_handshake_failures: IntCounter::new(
                "chordnet_peer_tls_handshake_failures_total",
                "Connections to the peer port whose TLS handshake failed or timed out",
            )?,
            code_released_bytes: IntCounter::new(
                "chordnet_code_released_bytes_total",
                "Resident bytes of the executable's code unmapped after start-up and every \
                 memory.release_code_interval (clean page-cache pages; code maps them again as \
                 it runs)",
            )?,
            registry,
        };
        m.register_all()?;
        Ok(m)
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.lookup_hops.clone()))?;
        r.register(Box::new(self.api_auth_failures.clone()))?;
        for reason in ["missing", "unknown", "forbidden"] {
            self.api_auth_failures.with_label_values(&[reason]);
        }
        r.register(Box::new(self.api_connections.clone()))?;
        r.register(Box::new(self.api_connections_shed.clone()))?;
        r.register(Box::new(self.api_connections_timed_out.clone()))?;
        r.register(Box::new(self.api_transfers.clone()))?;
        r.register(Box::new(self.api_transfers_shed.clone()))?;
        r.register(Box::new(self.lookup_duration.clone()))?;
        r.register(Box::new(self.lookups.clone()))?;
        r.register(Box::new(self.lookups_reused.clone()))?;
        r.register(Box::new(self.joins.clone()))?;
        r.register(Box::new(self.leaves.clone()))?;
        r.register(Box::new(self.peer_failures.clone()))?;
        r.register(Box::new(self.peers_left.clone()))?;
        r.register(Box::new(self.successor_changes.clone()))?;
        r.register(Box::new(self.predecessor_changes.clone()))?;
        r.register(Box::new(self.stabilization_rounds.clone()))?;
        // Process-wide (one exporter per process), shown by every peer of the process.
        r.register(Box::new(crate::telemetry::export::spans_exported().clone()))?;
        r.register(Box::new(
            crate::telemetry::export::export_failures().clone(),
        ))?;
        r.register(Box::new(self.seconds_since_stabilization.clone()))?;
        r.register(Box::new(self.ring_size.clone()))?;
        r.register(Box::new(self.successors.clone()))?;
        r.register(Box::new(self.predecessor_known.clone()))?;
        r.register(Box::new(self.keys_stored.clone()))?;
        r.register(Box::new(self.bytes_stored.clone()))?;
        r.register(Box::new(self.replica_repairs.clone()))?;
        r.register(Box::new(self.replica_deficit.clone()))?;
        r.register(Box::new(self.handoff_bytes.clone()))?;
        r.register(Box::new(self.rpcs.clone()))?;
        r.register(Box::new(self.rpc_duration.clone()))?;
        r.register(Box::new(self.ring_info.clone()))?;
        r.register(Box::new(self.ready.clone()))?;
        r.register(Box::new(self.protocol_rejections.clone()))?;
        r.register(Box::new(self.write_quorum_failures.clone()))?;
        r.register(Box::new(self.read_repairs.clone()))?;
        r.register(Box::new(self.blocks_stored.clone()))?;
        r.register(Box::new(self.blocks_corrupt.clone()))?;
        r.register(Box::new(self.blocks_collected.clone()))?;
        r.register(Box::new(self.shared_blocks_served.clone()))?;
        r.register(Box::new(self.shared_blocks_corrupt.clone()))?;
        r.register(Box::new(self.shared_list_blocks_served.clone()))?;
        r.register(Box::new(self.merges_started.clone()))?;
        r.register(Box::new(self.merges_completed.clone()))?;
        r.register(Box::new(self.merge_duration.clone()))?;
        r.register(Box::new(self.foreign_rings.clone()))?;
        r.register(Box::new(self.auth_rejections.clone()))?;
        r.register(Box::new(self.secret_reloads.clone()))?;
        r.register(Box::new(self.events_published.clone()))?;
        for kind in crate::events::EventKind::ALL {
            self.events_published.with_label_values(&[kind.as_str()]);
        }
        r.register(Box::new(self.events_dropped.clone()))?;
        r.register(Box::new(self.tls_reloads.clone()))?;
        r.register(Box::new(self.tls_handshake_failures.clone()))?;
        r.register(Box::new(self.code_released_bytes.clone()))?;
        Ok(())
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics; an error leaves it empty.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new().unwrap();
        m.lookups.with_label_values(&["ok"]).inc();
        m.rpcs.with_label_values(&["ping", "ok"]).inc();
        m.ring_info.with_label_values(&["r", "n"]).set(1);
        m.rpc_duration.with_label_values(&["ping"]).observe(0.01);
        let text = m.render();
        for name in [
            "chordnet_lookup_hops_bucket",
            "chordnet_lookups_total{outcome=\"ok\"} 1",
            "chordnet_peer_rpcs_total{method=\"ping\",outcome=\"ok\"} 1",
            "chordnet_ring_info{node_id=\"n\",ring_id=\"r\"} 1",
            "chordnet_stabilization_last_success_age_seconds",
            "chordnet_ready 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
