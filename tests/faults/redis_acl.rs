//! The least privileges the service needs in Redis: an ACL user limited to the commands, keys
//! and channel of one deployment (README, "Redis ACL") runs everything (L2, invalidation, the bus,
//! `cache flush`), with nothing denied in Redis's ACL log.

use std::time::Duration;

use uuid::Uuid;

use crate::helpers::{minimal, spawn_replicas_on};
use crate::support::redis_server::RedisServer;

/// The commands the README lists as the least privileges to grant.
pub const COMMANDS: &str = "+get +psetex +evalsha +script|load +info +hmget +hset +hincrby \
                        +hgetall +hget +hlen +hdel +del +publish +subscribe +ping +scan +unlink";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_the_listed_commands_runs_everything() {
    let redis = RedisServer::start().await;
    let prefix = format!("aishacrm-acl-{}", Uuid::new_v4().simple());
    let password = format!("pw-{}", Uuid::new_v4().simple());
    let mut rule = vec![
        "ACL".to_owned(),
        "SETUSER".to_owned(),
        "aishacrm".to_owned(),
        "on".to_owned(),
        format!(">{password}"),
        "resetkeys".to_owned(),
        format!("~{prefix}:*"),
        "resetchannels".to_owned(),
        format!("&{prefix}:inv:*"),
        "-@all".to_owned(),
    ];
    rule.extend(COMMANDS.split_whitespace().map(str::to_owned));
    let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
    redis.command(&rule).await;
    redis.command(&["ACL", "LOG", "RESET"]).await;

    let url = format!("redis://aishacrm:{password}@127.0.0.1:{}/0", redis.port);
    let apps = spawn_replicas_on(2, &url, |config| config.cache_key_prefix = prefix.clone()).await;
    let (a, b) = (&apps[0], &apps[1]);
    let token = a.token(Uuid::new_v4());
    a.leads_count(&token).await;
    assert_eq!(b.leads_count(&token).await, (0, "HIT L2".to_owned()), "L2");
    a.create("leads", &token, minimal("leads")).await;
    assert_eq!(a.leads_count(&token).await.0, 1);
    b.until_leads_count(&token, 1, Duration::from_millis(100))
        .await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aishacrm"))
        .args(["cache", "flush"])
        .env("REDIS_URL", &url)
        .env("CACHE_KEY_PREFIX", &prefix)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("running aishacrm cache flush");
    assert!(output.status.success(), "{output:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        b.leads_count(&token).await,
        (1, "MISS ".to_owned()),
        "flushed"
    );

    for app in [a, b] {
        let (_, health) = crate::helpers::ready(app).await;
        assert_eq!(health["redis"], "up", "{health}");
    }
    let denied = redis.command(&["ACL", "LOG"]).await;
    assert!(
        matches!(&denied, redis::Value::Array(entries) if entries.is_empty()),
        "Redis denied the service something: {denied:?}"
    );
}
