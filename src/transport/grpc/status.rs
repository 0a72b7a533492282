//! gRPC metadata and status codes: what a request carries besides its message (protocol
//! version, trace context), and refusals and failures mapped to status codes and back.

use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::transport::{Refusal, RefusalKind, TraceCarrier, TransportError};
use crate::wire::{Address, PROTOCOL_MIN, PROTOCOL_VERSION, protocol_supported};

/// The metadata entry with the sender's peer-protocol version.
pub const PROTOCOL_KEY: &str = "chordnet-protocol";
/// The metadata entry naming a refusal's kind.
pub const REFUSAL_KEY: &str = "chordnet-refusal";

/// Adds the protocol version and the trace context to a request's metadata.
pub fn decorate(metadata: &mut MetadataMap, trace: &TraceCarrier) {
    metadata.insert(PROTOCOL_KEY, MetadataValue::from(PROTOCOL_VERSION));
    for (name, value) in trace.fields() {
        let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(name.as_bytes()),
            MetadataValue::try_from(value),
        ) else {
            continue;
        };
        metadata.insert(key, value);
    }
}

/// The trace context a request arrived with.
pub fn carrier(metadata: &MetadataMap) -> TraceCarrier {
    TraceCarrier::from_fields(
        crate::telemetry::context::FIELDS
            .iter()
            .filter_map(|name| Some((*name, metadata.get(*name)?.to_str().ok()?))),
    )
}

/// Refuses data-plane requests in a protocol version this build does not speak (a request
/// without the entry is version 1, as on HTTP).
pub fn check_protocol(metadata: &MetadataMap) -> Result<(), Status> {
    let Some(v) = metadata.get(PROTOCOL_KEY) else {
        return Ok(());
    };
    match v.to_str().ok().and_then(|s| s.parse::<u16>().ok()) {
        Some(v) if protocol_supported(v) => Ok(()),
        _ => Err(with_kind(
            Status::failed_precondition(format!(
                "unsupported peer-protocol version {v:?} (this peer speaks \
                 {PROTOCOL_MIN}..={PROTOCOL_VERSION})"
            )),
            RefusalKind::Invalid,
        )),
    }
}

fn with_kind(mut status: Status, kind: RefusalKind) -> Status {
    status
        .metadata_mut()
        .insert(REFUSAL_KEY, MetadataValue::from_static(kind.name()));
    status
}

/// A handler's refusal as a status.
pub fn refused(r: Refusal) -> Status {
    let code = match r.kind {
        RefusalKind::Invalid => Code::InvalidArgument,
        RefusalKind::Unavailable => Code::Unavailable,
        RefusalKind::InsufficientStorage => Code::ResourceExhausted,
        RefusalKind::Internal => Code::Internal,
    };
    with_kind(Status::new(code, r.detail), r.kind)
}

/// A malformed request.
pub fn invalid(detail: impl Into<String>) -> Status {
    with_kind(Status::invalid_argument(detail), RefusalKind::Invalid)
}

/// An object larger than this peer accepts.
pub fn too_large(max: u64) -> Status {
    with_kind(
        Status::resource_exhausted(format!("objects are at most {max} bytes")),
        RefusalKind::Invalid,
    )
}

/// Something broke on this side.
pub fn internal(detail: impl Into<String>) -> Status {
    with_kind(Status::internal(detail), RefusalKind::Internal)
}

/// What the caller makes of a status: the peer's refusal when it sent one, otherwise a failure
/// by code. `UNAVAILABLE` without a refusal means the peer could not be reached.
pub fn failure(to: &Address, status: &Status) -> TransportError {
    if let Some(kind) = status
        .metadata()
        .get(REFUSAL_KEY)
        .and_then(|v| v.to_str().ok())
    {
        return TransportError::Refused(Refusal::new(
            RefusalKind::from_name(kind),
            status.message(),
        ));
    }
    let message = status.message();
    match status.code() {
        // tonic's server answers a passed `grpc-timeout` with CANCELLED "Timeout expired".
        Code::DeadlineExceeded => TransportError::Timeout(std::time::Duration::ZERO),
        Code::Cancelled if message == "Timeout expired" => {
            TransportError::Timeout(std::time::Duration::ZERO)
        }
        Code::Unavailable | Code::Cancelled => {
            TransportError::Unreachable(format!("{to}: {message}"))
        }
        // An HTTP peer's port speaks HTTP/2 too, and answers a gRPC path with a plain 404.
        Code::Unimplemented => TransportError::Incompatible(format!(
            "{to} does not serve chordnet's gRPC peer protocol ({message}): it looks like a \
             peer with transport.kind = \"http\" (or not a chordnet peer), and this peer has \
             transport.kind = \"grpc\" (every peer of a ring must use the same transport.kind)"
        )),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            TransportError::Refused(Refusal::new(RefusalKind::Invalid, message))
        }
        Code::ResourceExhausted => {
            TransportError::Refused(Refusal::new(RefusalKind::InsufficientStorage, message))
        }
        code => TransportError::Protocol(format!("{to} answered {code:?}: {message}")),
    }
}

/// Whether a failure says the connection itself is bad (the channel is rebuilt).
pub fn connection_failed(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.metadata().get(REFUSAL_KEY).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_survive_the_round_trip() {
        let to = Address::new("peer:1");
        for kind in [
            RefusalKind::Invalid,
            RefusalKind::Unavailable,
            RefusalKind::InsufficientStorage,
            RefusalKind::Internal,
        ] {
            let status = refused(Refusal::new(kind, "why"));
            assert!(!connection_failed(&status));
            assert_eq!(
                failure(&to, &status),
                TransportError::Refused(Refusal::new(kind, "why"))
            );
        }
        assert_eq!(
            refused(Refusal::new(RefusalKind::InsufficientStorage, "")).code(),
            Code::ResourceExhausted
        );
        assert_eq!(too_large(3).code(), Code::ResourceExhausted);
        assert!(matches!(
            failure(&to, &too_large(3)),
            TransportError::Refused(Refusal {
                kind: RefusalKind::Invalid,
                ..
            })
        ));
        let down = Status::unavailable("tcp connect error");
        assert!(connection_failed(&down));
        assert!(matches!(
            failure(&to, &down),
            TransportError::Unreachable(_)
        ));
        assert!(matches!(
            failure(&to, &Status::deadline_exceeded("late")),
            TransportError::Timeout(_)
        ));
    }

    #[test]
    fn the_protocol_version_is_checked() {
        let mut m = MetadataMap::new();
        assert!(check_protocol(&m).is_ok());
        decorate(&mut m, &TraceCarrier::default());
        assert!(check_protocol(&m).is_ok());
        m.insert(PROTOCOL_KEY, MetadataValue::from(99u16));
        let refused = check_protocol(&m).expect_err("version 99");
        assert_eq!(refused.code(), Code::FailedPrecondition);
    }

    #[test]
    fn trace_context_travels_in_metadata() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let sent = TraceCarrier::from_fields([("traceparent", tp)]);
        let mut m = MetadataMap::new();
        decorate(&mut m, &sent);
        assert_eq!(carrier(&m), sent);
    }
}
