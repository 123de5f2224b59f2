//! The real `aishacrm` binary as a child process, killed by PID when dropped; its stderr is read
//! line by line (the log lines of the contract, and the fault tests that kill a writer).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::harness::redis_url;

/// A running `aishacrm serve`, killed by PID when dropped; its stderr is read line by line.
pub struct Server {
    /// The process (for the fault tests, which kill and reap it themselves).
    pub child: Child,
    pub address: String,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary on the test database with Redis, hit logging on and a stats line every
    /// second, and waits until its bus is connected.
    pub fn start(database_url: &str, prefix: &str, secret: &str) -> Server {
        let env = [
            ("DATABASE_URL", database_url.to_owned()),
            ("REDIS_URL", redis_url()),
            ("CACHE_KEY_PREFIX", prefix.to_owned()),
            ("JWT_SECRET", secret.to_owned()),
            ("CACHE_STATS_LOG_SECS", "1".to_owned()),
        ];
        let mut server = Server::spawn(&env, Duration::from_secs(10));
        server.wait_for("[Cache] Redis connected", 0);
        server
    }

    /// Starts the binary with `env` (on top of BIND=127.0.0.1:0, WORKERS=1, RUST_LOG=info) and
    /// waits up to `limit` until it listens. Blocking.
    pub fn spawn(env: &[(&str, String)], limit: Duration) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_aishacrm"));
        command
            .arg("serve")
            .env("BIND", "127.0.0.1:0")
            .env("WORKERS", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("starting aishacrm");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            address: String::new(),
            lines,
            seen: Vec::new(),
        };
        let listening = server.wait_for_within("listening on http://", 0, limit);
        server.address = listening
            .split("listening on ")
            .nth(1)
            .expect("address")
            .trim()
            .to_owned();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.address
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("a port in the address")
    }

    /// Waits (up to 10 s) for a line containing `text` after the first `from` lines.
    pub fn wait_for(&mut self, text: &str, from: usize) -> String {
        self.wait_for_within(text, from, Duration::from_secs(10))
    }

    /// Waits up to `limit` for a line containing `text` after the first `from` lines.
    pub fn wait_for_within(&mut self, text: &str, from: usize, limit: Duration) -> String {
        if let Some(line) = self.seen.iter().skip(from).find(|line| line.contains(text)) {
            return line.clone();
        }
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if self.seen.len() > from && line.contains(text) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line with {text:?}; saw:\n{}", self.seen.join("\n"));
    }

    /// The log lines written so far (without waiting).
    pub fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }
}
