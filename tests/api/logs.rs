//! The contract's log lines, read from the real binary's stderr.

use std::time::Duration;

use uuid::Uuid;

use crate::helpers::{minimal, TestDatabase};
use crate::support::binary::Server;

#[tokio::test]
async fn hits_misses_invalidations_and_stats_are_logged_as_the_contract_says() {
    let database = TestDatabase::create().await;
    let redis_keys = crate::helpers::RedisPrefix::fresh();
    let prefix = redis_keys.prefix.clone();
    let secret = format!("secret-{}", Uuid::new_v4());
    let mut one = Server::start(&database.url, &prefix, &secret);
    let mut two = Server::start(&database.url, &prefix, &secret);
    let tenant = Uuid::new_v4();
    let token = aishacrm::auth::JwtKeys::new(secret.as_bytes())
        .mint(tenant, aishacrm::auth::Role::Admin, "test", 600)
        .unwrap();
    let client = reqwest::Client::new();
    let get = |server: &Server, path: &str| {
        client
            .get(format!("{}{path}", server.address))
            .bearer_auth(&token)
            .send()
    };
    get(&one, "/api/v2/opportunities").await.unwrap();
    get(&one, "/api/v2/opportunities").await.unwrap();
    get(&two, "/api/v2/opportunities").await.unwrap();
    let created = client
        .post(format!("{}/api/v2/opportunities", one.address))
        .bearer_auth(&token)
        .json(&minimal("opportunities"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);

    one.wait_for(
        &format!("[Cache] Miss: opportunities list for tenant {tenant}"),
        0,
    );
    one.wait_for(
        &format!("[Cache] Hit: opportunities list for tenant {tenant} (L1)"),
        0,
    );
    two.wait_for(
        &format!("[Cache] Hit: opportunities list for tenant {tenant} (L2)"),
        0,
    );
    let local = one.wait_for(
        &format!("[Cache] Invalidated: opportunities for tenant {tenant}"),
        0,
    );
    assert!(!local.contains("(remote)"));
    two.wait_for(
        &format!("[Cache] Invalidated: opportunities for tenant {tenant} (remote)"),
        0,
    );
    let stats = one.wait_for("[Cache] Stats:", 0);
    for part in ["hits=", "misses=", "hit_rate="] {
        assert!(stats.contains(part), "{stats}");
    }
    // `grep "Cache.*Hit"` finds exactly the hit lines.
    let hits = one
        .seen
        .iter()
        .filter(|line| line.contains("[Cache] Hit:"))
        .count();
    assert_eq!(hits, 1);
}

/// Sends `request` as raw bytes and returns the status line of the answer (empty when none).
fn raw_exchange(address: &str, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let host = address.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Requests the HTTP layer refuses before the application sees them (a NUL in a header, two
/// Content-Length, Content-Length with Transfer-Encoding, a 200 KB header): each gets its 4xx,
/// and the log gets no ERROR line for them (any client could fill the log); they are debug lines.
#[test]
fn requests_refused_before_the_application_log_at_debug_not_error() {
    let database = block_on(TestDatabase::create());
    let huge = format!(
        "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let malformed: [&[u8]; 4] = [
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n",
        b"POST /api/v2/leads HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /api/v2/leads HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        huge.as_bytes(),
    ];
    for (filter, expect_debug) in [
        ("info", false),
        ("info,actix_http::h1::dispatcher=debug", true),
    ] {
        let env = [
            ("DATABASE_URL", database.url.clone()),
            ("REDIS_URL", "none".to_owned()),
            ("JWT_SECRET", "secret".to_owned()),
            ("RUST_LOG", filter.to_owned()),
        ];
        let mut server = Server::spawn(&env, Duration::from_secs(10));
        for request in malformed {
            let status = raw_exchange(&server.address, request);
            assert!(
                status.starts_with("HTTP/1.1 4"),
                "{filter}: {:?} answered {status:?}",
                String::from_utf8_lossy(&request[..request.len().min(60)])
            );
        }
        // A normal request after them, so that every line about them has been written.
        assert!(raw_exchange(
            &server.address,
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .starts_with("HTTP/1.1 200"));
        std::thread::sleep(Duration::from_millis(200));
        let lines = server.drain().to_vec();
        let errors: Vec<&String> = lines.iter().filter(|line| line.contains("ERROR")).collect();
        assert!(errors.is_empty(), "{filter}: ERROR lines: {errors:?}");
        let debug = lines
            .iter()
            .filter(|line| line.contains("DEBUG") && line.contains("actix_http::h1::dispatcher"))
            .count();
        assert_eq!(debug > 0, expect_debug, "{filter}: {lines:?}");
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}
