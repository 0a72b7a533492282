// figment's Jail closure returns its large error type by value; that is its API.
#![allow(clippy::result_large_err)]

use super::*;
use figment::Jail;

#[test]
fn defaults_are_sane() {
    let c = Config::default();
    assert_eq!(c.peer_listen(), "127.0.0.1:7000".parse().unwrap());
    assert_eq!(c.node_id(), Id::hash("127.0.0.1:7000"));
    assert_eq!(c.files.max_file_size, 64 << 30);
    assert_eq!(c.files.block_size, 1 << 20);
    c.validate().unwrap();
}

#[test]
fn block_size_comes_from_env_and_is_bounded() {
    Jail::expect_with(|jail| {
        jail.set_env("CHORDNET_FILES__BLOCK_SIZE", "256KiB");
        jail.set_env("CHORDNET_FILES__MAX_FILE_SIZE", "1GiB");
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(c.files.block_size, 256 << 10);
        for (bad, key) in [
            ("32KiB", "files.block_size"),
            ("17MiB", "files.block_size"),
            // 2 TiB in 64 KiB blocks is more blocks than 1,024 list blocks list.
            ("64KiB", "files.max_file_size"),
        ] {
            jail.set_env("CHORDNET_FILES__BLOCK_SIZE", bad);
            jail.set_env("CHORDNET_FILES__MAX_FILE_SIZE", "2048GiB");
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
        // Past the one-level cap of 65,536 blocks: 64 GiB and 1 TiB in 64 KiB blocks.
        for ok in ["64GiB", "1024GiB"] {
            jail.set_env("CHORDNET_FILES__BLOCK_SIZE", "64KiB");
            jail.set_env("CHORDNET_FILES__MAX_FILE_SIZE", ok);
            let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.files.block_size, 64 << 10, "{ok}");
        }
        Ok(())
    });
}

#[test]
fn the_example_file_is_valid_and_shows_the_defaults() {
    Jail::expect_with(|jail| {
        let example = include_str!("../../chordnet.example.toml");
        jail.create_file("example.toml", example)?;
        let c = Config::load(Some("example.toml".into()), &Overrides::default())
            .map_err(|e| e.to_string())?;
        assert_eq!(c, Config::default());
        Ok(())
    });
}

#[test]
fn sizes_and_addresses_parse() {
    assert_eq!(byte_size::parse("64MiB"), Some(64 << 20));
    assert_eq!(byte_size::parse("10MB"), Some(10_000_000));
    assert_eq!(byte_size::parse("123"), Some(123));
    assert_eq!(byte_size::parse("12 parsecs"), None);
    assert_eq!(
        split_host_port("chordnet-0.chordnet-headless:7000"),
        Some(("chordnet-0.chordnet-headless", 7000))
    );
    assert_eq!(split_host_port("[::1]:80"), Some(("::1", 80)));
    assert_eq!(split_host_port("nohost"), None);
    assert_eq!(split_host_port(":80"), None);
}

#[test]
fn file_then_env_then_flags() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            r#"
            [node]
            advertise = "a:1"
            [ring]
            successors = 8
            replicas = 2
            stabilize_interval = "2s"
            [files]
            max_file_size = "1MiB"
            "#,
        )?;
        jail.set_env("CHORDNET_RING__SUCCESSORS", "6");
        jail.set_env("CHORDNET_LOG__FORMAT", "json");
        jail.set_env("CHORDNET_CONFIG", "ignored-when-a-file-is-given.toml");
        jail.set_env("CHORDNET_RING__SEEDS", "s-0.h:7000, s-1.h:7000,");
        // Kubernetes service links for a Service named `chordnet` are not config keys.
        jail.set_env("CHORDNET_SERVICE_HOST", "10.0.0.1");
        jail.set_env("CHORDNET_PORT", "tcp://10.0.0.1:8080");
        jail.set_env("CHORDNET_PORT_8080_TCP_ADDR", "10.0.0.1");
        let overrides = Overrides {
            advertise: Some("b:2".into()),
            ..Overrides::default()
        };
        let c = Config::load(Some("c.toml".into()), &overrides).map_err(|e| e.to_string())?;
        assert_eq!(c.node.advertise, "b:2");
        assert_eq!(c.ring.successors, 6);
        assert_eq!(c.ring.replicas, 2);
        assert_eq!(c.ring.stabilize_interval, Duration::from_secs(2));
        assert_eq!(c.files.max_file_size, 1 << 20);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.ring.seeds, vec!["s-0.h:7000", "s-1.h:7000"]);
        assert_eq!(c.peer_listen(), "0.0.0.0:2".parse().unwrap());
        Ok(())
    });
}

