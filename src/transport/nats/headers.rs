//! What NATS messages carry besides their payload: the peer-protocol version, the trace
//! context (every field of the [`TraceCarrier`], whatever it holds), and the flow-control and
//! status fields of the data plane.

use async_nats::{HeaderMap, HeaderName, HeaderValue, Message};

use crate::transport::{Refusal, RefusalKind, TraceCarrier};
use crate::wire::{PROTOCOL_MIN, PROTOCOL_VERSION, protocol_supported};

/// The sender's peer-protocol version (data-plane calls; ring envelopes carry their own).
pub const PROTOCOL: &str = "Chordnet-Protocol";
/// What a data-plane message is: [`DATA`], [`ACK`] or [`ABORT`].
pub const KIND: &str = "Chordnet-Kind";
pub const DATA: &str = "data";
pub const ACK: &str = "ack";
pub const ABORT: &str = "abort";
/// The number of a data message in its direction (from 0), or the one an ack acknowledges.
pub const SEQ: &str = "Chordnet-Seq";
/// Bytes of the head (JSON) at the start of a direction's stream.
pub const HEAD: &str = "Chordnet-Head";
/// Bytes of content after the head, when there is content.
pub const BODY: &str = "Chordnet-Body";
/// How a call ended, on the first message of an answer: [`OK`], [`NONE`] or [`REFUSED`].
pub const STATUS: &str = "Chordnet-Status";
pub const OK: &str = "ok";
pub const NONE: &str = "none";
pub const REFUSED: &str = "refused";
/// The kind of a refusal (its detail is the answer's head).
pub const REFUSAL: &str = "Chordnet-Refusal";

/// Sets `name` to `value` (both are ours, always valid).
pub fn set(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(value) = value.to_string().parse::<HeaderValue>() {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// The value of `name`, if the message has it.
pub fn get<'a>(message: &'a Message, name: &'static str) -> Option<&'a str> {
    message
        .headers
        .as_ref()?
        .get(HeaderName::from_static(name))
        .map(HeaderValue::as_str)
}

/// A numeric header; `Err` when present but not a number.
pub fn number(message: &Message, name: &'static str) -> Result<Option<u64>, String> {
    match get(message, name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}: {v:?} is not a number")),
    }
}

/// Headers with the protocol version and every field of `trace` (fields whose name or value
/// cannot be a header are left out).
pub fn request(trace: &TraceCarrier) -> HeaderMap {
    let mut headers = HeaderMap::new();
    set(&mut headers, PROTOCOL, PROTOCOL_VERSION);
    add_trace(&mut headers, trace);
    headers
}

/// Adds every field of `trace` as a header of its own name.
pub fn add_trace(headers: &mut HeaderMap, trace: &TraceCarrier) {
    for (name, value) in trace.fields() {
        if let (Ok(name), Ok(value)) = (name.parse::<HeaderName>(), value.parse::<HeaderValue>()) {
            headers.insert(name, value);
        }
    }
}

/// The trace context a message arrived with (the carrier keeps the fields it knows).
pub fn carrier(message: &Message) -> TraceCarrier {
    let Some(headers) = &message.headers else {
        return TraceCarrier::default();
    };
    TraceCarrier::from_fields(headers.iter().flat_map(|(name, values)| {
        let name: &str = name.as_ref();
        values.iter().map(move |v| (name, v.as_str()))
    }))
}

/// Refuses a data-plane request in a protocol version this build does not speak (a request
/// without the header is version 1).
pub fn check_protocol(message: &Message) -> Result<(), Refusal> {
    match get(message, PROTOCOL) {
        None => Ok(()),
        Some(v) if v.parse::<u16>().is_ok_and(protocol_supported) => Ok(()),
        Some(v) => Err(Refusal::new(
            RefusalKind::Invalid,
            format!(
                "unsupported peer-protocol version {v:?} (this peer speaks \
                 {PROTOCOL_MIN}..={PROTOCOL_VERSION})"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: HeaderMap) -> Message {
        Message {
            subject: "s".into(),
            reply: None,
            payload: bytes::Bytes::new(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn every_trace_field_travels_and_comes_back() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let trace = TraceCarrier::from_fields([("traceparent", tp), ("tracestate", "a=b")]);
        let m = message(request(&trace));
        assert_eq!(carrier(&m), trace);
        assert!(check_protocol(&m).is_ok());
        let mut old = HeaderMap::new();
        set(&mut old, PROTOCOL, 99);
        let refused = check_protocol(&message(old)).expect_err("version 99");
        assert_eq!(refused.kind, RefusalKind::Invalid);
    }

    #[test]
    fn numbers_are_checked() {
        let mut h = HeaderMap::new();
        set(&mut h, SEQ, 7);
        set(&mut h, HEAD, "x");
        let m = message(h);
        assert_eq!(number(&m, SEQ), Ok(Some(7)));
        assert!(number(&m, HEAD).is_err());
        assert_eq!(number(&m, BODY), Ok(None));
    }
}
