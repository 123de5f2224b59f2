//! The `aishacrm` binary's subcommands.

use std::process::{Command, Output};

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{spawn_app, TestDatabase};

fn aishacrm(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aishacrm"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("JWT_SECRET")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("running aishacrm")
}

#[tokio::test]
async fn token_prints_only_a_token_the_service_accepts() {
    let app = spawn_app().await;
    let tenant = Uuid::new_v4().to_string();
    let output = aishacrm(
        &["token", "--tenant", &tenant, "--role", "member"],
        &[("JWT_SECRET", &app.secret)],
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1);
    let (status, body) = app.get_json("/api/v2/accounts", token).await;
    assert_eq!(
        (status, body),
        (200, json!({"data": [], "next_cursor": null}))
    );

    let output = aishacrm(&["token", "--tenant", &tenant], &[]);
    assert!(!output.status.success(), "no JWT_SECRET must be an error");
    assert!(output.stdout.is_empty());
}

#[test]
fn migrate_fails_clearly_when_the_database_is_unreachable() {
    let output = aishacrm(
        &["migrate"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/aishacrm")],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("aishacrm:"),
        "clear error expected: {stderr}"
    );
}

#[tokio::test]
async fn migrate_creates_a_missing_database_and_seed_fills_it() {
    // The guard drops the database the commands create.
    let database = TestDatabase {
        url: aishacrm::db::with_database(
            &crate::helpers::base_database_url(),
            &format!("aishacrm_test_{}", Uuid::new_v4().simple()),
        ),
    };
    let output = aishacrm(&["migrate"], &[("DATABASE_URL", &database.url)]);
    assert!(output.status.success(), "{output:?}");
    // A second run finds nothing to do.
    let output = aishacrm(&["migrate"], &[("DATABASE_URL", &database.url)]);
    assert!(output.status.success(), "{output:?}");

    let output = aishacrm(
        &["seed", "--tenants", "2", "--per-tenant", "50"],
        &[("DATABASE_URL", &database.url)],
    );
    assert!(output.status.success(), "{output:?}");
    let tenants: Vec<Uuid> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.parse().expect("seed prints tenant ids"))
        .collect();
    assert_eq!(tenants.len(), 2);

    let mut config = crate::helpers::test_config(&database.url);
    config.bind = "127.0.0.1:0".into();
    let app = crate::helpers::start(config, database).await;
    for tenant in tenants {
        let token = app.token(tenant);
        let (_, bundle) = app.get_json("/api/v2/dashboard/bundle", &token).await;
        assert_eq!(
            bundle["counts"],
            json!({"accounts": 10, "contacts": 10, "leads": 10, "opportunities": 50, "activities": 10})
        );
        // Seeded rows pass the API's own rules: reading them back as records works.
        let (status, _) = app
            .get_json("/api/v2/opportunities?limit=200", &token)
            .await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn replicas_starting_together_migrate_once_without_errors() {
    let database = TestDatabase {
        url: aishacrm::db::with_database(
            &crate::helpers::base_database_url(),
            &format!("aishacrm_test_{}", Uuid::new_v4().simple()),
        ),
    };
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_aishacrm"))
                .arg("migrate")
                .env("DATABASE_URL", &database.url)
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("starting aishacrm migrate")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("waiting for migrate");
        assert!(output.status.success(), "{output:?}");
    }
}