#[test]
fn errors_name_the_key_and_the_source() {
    Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "[ring]\nstabilize_interval = \"soon\"\n")?;
        let err = Config::load(Some("bad.toml".into()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ring.stabilize_interval"), "{err}");
        assert!(err.contains("bad.toml"), "{err}");

        jail.set_env("CHORDNET_RING__SUCCESSORS", "many");
        let err = Config::load(None, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("ring.successors"), "{err}");
        assert!(err.contains("CHORDNET_RING__SUCCESSORS"), "{err}");

        jail.set_env("CHORDNET_RING__SUCCESSORS", "0");
        let err = Config::load(None, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`ring.successors`: must be at least 1"),
            "{err}"
        );

        jail.set_env("CHORDNET_RING__SUCCESSORS", "4");
        jail.set_env("CHORDNET_RING__TYPO", "1");
        let err = Config::load(None, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("typo"), "{err}");

        let err = Config::load(Some("missing.toml".into()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
        Ok(())
    });
}

/// Issue 10, item 14: a misspelt key lists the right ones without doubled backticks, and a file
/// that is not TOML is not blamed on an empty key.
#[test]
fn errors_read_cleanly() {
    Jail::expect_with(|jail| {
        jail.create_file("typo.toml", "[ring]\nbootstrapp = \"a:1\"\n")?;
        let err = Config::load(Some("typo.toml".into()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`bootstrapp`"), "{err}");
        assert!(err.contains("`bootstrap`"), "{err}");
        assert!(!err.contains("``"), "{err}");
        assert!(!err.contains("`one of"), "{err}");

        jail.create_file("broken.toml", "[ring\n")?;
        let err = Config::load(Some("broken.toml".into()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken.toml"), "{err}");
        assert!(!err.contains("``"), "{err}");
        Ok(())
    });
}

/// Issue 10 ("what users expect"): without `node.listen` the peer protocol listens on loopback
/// when the advertised address is loopback, on every interface otherwise.
#[test]
fn the_peer_protocol_listens_on_loopback_unless_advertised_elsewhere() {
    let listen = |advertise: &str| {
        let mut c = Config::default();
        c.node.advertise = advertise.to_string();
        c.peer_listen().to_string()
    };
    assert_eq!(listen("127.0.0.1:7000"), "127.0.0.1:7000");
    assert_eq!(listen("localhost:7001"), "127.0.0.1:7001");
    assert_eq!(listen("[::1]:7002"), "[::1]:7002");
    assert_eq!(listen("10.1.2.3:7003"), "0.0.0.0:7003");
    assert_eq!(listen("chordnet-0.chordnet-headless:7000"), "0.0.0.0:7000");
    let mut c = Config::default();
    c.node.listen = Some("0.0.0.0:7000".parse().unwrap());
    assert_eq!(c.peer_listen().to_string(), "0.0.0.0:7000");
}

#[test]
fn the_transport_is_chosen_by_key_or_env() {
    Jail::expect_with(|jail| {
        jail.create_file("c.toml", "[transport]\nkind = \"grpc\"\n")?;
        let c = Config::load(Some("c.toml".into()), &Overrides::default())
            .map_err(|e| e.to_string())?;
        assert_eq!(c.transport.kind, TransportKind::Grpc);
        jail.set_env("CHORDNET_TRANSPORT__KIND", "http");
        let c = Config::load(Some("c.toml".into()), &Overrides::default())
            .map_err(|e| e.to_string())?;
        assert_eq!(c.transport.kind, TransportKind::Http);
        jail.set_env("CHORDNET_TRANSPORT__KIND", "grpc");
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(c.transport.kind, TransportKind::Grpc);
        Ok(())
    });
}

#[test]
fn nats_peers_are_subjects_of_their_ring_and_the_broker_comes_from_env() {
    Jail::expect_with(|jail| {
        jail.set_env("CHORDNET_TRANSPORT__KIND", "nats");
        jail.set_env("CHORDNET_NATS__URL", "nats://broker:4222");
        jail.set_env("CHORDNET_NATS__RING_NAME", "blue");
        jail.set_env("CHORDNET_NATS__TOKEN_FILE", "/run/secrets/token");
        jail.set_env("CHORDNET_NODE__ADVERTISE", "chordnet.blue.peer.a");
        jail.set_env(
            "CHORDNET_RING__SEEDS",
            "chordnet.blue.peer.a,chordnet.blue.peer.b",
        );
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(c.transport.kind, TransportKind::Nats);
        assert_eq!(c.nats.url, "nats://broker:4222");
        assert_eq!(c.nats.ring_name, "blue");
        assert_eq!(
            c.nats.token_file.as_deref(),
            Some(std::path::Path::new("/run/secrets/token"))
        );
        // A host:port, or a subject of another ring, is refused with what to write instead.
        jail.set_env("CHORDNET_NODE__ADVERTISE", "127.0.0.1:7000");
        let e = Config::load(None, &Overrides::default()).expect_err("host:port");
        assert!(e.to_string().contains("chordnet.blue.peer.<node>"), "{e}");
        jail.set_env("CHORDNET_NODE__ADVERTISE", "chordnet.blue.peer.a");
        jail.set_env("CHORDNET_RING__SEEDS", "chordnet.red.peer.b");
        let e = Config::load(None, &Overrides::default()).expect_err("other ring");
        assert!(e.to_string().contains("ring.seeds"), "{e}");
        Ok(())
    });
}

#[test]
fn the_ring_secret_file_comes_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.set_env("CHORDNET_SECURITY__RING_SECRET_FILE", "/run/secrets/ring");
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(
            c.security.ring_secret_file,
            Some(PathBuf::from("/run/secrets/ring"))
        );
        assert_eq!(c.security.message_window, Duration::from_secs(30));
        jail.set_env("CHORDNET_SECURITY__MESSAGE_WINDOW", "0s");
        let e = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("security.message_window"), "{e}");
        Ok(())
    });
}

#[test]
fn unused_peer_connections_close_after_the_idle_timeout_from_file_or_env() {
    Jail::expect_with(|jail| {
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(c.transport.idle_timeout, Duration::from_secs(5));
        jail.create_file("c.toml", "[transport]\nidle_timeout = \"3s\"\n")?;
        let c = Config::load(Some("c.toml".into()), &Overrides::default())
            .map_err(|e| e.to_string())?;
        assert_eq!(c.transport.idle_timeout, Duration::from_secs(3));
        jail.set_env("CHORDNET_TRANSPORT__IDLE_TIMEOUT", "500ms");
        let c = Config::load(Some("c.toml".into()), &Overrides::default())
            .map_err(|e| e.to_string())?;
        assert_eq!(c.transport.idle_timeout, Duration::from_millis(500));
        jail.set_env("CHORDNET_TRANSPORT__IDLE_TIMEOUT", "0s");
        let e = Config::load(None, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("transport.idle_timeout"), "{e}");
        Ok(())
    });
}

#[test]
fn events_are_off_by_default_and_come_from_env_with_any_transport() {
    Jail::expect_with(|jail| {
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert!(!c.events.enabled);
        assert_eq!(
            c.events.stream_name(&c.nats.ring_name),
            "chordnet-default-events"
        );
        jail.set_env("CHORDNET_EVENTS__ENABLED", "true");
        jail.set_env("CHORDNET_EVENTS__MAX_AGE", "2days");
        jail.set_env("CHORDNET_EVENTS__MAX_BYTES", "64MiB");
        jail.set_env("CHORDNET_NATS__RING_NAME", "blue");
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert!(c.events.enabled);
        assert_eq!(c.transport.kind, TransportKind::Http);
        assert_eq!(c.events.max_age, Duration::from_secs(2 * 24 * 3600));
        assert_eq!(c.events.max_bytes, 64 << 20);
        assert_eq!(c.events.stream_name("blue"), "chordnet-blue-events");
        for (key, bad, named) in [
            ("CHORDNET_EVENTS__STREAM", "a.b", "events.stream"),
            ("CHORDNET_EVENTS__QUEUE", "0", "events.queue"),
            (
                "CHORDNET_EVENTS__DUPLICATE_WINDOW",
                "30days",
                "events.duplicate_window",
            ),
            ("CHORDNET_NATS__RING_NAME", "a b", "nats.ring_name"),
        ] {
            jail.set_env(key, bad);
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{bad}: {err}");
            jail.clear_env();
            jail.set_env("CHORDNET_EVENTS__ENABLED", "true");
        }
        Ok(())
    });
}

#[test]
fn tls_takes_all_three_files_or_none_from_the_environment() {
    Jail::expect_with(|jail| {
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(c.security.tls.files(), Ok(None));
        jail.set_env("CHORDNET_SECURITY__TLS__CA_FILE", "/tls/ca.crt");
        let e = Config::load(None, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("security.tls") && e.contains("missing: cert_file, key_file"),
            "{e}"
        );
        jail.set_env("CHORDNET_SECURITY__TLS__CERT_FILE", "/tls/tls.crt");
        jail.set_env("CHORDNET_SECURITY__TLS__KEY_FILE", "/tls/tls.key");
        jail.set_env("CHORDNET_SECURITY__TLS__RELOAD_INTERVAL", "2s");
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        let files = c.security.tls.files().map_err(|e| e.to_string())?;
        assert_eq!(files.map(|f| f.key), Some("/tls/tls.key".into()));
        assert_eq!(c.security.tls.reload_interval, Duration::from_secs(2));
        // The id is the SHA-1 of the advertised address, which the certificate names.
        jail.set_env("CHORDNET_NODE__ID", Id::hash("x").to_string());
        let e = Config::load(None, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.id"), "{e}");
        jail.clear_env();
        jail.set_env("CHORDNET_SECURITY__TLS__CA_FILE", "/tls/ca.crt");
        jail.set_env("CHORDNET_SECURITY__TLS__CERT_FILE", "/tls/tls.crt");
        jail.set_env("CHORDNET_SECURITY__TLS__KEY_FILE", "/tls/tls.key");
        jail.set_env("CHORDNET_TRANSPORT__KIND", "nats");
        jail.set_env("CHORDNET_NODE__ADVERTISE", "chordnet.default.peer.p1");
        let e = Config::load(None, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("security.tls") && e.contains("ring secret"),
            "{e}"
        );
        Ok(())
    });
}
