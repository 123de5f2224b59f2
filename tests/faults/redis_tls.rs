//! Redis over TLS: `rediss://` with the CA named by `REDIS_CA_FILE`, against a `redis-server
//! --tls-port` of the test's own with a CA and certificate the test makes. L2 and the bus work
//! over it; a server whose certificate the CA did not sign counts as down, and every route still
//! answers from PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::helpers::{minimal, ready, spawn_replicas_on, start};
use crate::support::postgres_server::TestCa;
use crate::support::redis_server::{free_port, RedisServer};

/// A CA (its PEM written to `dir/<name>-ca.pem`) and, when `server` is given, a certificate it
/// signs for 127.0.0.1 (`dir/server.pem`, `dir/server.key`). Returns the CA file.
fn certificates(dir: &Path, name: &str, server: bool) -> PathBuf {
    let ca = TestCa::new(name);
    let ca_file = dir.join(format!("{name}-ca.pem"));
    ca.write(&ca_file);
    if server {
        let (cert, key) = ca.sign(&["127.0.0.1"]);
        std::fs::write(dir.join("server.pem"), cert).expect("writing the certificate");
        std::fs::write(dir.join("server.key"), key).expect("writing the key");
    }
    ca_file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_configured_ca_carries_l2_and_the_bus_and_another_ca_is_refused() {
    let dir = std::env::temp_dir().join(format!("aishacrm-tls-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a certificate directory");
    let ca = certificates(&dir, "right", true);
    let wrong_ca = certificates(&dir, "wrong", false);
    let tls_port = free_port();
    let file = |name: &str| dir.join(name).display().to_string();
    let redis = RedisServer::start_with(vec![
        "--tls-port".into(),
        tls_port.to_string(),
        "--tls-cert-file".into(),
        file("server.pem"),
        "--tls-key-file".into(),
        file("server.key"),
        "--tls-ca-cert-file".into(),
        ca.display().to_string(),
        "--tls-auth-clients".into(),
        "no".into(),
    ])
    .await;
    let url = format!("rediss://127.0.0.1:{tls_port}/0");
    let apps = spawn_replicas_on(2, &url, |config| config.redis_ca_file = Some(ca.clone())).await;
    let (a, b) = (&apps[0], &apps[1]);
    let token = a.token(Uuid::new_v4());
    assert_eq!(a.leads_count(&token).await, (0, "MISS ".to_owned()));
    assert_eq!(b.leads_count(&token).await, (0, "HIT L2".to_owned()));
    let keys = redis.command(&["DBSIZE"]).await;
    assert!(
        matches!(keys, redis::Value::Int(count) if count > 0),
        "the entries live in the TLS server: {keys:?}"
    );
    b.create("leads", &token, minimal("leads")).await;
    a.until_leads_count(&token, 1, Duration::from_millis(100))
        .await;

    // A CA that did not sign the server's certificate: the handshake fails, Redis counts as down,
    // and answers come from PostgreSQL.
    let mut config = a.config.clone();
    config.redis_ca_file = Some(wrong_ca);
    let refused = start(config, a.database.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, health) = ready(&refused).await;
        assert_eq!(health["redis"], "down", "{health}");
    }
    assert_eq!(refused.leads_count(&token).await.0, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
