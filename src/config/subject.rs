//! NATS subjects as peer addresses (`transport.kind = "nats"`): `chordnet.<ring>.peer.<node>`.
//! Here, not in the transport, because the configuration checks them at start.

/// The first token of every subject chordnet uses.
pub const ROOT: &str = "chordnet";

/// Whether `token` may stand between two dots of a subject: not empty, no dot, no wildcard,
/// no white space or control character.
pub fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '.' | '*' | '>'))
}

/// The subject prefix of the peers of ring `ring` (`chordnet.<ring>.peer.`).
pub fn peer_prefix(ring: &str) -> String {
    format!("{ROOT}.{ring}.peer.")
}

/// Checks that `text` is the address of a peer of ring `ring`: `chordnet.<ring>.peer.<node>`
/// with one valid token for `<node>`. The message says what is expected.
pub fn check_peer_subject(ring: &str, text: &str) -> Result<(), String> {
    let prefix = peer_prefix(ring);
    match text.strip_prefix(&prefix) {
        Some(node) if valid_token(node) => Ok(()),
        _ => Err(format!(
            "{text:?} is not a peer subject of ring {ring:?}: with transport.kind = \"nats\" a \
             peer's address is {prefix}<node> (<node>: letters, digits, - or _; no dots)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_subjects_name_one_node_of_the_ring() {
        assert!(check_peer_subject("r1", "chordnet.r1.peer.node-0").is_ok());
        for bad in [
            "chordnet.r2.peer.node-0",
            "chordnet.r1.peer.",
            "chordnet.r1.peer.a.b",
            "chordnet.r1.peer.*",
            "chordnet.r1.peer.>",
            "chordnet.r1.peer.a b",
            "127.0.0.1:7000",
        ] {
            let e = check_peer_subject("r1", bad).expect_err(bad);
            assert!(e.contains("chordnet.r1.peer.<node>"), "{e}");
        }
        assert!(valid_token("default"));
        assert!(!valid_token("a.b"));
        assert!(!valid_token(""));
    }
}
