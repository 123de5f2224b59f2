//! PostgreSQL over TLS, configured as libpq spells it in `DATABASE_URL`, against a server of the
//! test's own that takes TLS connections only (`hostssl` lines alone, `scram-sha-256`), with a
//! CA and a certificate for `localhost` the test makes. Each `sslmode` connects or is refused
//! with the reason; `migrate` and `serve` work over it with the password from `PGPASSWORD`.

use std::process::{Command, Stdio};
use std::time::Duration;

use aishacrm::auth::{JwtKeys, Role};
use aishacrm::db;
use diesel::dsl::sql;
use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use serde_json::json;
use uuid::Uuid;

use crate::support::binary::Server;
use crate::support::postgres_server::{Access, PostgresServer, TestCa};

const PASSWORD: &str = "tls-test-password";

/// Connects with `url` and answers whether the session is encrypted, or the error's text.
async fn session_is_tls(url: &str) -> Result<bool, String> {
    let mut conn = db::connect(url).await.map_err(|error| error.to_string())?;
    sql::<Bool>("(SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())")
        .get_result(&mut conn)
        .await
        .map_err(|error| error.to_string())
}

fn refused(outcome: Result<bool, String>, reason: &str, case: &str) -> String {
    match outcome {
        Ok(tls) => panic!("{case}: connected (tls {tls}), expected a refusal naming {reason:?}"),
        Err(error) => {
            assert!(error.contains(reason), "{case}: {error}");
            eprintln!("{case}: refused: {error}");
            error
        }
    }
}

/// A TLS-only server whose certificate names `localhost` only, signed by the returned CA file's
/// CA; and the file of another CA.
async fn tls_only_server() -> (PostgresServer, String, String) {
    let ca = TestCa::new("postgres right");
    let (cert, key) = ca.sign(&["localhost"]);
    let server = tokio::task::spawn_blocking(move || {
        PostgresServer::init_with(Access::TlsOnly {
            cert,
            key,
            password: PASSWORD.to_owned(),
        })
    })
    .await
    .expect("starting a TLS-only PostgreSQL");
    let right = server.dir.join("right-ca.pem");
    let wrong = server.dir.join("wrong-ca.pem");
    ca.write(&right);
    TestCa::new("postgres wrong").write(&wrong);
    (
        server,
        right.display().to_string(),
        wrong.display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sslmode_connects_or_is_refused_with_the_reason() {
    let (server, right, wrong) = tls_only_server().await;
    let url = |host: &str, params: &str| {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/postgres?{params}",
            server.port
        )
    };

    // No certificate check: any host name, any CA.
    assert_eq!(
        session_is_tls(&url("127.0.0.1", "sslmode=require")).await,
        Ok(true)
    );
    assert_eq!(
        session_is_tls(&url("127.0.0.1", "")).await,
        Ok(true),
        "prefer"
    );
    // The chain, with and without the name.
    let full = format!("sslmode=verify-full&sslrootcert={right}");
    assert_eq!(session_is_tls(&url("localhost", &full)).await, Ok(true));
    let ca_only = format!("sslmode=verify-ca&sslrootcert={right}");
    assert_eq!(session_is_tls(&url("127.0.0.1", &ca_only)).await, Ok(true));

    let error = refused(
        session_is_tls(&url("127.0.0.1", &full)).await,
        "not valid for name",
        "verify-full, a name the certificate lacks",
    );
    assert!(error.contains("sslmode=verify-full"), "{error}");
    for (host, params) in [
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={wrong}"),
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={wrong}"),
        ),
        // As in libpq, `require` with a root file checks the chain.
        ("127.0.0.1", format!("sslmode=require&sslrootcert={wrong}")),
    ] {
        let error = refused(
            session_is_tls(&url(host, &params)).await,
            "UnknownIssuer",
            &params,
        );
        assert!(
            error.contains(&format!("no CA of sslrootcert={wrong} signed")),
            "{error}"
        );
    }
    let error = refused(
        session_is_tls(&url("127.0.0.1", "sslmode=disable")).await,
        "no encryption",
        "disable",
    );
    assert!(error.contains("accepts only TLS connections"), "{error}");
    refused(
        session_is_tls(&format!(
            "postgres://postgres:wrong@127.0.0.1:{}/postgres?sslmode=require",
            server.port
        ))
        .await,
        "password authentication failed",
        "a wrong password",
    );
}

/// `aishacrm migrate` with `DATABASE_URL` and `PGPASSWORD`: its exit status and stderr.
fn migrate(database_url: &str) -> (bool, String) {
    migrate_with(database_url, &[])
}

fn migrate_with(database_url: &str, env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_aishacrm"))
        .arg("migrate")
        .envs(env.iter().copied())
        .env("DATABASE_URL", database_url)
        .env("PGPASSWORD", PASSWORD)
        .env("REDIS_URL", "none")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("running aishacrm migrate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_serve_work_over_verify_full_with_pgpassword() {
    let (server, right, wrong) = tls_only_server().await;
    let url = |params: &str| {
        format!(
            "postgres://postgres@localhost:{}/aishacrm_tls?{params}",
            server.port
        )
    };
    let verified = url(&format!("sslmode=verify-full&sslrootcert={right}"));

    let (ok, stderr) = migrate(&url("sslmode=disable"));
    assert!(!ok && stderr.contains("no encryption"), "{stderr}");
    let (ok, stderr) = migrate(&url(&format!("sslmode=verify-full&sslrootcert={wrong}")));
    assert!(!ok && stderr.contains("UnknownIssuer"), "{stderr}");
    // No sslrootcert: the system's roots, which do not hold the test's CA unless the system's
    // CA file (SSL_CERT_FILE, as OpenSSL reads it) is the test's. (A machine without any system
    // root refuses the URL itself, naming them too.)
    let (ok, stderr) = migrate(&url("sslmode=verify-full"));
    assert!(!ok && stderr.contains("system root"), "{stderr}");
    let (ok, stderr) = migrate_with(&url("sslmode=verify-full"), &[("SSL_CERT_FILE", &right)]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("created database aishacrm_tls"), "{stderr}");
    let (ok, stderr) = migrate(&verified);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("migrations are up to date"), "{stderr}");

    let secret = "tls-test-secret";
    let env = [
        ("DATABASE_URL", verified.clone()),
        ("PGPASSWORD", PASSWORD.to_owned()),
        ("REDIS_URL", "none".to_owned()),
        ("JWT_SECRET", secret.to_owned()),
    ];
    let app = tokio::task::spawn_blocking(move || Server::spawn(&env, Duration::from_secs(20)))
        .await
        .expect("starting aishacrm serve");
    let token = JwtKeys::new(secret.as_bytes())
        .mint(Uuid::new_v4(), Role::Admin, "tls-test", 600)
        .expect("a token");
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/api/v2/accounts", app.address))
        .bearer_auth(&token)
        .json(&json!({"name": "Over TLS"}))
        .send()
        .await
        .expect("creating an account");
    assert_eq!(created.status(), 201);
    let listed: serde_json::Value = client
        .get(format!("{}/api/v2/accounts", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("listing accounts")
        .json()
        .await
        .expect("a JSON list");
    assert_eq!(listed["data"][0]["name"], "Over TLS", "{listed}");

    drop(app);
}
