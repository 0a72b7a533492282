use super::*;

const KEY_A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const KEY_B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

fn auth(keys: &str, me: u64) -> RingAuth {
    let path = Path::new("/test/ring-secret");
    let keys = Keyring::parse(keys, path).unwrap();
    let metrics = Metrics::new().unwrap();
    RingAuth::with_keys(
        path,
        keys,
        Duration::from_secs(30),
        Id::from_parts(0, me.into()),
        metrics,
    )
}

fn signed(a: &RingAuth, method: &str, digest: &[u8; 32]) -> TraceCarrier {
    let mut c = TraceCarrier::default();
    a.sign_into(&mut c, method, digest, None);
    c
}

#[test]
fn a_signed_message_verifies_once_and_names_its_sender() {
    let (alice, bob) = (auth(KEY_A, 1), auth(KEY_A, 2));
    let d = digest_bytes(b"hello");
    let c = signed(&alice, "ring/notify", &d);
    let v = bob.verify(&c, "ring/notify", &d).unwrap();
    assert_eq!(v.sender, Id::from_parts(0, 1));
    assert_eq!(
        bob.verify(&c, "ring/notify", &d),
        Err(AuthFailure::Replayed)
    );
}

#[test]
fn anything_changed_or_missing_is_refused() {
    let (alice, bob) = (auth(KEY_A, 1), auth(KEY_A, 2));
    let d = digest_bytes(b"hello");
    let c = signed(&alice, "ring/notify", &d);
    assert_eq!(
        bob.verify(&c, "ring/ping", &d),
        Err(AuthFailure::BadMac),
        "another method"
    );
    assert_eq!(
        bob.verify(&c, "ring/notify", &digest_bytes(b"hellp")),
        Err(AuthFailure::BadMac),
        "another body"
    );
    let text = c.field(FIELD).unwrap().to_string();
    // Another sender id in the clear than the one signed.
    let mut parts: Vec<String> = text.split('.').map(str::to_string).collect();
    parts[1] = Id::from_parts(0, 3).to_string();
    let mut forged = TraceCarrier::default();
    forged.set_field(FIELD, parts.join("."));
    assert_eq!(
        bob.verify(&forged, "ring/notify", &d),
        Err(AuthFailure::BadMac)
    );
    assert_eq!(
        bob.verify(&TraceCarrier::default(), "ring/notify", &d),
        Err(AuthFailure::Missing)
    );
    let mut junk = TraceCarrier::default();
    junk.set_field(FIELD, "v1.zz".into());
    assert_eq!(
        bob.verify(&junk, "ring/notify", &d),
        Err(AuthFailure::Malformed)
    );
    // Another ring's secret.
    let eve = auth(KEY_B, 1);
    let c = signed(&eve, "ring/notify", &d);
    assert_eq!(bob.verify(&c, "ring/notify", &d), Err(AuthFailure::BadMac));
}

#[test]
fn stale_and_future_timestamps_are_refused() {
    let (alice, bob) = (auth(KEY_A, 1), auth(KEY_A, 2));
    let d = digest_bytes(b"x");
    let c = signed(&alice, "get", &d);
    let now = now_ms();
    assert_eq!(
        bob.check(&c, "get", &d, now + 31_000).map(|_| ()),
        Err(AuthFailure::Stale)
    );
    assert_eq!(
        bob.check(&c, "get", &d, now.saturating_sub(31_000))
            .map(|_| ()),
        Err(AuthFailure::Stale)
    );
    assert!(bob.check(&c, "get", &d, now + 5_000).is_ok());
}

#[test]
fn rotation_accepts_every_listed_key_and_signs_with_the_first() {
    let old = auth(KEY_A, 1);
    let both = auth(&format!("{KEY_B}\n{KEY_A}\n"), 2);
    let new = auth(KEY_B, 3);
    let d = digest_bytes(b"x");
    assert!(both.verify(&signed(&old, "get", &d), "get", &d).is_ok());
    assert!(new.verify(&signed(&both, "get", &d), "get", &d).is_ok());
    assert_eq!(
        old.verify(&signed(&new, "get", &d), "get", &d),
        Err(AuthFailure::BadMac)
    );
}

#[test]
fn another_rings_id_is_refused_and_the_refusal_is_counted() {
    let (alice, bob) = (auth(KEY_A, 1), auth(KEY_A, 2));
    alice.set_ring_source(|| Some(RingId(7)));
    bob.set_ring_source(|| Some(RingId(8)));
    let d = digest_bytes(b"x");
    let v = bob.verify(&signed(&alice, "get", &d), "get", &d).unwrap();
    assert_eq!(v.ring, Some(RingId(7)));
    assert_eq!(bob.check_ring(&v, "get"), Err(AuthFailure::WrongRing));
    let text = bob.metrics.render();
    assert!(
        text.contains("chordnet_peer_auth_rejections_total{reason=\"wrong_ring\"} 1"),
        "{text}"
    );
    // The refusal's text names no ring.
    assert!(!AuthFailure::WrongRing.to_string().contains('7'));
}

#[test]
fn the_key_file_is_reloaded_when_it_changes_and_kept_when_broken() {
    let dir = std::env::temp_dir().join(format!("chordnet-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ring-secret");
    std::fs::write(&file, KEY_A).unwrap();
    let a = RingAuth::load(
        &file,
        Duration::from_secs(30),
        Id::ZERO,
        Metrics::new().unwrap(),
    )
    .unwrap();
    let before = a.fingerprint();
    assert!(!a.reload().unwrap());
    std::fs::write(&file, format!("{KEY_A}\n{KEY_B}\n")).unwrap();
    assert!(a.reload().unwrap());
    let two = a.fingerprint();
    assert_ne!(before, two);
    std::fs::write(&file, "short\n").unwrap();
    assert!(a.reload().is_err());
    assert_eq!(a.fingerprint(), two, "a broken file keeps the keys in use");
    let _ = std::fs::remove_dir_all(&dir);
}
