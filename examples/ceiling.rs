//! The throughput ceiling of the cached routes: a minimal actix-web server that answers every
//! request with the same bytes as one cached list page, with no auth, no cache lookup and no
//! middleware. `bench/run.sh` fetches the real page from the service once and passes it here;
//! every cached scenario is reported as a ratio to this server's throughput, measured in the
//! same run, on the same machine, with the same worker count and HTTP settings (actix-web's
//! defaults, as the service uses).
//!
//! ```sh
//! cargo build --release --example ceiling
//! CEILING_BODY_FILE=page.json BIND=127.0.0.1:18300 target/release/examples/ceiling
//! ```
//!
//! Environment:
//! - `CEILING_BODY_FILE` (required): the body to answer with;
//! - `CEILING_CONTENT_TYPE` (default `application/json`);
//! - `CEILING_ETAG` (optional): sent as `ETag` with `X-Cache: HIT` and `X-Cache-Tier: L1`, so
//!   the answer carries the same headers as an L1 hit of the service;
//! - `BIND` (default `127.0.0.1:18300`);
//! - `WORKERS` (default `0`: actix-web's default, one per core — as the service).

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};

#[derive(Clone)]
struct Page {
    body: Bytes,
    content_type: String,
    etag: Option<String>,
}

async fn answer(page: web::Data<Page>) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    builder.insert_header((header::CONTENT_TYPE, page.content_type.as_str()));
    if let Some(etag) = &page.etag {
        builder
            .insert_header((header::ETAG, etag.as_str()))
            .insert_header(("X-Cache", "HIT"))
            .insert_header(("X-Cache-Tier", "L1"));
    }
    builder.body(page.body.clone())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let path = env("CEILING_BODY_FILE").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "CEILING_BODY_FILE must name the body to serve",
        )
    })?;
    let page = Page {
        body: Bytes::from(std::fs::read(&path)?),
        content_type: env("CEILING_CONTENT_TYPE").unwrap_or_else(|| "application/json".into()),
        etag: env("CEILING_ETAG"),
    };
    let bind = env("BIND").unwrap_or_else(|| "127.0.0.1:18300".into());
    let workers: usize = match env("WORKERS") {
        Some(value) => value.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "WORKERS must be a number")
        })?,
        None => 0,
    };
    eprintln!(
        "ceiling: {} bytes from {path} on http://{bind} ({} workers)",
        page.body.len(),
        if workers == 0 {
            "default".to_string()
        } else {
            workers.to_string()
        }
    );
    let data = web::Data::new(page);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(answer))
    });
    if workers > 0 {
        server = server.workers(workers);
    }
    server.bind(bind)?.run().await
}
