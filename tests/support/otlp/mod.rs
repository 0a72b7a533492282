//! An in-suite OTLP trace receiver for tests: decodes real OTLP exports with the official
//! protobuf definitions (`opentelemetry-proto`), over OTLP/HTTP protobuf and OTLP/gRPC
//! (cleartext HTTP/2 with prior knowledge) on one 127.0.0.1 port.
//!
//! Include it with `#[path = "support/otlp/mod.rs"] mod otlp;`. Everything runs as tasks on the
//! caller's tokio runtime; dropping a [`Receiver`] or [`BlackHole`] aborts them.
#![allow(dead_code)]

mod decode;
mod plumbing;
mod receiver;
mod server;

// Not every includer uses every type (as `dead_code` above).
#[allow(unused_imports)]
pub use decode::{Exports, Protocol, Span, SpanEvent, SpanKind};
#[allow(unused_imports)]
pub use receiver::{BlackHole, Receiver};

/// The OTLP/HTTP path for traces.
pub const HTTP_TRACES_PATH: &str = "/v1/traces";
/// The gRPC method path of the OTLP trace service.
pub const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
