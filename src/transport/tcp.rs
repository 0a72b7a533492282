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
