//! The cache against a three-master Redis Cluster started by the test (free ports, stopped by
//! PID): tiers, cross-instance invalidation and `cache flush` across masters; once plain, once
//! over TLS only (a CA and certificates of the test's own) as an ACL user with the README's
//! least privileges.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{minimal, spawn_replicas_on};
use crate::redis_acl::COMMANDS;
use crate::support::postgres_server::TestCa;
use crate::support::redis_server::free_port;

/// What a cluster needs beyond [`COMMANDS`] (README, "Redis ACL").
const CLUSTER_COMMANDS: &str = "+cluster|slots +cluster|nodes";

/// A local cluster; its servers are killed by PID and their directories removed on drop.
struct Cluster {
    servers: Vec<Child>,
    ports: Vec<u16>,
    dir: std::path::PathBuf,
    /// `redis-cli`'s TLS arguments when the nodes take TLS only.
    cli_tls: Vec<String>,
    /// The URL scheme and credentials of the service's seed nodes.
    scheme: String,
}

/// How the nodes take connections.
#[derive(Default)]
struct Security {
    /// TLS only (the port and the cluster bus), with certificates signed by a CA of the test's.
    tls: bool,
    /// An ACL user (name, password) with the README's least privileges for a cluster, on keys
    /// and channel of `prefix` only.
    user: Option<(String, String, String)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis_cli(tls: &[String], port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(tls)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("running redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Cluster {
    fn start(security: Security) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("aishacrm-cluster-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        let file = |name: &str| dir.join(name).display().to_string();
        let mut server_tls = Vec::new();
        let mut cli_tls = Vec::new();
        if security.tls {
            let ca = TestCa::new("cluster");
            ca.write(&dir.join("ca.pem"));
            let (cert, key) = ca.sign(&["127.0.0.1"]);
            std::fs::write(dir.join("node.pem"), cert).expect("writing the certificate");
            std::fs::write(dir.join("node.key"), key).expect("writing the key");
            server_tls = ["--tls-cluster", "yes", "--tls-auth-clients", "no"]
                .map(str::to_owned)
                .to_vec();
            for (flag, name) in [
                ("--tls-cert-file", "node.pem"),
                ("--tls-key-file", "node.key"),
                ("--tls-ca-cert-file", "ca.pem"),
            ] {
                server_tls.extend([flag.to_owned(), file(name)]);
            }
            cli_tls = vec!["--tls".to_owned(), "--cacert".to_owned(), file("ca.pem")];
        }
        let credentials = security
            .user
            .as_ref()
            .map(|(user, password, _)| format!("{user}:{password}@"))
            .unwrap_or_default();
        let scheme = format!(
            "{}://{credentials}",
            if security.tls { "rediss" } else { "redis" }
        );
        let mut cluster = Cluster {
            servers: Vec::new(),
            ports: Vec::new(),
            dir: dir.clone(),
            cli_tls,
            scheme,
        };
        for _ in 0..3 {
            // Cluster nodes also listen on port + 10000: pick ports whose bus port is free too.
            let port = loop {
                let port = free_port();
                if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                    break port;
                }
            };
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node directory");
            // TLS only: no plain port at all.
            let ports = if security.tls {
                vec![
                    "--port".to_owned(),
                    "0".to_owned(),
                    "--tls-port".to_owned(),
                    port.to_string(),
                ]
            } else {
                vec!["--port".to_owned(), port.to_string()]
            };
            let server = Command::new("redis-server")
                .args(ports)
                .args(["--bind", "127.0.0.1"])
                .args(&server_tls)
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting redis-server");
            cluster.servers.push(server);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !redis_cli(&cluster.cli_tls, port, &["PING"]).contains("PONG") {
                assert!(Instant::now() < deadline, "node {port} never answered");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(&cluster.cli_tls)
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(created.status.success(), "{created:?}");
        let deadline = Instant::now() + Duration::from_secs(20);
        for &port in &cluster.ports {
            while !redis_cli(&cluster.cli_tls, port, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
                assert!(Instant::now() < deadline, "cluster never became ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some((_, _, rule)) = &security.user {
            for &port in &cluster.ports {
                let mut args = vec!["ACL", "SETUSER"];
                args.extend(rule.split_whitespace());
                assert_eq!(
                    redis_cli(&cluster.cli_tls, port, &args).trim(),
                    "OK",
                    "{rule}"
                );
                redis_cli(&cluster.cli_tls, port, &["ACL", "LOG", "RESET"]);
            }
        }
        cluster
    }

    fn ca_file(&self) -> Option<std::path::PathBuf> {
        (!self.cli_tls.is_empty()).then(|| self.dir.join("ca.pem"))
    }

    /// What the nodes' ACL logs hold (denied commands, keys, channels).
    fn denied(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|&port| redis_cli(&self.cli_tls, port, &["ACL", "LOG"]))
            .filter(|log| !log.trim().is_empty())
            .collect()
    }

    fn nodes(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("{}127.0.0.1:{port}", self.scheme))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cache entries stored on each master.
    fn entries_per_node(&self, prefix: &str) -> Vec<usize> {
        self.ports
            .iter()
            .map(|&port| {
                redis_cli(
                    &self.cli_tls,
                    port,
                    &["--scan", "--pattern", &format!("{prefix}:*:c:*")],
                )
                .lines()
                .count()
            })
            .collect()
    }
}

#[tokio::test]
async fn two_instances_share_a_cluster_cache_and_invalidate_each_other() {
    let cluster = Cluster::start(Security::default());
    share_and_invalidate(&cluster, &crate::helpers::test_prefix()).await;
}

#[tokio::test]
async fn a_tls_only_cluster_serves_an_acl_user_with_the_least_privileges() {
    let prefix = crate::helpers::test_prefix();
    let password = format!("pw-{}", Uuid::new_v4().simple());
    let rule = format!(
        "aishacrm on >{password} resetkeys ~{prefix}:* resetchannels &{prefix}:inv:* -@all \
         {COMMANDS} {CLUSTER_COMMANDS}"
    );
    let cluster = Cluster::start(Security {
        tls: true,
        user: Some(("aishacrm".to_owned(), password, rule)),
    });
    assert!(cluster.nodes().starts_with("rediss://aishacrm:"));
    share_and_invalidate(&cluster, &prefix).await;
    let denied = cluster.denied();
    assert!(
        denied.is_empty(),
        "the nodes denied the service: {denied:?}"
    );
}

/// Two instances on `cluster`: every tier, invalidation from one to the other through the
/// cluster's pub/sub, and `cache flush` across every master.
async fn share_and_invalidate(cluster: &Cluster, prefix: &str) {
    let nodes = cluster.nodes();
    let ca = cluster.ca_file();
    let apps = spawn_replicas_on(2, "none", |config| {
        config.redis_cluster_nodes = Some(nodes.clone());
        config.cache_key_prefix = prefix.to_owned();
        config.redis_ca_file = ca.clone();
    })
    .await;

    // Enough tenants that their hash tags land on every master.
    let tenants: Vec<Uuid> = (0..12).map(|_| Uuid::new_v4()).collect();
    for tenant in &tenants {
        let token = apps[0].token(*tenant);
        apps[0]
            .create("accounts", &token, minimal("accounts"))
            .await;
        let (cache, _, _) = apps[0].get_cached("/api/v2/accounts/count", &token).await;
        assert_eq!(cache, "MISS");
        let (cache, tier, _) = apps[0].get_cached("/api/v2/accounts/count", &token).await;
        assert_eq!((cache.as_str(), tier.as_str()), ("HIT", "L1"));
        let (cache, tier, body) = apps[1].get_cached("/api/v2/accounts/count", &token).await;
        assert_eq!((cache.as_str(), tier.as_str()), ("HIT", "L2"));
        assert_eq!(body, json!({"count": 1}));
    }
    let per_node = cluster.entries_per_node(prefix);
    assert_eq!(per_node.iter().sum::<usize>(), tenants.len());
    assert!(
        per_node.iter().filter(|count| **count > 0).count() >= 2,
        "entries spread over the masters: {per_node:?}"
    );

    // A write on one instance reaches the other through the cluster's pub/sub.
    for tenant in &tenants[..4] {
        let token = apps[0].token(*tenant);
        apps[1].get("/api/v2/accounts/count", &token).await;
        apps[0]
            .create("accounts", &token, minimal("accounts"))
            .await;
        let started = Instant::now();
        loop {
            let (_, _, body) = apps[1].get_cached("/api/v2/accounts/count", &token).await;
            if body == json!({"count": 2}) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_millis(100),
                "stale on instance 2"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    // `cache flush` empties every master and drops both L1s.
    let mut flush = Command::new(env!("CARGO_BIN_EXE_aishacrm"));
    flush
        .args(["cache", "flush"])
        .env("REDIS_CLUSTER_NODES", &nodes)
        .env("CACHE_KEY_PREFIX", prefix)
        .env("RUST_LOG", "warn");
    if let Some(ca) = &ca {
        flush.env("REDIS_CA_FILE", ca);
    }
    let output = flush.output().expect("running aishacrm cache flush");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(cluster.entries_per_node(prefix).iter().sum::<usize>(), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let token = apps[0].token(tenants[8]);
    let (cache, _, _) = apps[1].get_cached("/api/v2/accounts/count", &token).await;
    assert_eq!(cache, "MISS", "neither L1 nor L2 survives a flush");
    let (cache, tier, _) = apps[0].get_cached("/api/v2/accounts/count", &token).await;
    assert_eq!(
        (cache.as_str(), tier.as_str()),
        ("HIT", "L2"),
        "L1 dropped, L2 refilled"
    );
}
