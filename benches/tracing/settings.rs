//! The bench's sizes (from the environment) and the configuration of every ring.

use std::time::Duration;

pub(crate) struct Settings {
    pub(crate) lookups: usize,
    pub(crate) rounds: usize,
    pub(crate) concurrency: usize,
    pub(crate) peers: usize,
    pub(crate) grpc: bool,
    pub(crate) bsp_delay_ms: Option<u64>,
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
        Err(_) => default,
    }
}

impl Settings {
    pub(crate) fn from_env() -> Settings {
        let s = Settings {
            lookups: env_number("TRACING_BENCH_LOOKUPS", 10_000) as usize,
            rounds: env_number("TRACING_BENCH_ROUNDS", 7) as usize,
            concurrency: env_number("TRACING_BENCH_CONCURRENCY", 16) as usize,
            peers: env_number("TRACING_BENCH_PEERS", 5) as usize,
            grpc: env_number("TRACING_BENCH_GRPC", 1) != 0,
            bsp_delay_ms: std::env::var("TRACING_BENCH_BSP_DELAY_MS")
                .ok()
                .map(|_| env_number("TRACING_BENCH_BSP_DELAY_MS", 0)),
        };
        assert!(
            s.lookups > 0 && s.rounds > 0 && s.concurrency > 0 && s.peers > 0,
            "sizes must be at least 1"
        );
        s
    }

    pub(crate) fn print(&self) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!("## Lookup throughput with trace export on vs off");
        println!();
        println!(
            "- lookups per ring per round: {} (TRACING_BENCH_LOOKUPS)",
            self.lookups
        );
        println!("- rounds: {} (TRACING_BENCH_ROUNDS)", self.rounds);
        println!(
            "- concurrent clients: {} (TRACING_BENCH_CONCURRENCY), one pooled HTTP/1.1 client, round-robin over the ring's peers",
            self.concurrency
        );
        println!("- peers per ring: {} (TRACING_BENCH_PEERS)", self.peers);
        println!(
            "- 100 % over gRPC ring: {} (TRACING_BENCH_GRPC)",
            if self.grpc { "yes" } else { "no" }
        );
        println!(
            "- OTEL_BSP_SCHEDULE_DELAY: {} (TRACING_BENCH_BSP_DELAY_MS)",
            self.bsp_delay_ms.map_or_else(
                || "SDK default (5000 ms)".to_string(),
                |d| format!("{d} ms")
            )
        );
        println!("- CPU cores: {cores}; peers run with 100 ms maintenance intervals");
        println!();
    }

    /// How long the tail of the exports may take to arrive once the load stops.
    pub(crate) fn export_tail(&self) -> Duration {
        Duration::from_millis(self.bsp_delay_ms.unwrap_or(5000) + 1500)
    }
}

/// One ring's configuration.
pub(crate) struct Setup {
    pub(crate) label: &'static str,
    /// `OTEL_SERVICE_NAME` of its peers (empty: export off); tells its spans apart.
    pub(crate) service: &'static str,
    pub(crate) sampler: &'static str,
    pub(crate) env: Vec<(String, String)>,
}

pub(crate) fn setups(settings: &Settings, endpoint: &str) -> Vec<Setup> {
    let exporting = |service: &str, protocol: &str, sampler: &str, arg: Option<&str>| {
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_SERVICE_NAME", service),
            ("OTEL_TRACES_SAMPLER", sampler),
        ];
        if let Some(arg) = arg {
            env.push(("OTEL_TRACES_SAMPLER_ARG", arg));
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(d) = settings.bsp_delay_ms {
            env.push(("OTEL_BSP_SCHEDULE_DELAY".to_string(), d.to_string()));
        }
        env
    };
    let mut setups = vec![
        Setup {
            label: "off",
            service: "",
            sampler: "- (no OTEL vars)",
            env: Vec::new(),
        },
        Setup {
            label: "100 % http",
            service: "bench-100-http",
            sampler: "parentbased_always_on",
            env: exporting(
                "bench-100-http",
                "http/protobuf",
                "parentbased_always_on",
                None,
            ),
        },
        Setup {
            label: "1 % http",
            service: "bench-1-http",
            sampler: "parentbased_traceidratio 0.01",
            env: exporting(
                "bench-1-http",
                "http/protobuf",
                "parentbased_traceidratio",
                Some("0.01"),
            ),
        },
    ];
    if settings.grpc {
        setups.push(Setup {
            label: "100 % grpc",
            service: "bench-100-grpc",
            sampler: "parentbased_always_on",
            env: exporting("bench-100-grpc", "grpc", "parentbased_always_on", None),
        });
    }
    setups
}
