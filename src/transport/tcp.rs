//! What the transports over TCP share: `host:port` addresses (DNS names allowed), "does the
//! name still resolve", and binding the peer port.

use super::{AddressError, ServeError};
use crate::wire::Address;

/// `text` as an address of the `kind` transport, if it is `host:port` with a port number.
pub fn parse_address(kind: &'static str, text: &str) -> Result<Address, AddressError> {
    match crate::config::split_host_port(text) {
        Some(_) => Ok(Address::new(text)),
        None => Err(AddressError {
            kind,
            address: text.to_owned(),
            reason: "must be host:port with a port number".into(),
        }),
    }
}

/// Whether `address` still resolves to at least one socket address.
pub async fn resolves(address: &Address) -> bool {
    match tokio::net::lookup_host(address.as_str()).await {
        Ok(mut addrs) => addrs.next().is_some(),
        Err(_) => false,
    }
}

/// A listener on `listen`, and what it actually listens on (the port chosen for port 0).
pub async fn bind(
    listen: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, String), ServeError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError {
            what: listen.to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_or_else(|_| listen.to_string(), |a| a.to_string());
    Ok((listener, local))
}

/// Whether the server at `address` greets a new connection with an HTTP/2 SETTINGS frame
/// before the client says anything, as an HTTP/2-only server does (a gRPC peer's port); an
/// HTTP/1 server stays silent. Asked only after a request failed, to explain the failure.
pub async fn greets_with_http2(address: &Address) -> bool {
    use tokio::io::AsyncReadExt;
    const WAIT: std::time::Duration = std::time::Duration::from_millis(500);
    let greeting = async {
        let mut stream = tokio::net::TcpStream::connect(address.as_str())
            .await
            .ok()?;
        // A frame header: 3 bytes of length, the type (4 = SETTINGS), flags, stream 0.
        let mut header = [0u8; 9];
        stream.read_exact(&mut header).await.ok()?;
        Some(header[3] == 0x04 && header[5..9] == [0, 0, 0, 0])
    };
    matches!(tokio::time::timeout(WAIT, greeting).await, Ok(Some(true)))
}
