//! A redis-server of the test's own, on a free port, killed by its PID when dropped: for the
//! tests that must stop Redis without touching the shared one.

use std::net::TcpListener as StdTcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Whether something on `port` answers `PING` with `+PONG`.
pub async fn redis_answers(port: u16) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        let read = stream.read(&mut reply).await.ok()?;
        Some(reply[..read].starts_with(b"+PONG"))
    };
    matches!(
        timeout(Duration::from_millis(500), exchange).await,
        Ok(Some(true))
    )
}

/// A redis-server child process; killed (by its PID) when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Where `SAVE` writes and a restart loads the snapshot; `None`: nothing is ever loaded.
    snapshots: Option<std::path::PathBuf>,
    /// More `redis-server` arguments (a TLS port and its certificates).
    extra: Vec<String>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            snapshots: None,
            extra: Vec::new(),
        };
        server.restart().await;
        server
    }

    /// A server with more arguments, e.g. `--tls-port`; its plain port still answers the tests.
    pub async fn start_with(extra: Vec<String>) -> Self {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            snapshots: None,
            extra,
        };
        server.restart().await;
        server
    }

    /// A server that keeps what `SAVE` wrote in a directory of its own, and loads it when it
    /// restarts (as a restart with RDB persistence does).
    pub async fn start_with_snapshots() -> Self {
        let snapshots =
            std::env::temp_dir().join(format!("aishacrm-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&snapshots).expect("a snapshot directory");
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            snapshots: Some(snapshots),
            extra: Vec::new(),
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The snapshot a restart loads (servers started with snapshots only).
    pub fn snapshot_file(&self) -> Option<std::path::PathBuf> {
        self.snapshots.as_ref().map(|dir| dir.join("dump.rdb"))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts redis-server on this server's port and waits (up to 10 s) until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let (dir, snapshot) = match &self.snapshots {
            Some(dir) => (dir.clone(), "dump.rdb".to_owned()),
            // A file name nothing writes, so a restart starts empty.
            None => (
                std::env::temp_dir(),
                format!("aishacrm-none-{}.rdb", self.port),
            ),
        };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--dbfilename", &snapshot])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis_answers(self.port).await {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered PING",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs one command on this server as its default user; its reply (fails the test on error).
    pub async fn command(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).expect("a redis client");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connecting to the test's redis-server");
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command
            .query_async(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{args:?}: {error}"))
    }

    /// Kills the child by its PID (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.snapshots {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
