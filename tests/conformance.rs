//! The transport conformance suite on every transport: `memory`, `http`, `grpc` and `nats`
//! (against a real `nats-server` each check starts for itself).

use crate::support::conformance;
use crate::support::conformance_kit;
use crate::support::nats_server;

use std::net::SocketAddr;
use std::sync::Arc;

use chordnet::transport::TransportFactory;
use chordnet::transport::grpc::GrpcTransport;
use chordnet::transport::http::HttpTransport;
use chordnet::transport::memory::{MemoryNetwork, MemoryTransport};
use chordnet::transport::nats::NatsTransport;
use conformance::Under;

/// The in-memory transport, one network per test.
struct Memory(MemoryTransport);

impl Memory {
    fn new() -> Memory {
        Memory(MemoryTransport::new(MemoryNetwork::new()))
    }
}

impl Under for Memory {
    fn factory(&self) -> Arc<dyn TransportFactory> {
        Arc::new(self.0.clone())
    }
    fn endpoint(&self, i: usize) -> (SocketAddr, String) {
        (SocketAddr::from(([0, 0, 0, 0], 0)), format!("mem-peer-{i}"))
    }
    fn nobody(&self) -> String {
        "mem-nobody".into()
    }
}

/// HTTP on 127.0.0.1, with free ports chosen by the test.
struct Http(Vec<u16>);

impl Http {
    fn new() -> Http {
        let listeners: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        Http(
            listeners
                .iter()
                .map(|l| l.local_addr().expect("addr").port())
                .collect(),
        )
    }
}

impl Under for Http {
    fn factory(&self) -> Arc<dyn TransportFactory> {
        Arc::new(HttpTransport::default())
    }
    fn endpoint(&self, i: usize) -> (SocketAddr, String) {
        let port = self.0[i];
        (
            SocketAddr::from(([127, 0, 0, 1], port)),
            format!("127.0.0.1:{port}"),
        )
    }
    fn nobody(&self) -> String {
        // Bound, then released: nothing listens there.
        format!("127.0.0.1:{}", self.0[2])
    }
}

/// gRPC on 127.0.0.1, on free ports as for HTTP.
struct Grpc(Http);

impl Under for Grpc {
    fn factory(&self) -> Arc<dyn TransportFactory> {
        Arc::new(GrpcTransport::default())
    }
    fn endpoint(&self, i: usize) -> (SocketAddr, String) {
        self.0.endpoint(i)
    }
    fn nobody(&self) -> String {
        self.0.nobody()
    }
}

/// NATS: a broker of its own per check; peers are subjects, no port is opened.
struct Nats(nats_server::NatsServer);

impl Under for Nats {
    fn factory(&self) -> Arc<dyn TransportFactory> {
        let mut config = conformance_kit::config();
        config.nats.url = self.0.url();
        config.nats.ring_name = "conformance".into();
        Arc::new(NatsTransport::new(&config))
    }
    fn endpoint(&self, i: usize) -> (SocketAddr, String) {
        (
            SocketAddr::from(([0, 0, 0, 0], 0)),
            format!("chordnet.conformance.peer.peer-{i}"),
        )
    }
    fn nobody(&self) -> String {
        "chordnet.conformance.peer.nobody".into()
    }
}

conformance!(memory, Memory::new());
conformance!(http, Http::new(), unused_connections_close);
conformance!(grpc, Grpc(Http::new()), unused_connections_close);
conformance!(nats, Nats(nats_server::NatsServer::start("conformance")));
