//! A real `nats-server` for tests (Debian package `nats-server`; `.ci/run` installs it): on a
//! free 127.0.0.1 port, JetStream on, a temporary store directory, an optional small
//! `max_payload`, optionally TLS (`start_tls`). Stopped by its pid when dropped (also when the
//! test panics).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    max_payload: Option<usize>,
    /// A `tls { ... }` block for the configuration (TLS only, `start_tls`).
    tls: Option<String>,
}

/// The broker's TLS files (PEM) and whether it requires client certificates of `ca`.
pub struct BrokerTls<'a> {
    pub cert: &'a str,
    pub key: &'a str,
    pub ca: &'a str,
    pub verify: bool,
}

fn binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl NatsServer {
    /// Starts a server (default `max_payload`, 1 MB) and waits until it greets clients.
    pub fn start(name: &str) -> NatsServer {
        NatsServer::start_with(name, None)
    }

    /// Starts a server with `max_payload` bytes at most per message.
    pub fn start_with(name: &str, max_payload: Option<usize>) -> NatsServer {
        let dir = std::env::temp_dir().join(format!(
            "chordnet-nats-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("nats store dir");
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            dir,
            max_payload,
            tls: None,
        };
        server.run();
        server
    }

    /// Starts a server that speaks TLS only, with `tls`'s files (written into its directory).
    pub fn start_tls(name: &str, tls: BrokerTls<'_>) -> NatsServer {
        let mut server = NatsServer::start(name);
        server.stop();
        let write = |file: &str, text: &str| {
            let path = server.dir.join(file);
            std::fs::write(&path, text).expect("broker tls file");
            path.display().to_string()
        };
        let (cert, key, ca) = (
            write("broker.crt", tls.cert),
            write("broker.key", tls.key),
            write("broker-ca.crt", tls.ca),
        );
        server.tls = Some(format!(
            "tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n  ca_file: {ca:?}\n  verify: {}\n  timeout: 2\n}}\n",
            tls.verify
        ));
        server.run();
        server
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The pid of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn run(&mut self) {
        let conf = self.dir.join("nats.conf");
        let mut text = format!(
            "listen: \"127.0.0.1:{}\"\njetstream {{\n  store_dir: {:?}\n}}\n",
            self.port,
            self.dir.join("js").display().to_string()
        );
        if let Some(m) = self.max_payload {
            text.push_str(&format!("max_payload: {m}\n"));
        }
        if let Some(tls) = &self.tls {
            text.push_str(tls);
        }
        std::fs::write(&conf, text).expect("nats config");
        let log = std::fs::File::create(self.dir.join("server.log")).expect("nats log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start nats-server (apt-get install nats-server)");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits (bounded) until the server sends its INFO line.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = &mut self.child
                && let Ok(Some(status)) = c.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("nats-server exited ({status}): {log}");
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("INFO") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (by pid, SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
