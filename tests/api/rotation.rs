//! Rotating `JWT_SECRET` without logging anyone out: during a rotation, `JWT_SECRET_PREVIOUS`
//! secrets still verify tokens and cursors; tokens are minted with `JWT_SECRET` only.

use aishacrm::auth::{JwtKeys, Role};
use aishacrm::config::Secret;
use uuid::Uuid;

use crate::helpers::{minimal, start, test_config, TestApp, TestDatabase};

/// An instance on `database` with `secret` (and `previous` secrets, comma-separated).
async fn with_secrets(
    database: &std::sync::Arc<TestDatabase>,
    secret: &str,
    previous: Option<&str>,
) -> TestApp {
    let mut config = test_config(&database.url);
    config.jwt_secret = Some(Secret(secret.to_owned()));
    config.jwt_secret_previous = previous.map(|previous| Secret(previous.to_owned()));
    start(config, database.clone()).await
}

fn token(secret: &str, tenant: Uuid) -> String {
    JwtKeys::new(secret.as_bytes())
        .mint(tenant, Role::Admin, "rotation", 600)
        .expect("a token")
}

async fn status(app: &TestApp, path: &str, token: &str) -> u16 {
    app.get(path, token).await.status().as_u16()
}

#[tokio::test]
async fn a_rotation_keeps_old_tokens_and_cursors_valid_and_mints_with_the_new_secret_only() {
    let database = std::sync::Arc::new(TestDatabase::create().await);
    let (old, new, other) = ("old-secret", "new-secret", "never-configured");
    let tenant = Uuid::new_v4();
    let before = with_secrets(&database, old, None).await;
    let old_token = token(old, tenant);
    for _ in 0..3 {
        before
            .create("accounts", &old_token, minimal("accounts"))
            .await;
    }
    let (_, page) = before
        .get_json("/api/v2/accounts?limit=2", &old_token)
        .await;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let next = format!("/api/v2/accounts?limit=2&cursor={cursor}");

    // During the rotation: both secrets verify; old tokens and cursors keep working.
    let during = with_secrets(&database, new, Some(&format!(" {other}-x , {old} "))).await;
    assert_eq!(status(&during, "/api/v2/accounts", &old_token).await, 200);
    let (code, second) = during.get_json(&next, &old_token).await;
    assert_eq!(code, 200, "a cursor of the old secret: {second}");
    assert_eq!(second["data"].as_array().map(Vec::len), Some(1));
    let new_token = token(new, tenant);
    assert_eq!(status(&during, "/api/v2/accounts", &new_token).await, 200);
    assert_eq!(
        status(&during, "/api/v2/accounts", &token(other, tenant)).await,
        401,
        "a secret that is not configured"
    );
    // New cursors are signed with the new secret: the old instance refuses them.
    let (_, page) = during
        .get_json("/api/v2/accounts?limit=2", &new_token)
        .await;
    let new_cursor = page["next_cursor"].as_str().expect("a second page");
    let (code, _) = before
        .get_json(
            &format!("/api/v2/accounts?limit=2&cursor={new_cursor}"),
            &old_token,
        )
        .await;
    assert_eq!(code, 400, "the old instance never had the new secret");

    // `aishacrm token` mints with JWT_SECRET only.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aishacrm"))
        .args(["token", "--tenant", &tenant.to_string()])
        .env("JWT_SECRET", new)
        .env("JWT_SECRET_PREVIOUS", old)
        .output()
        .expect("running aishacrm token");
    assert!(output.status.success(), "{output:?}");
    let minted = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(status(&during, "/api/v2/accounts", &minted).await, 200);
    assert_eq!(
        status(&before, "/api/v2/accounts", &minted).await,
        401,
        "minted with the new secret, not an old one"
    );

    // The rotation ends: the old secret is gone.
    let after = with_secrets(&database, new, None).await;
    assert_eq!(status(&after, "/api/v2/accounts", &old_token).await, 401);
    assert_eq!(status(&after, "/api/v2/accounts", &new_token).await, 200);
    let (code, _) = after.get_json(&next, &new_token).await;
    assert_eq!(code, 400, "cursors of the old secret end with it");
}
