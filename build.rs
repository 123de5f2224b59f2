//! `embed_migrations!` reads `migrations/` at compile time, and cargo tracks only the files a
//! crate's sources name: without this, an added migration is missing from incremental builds
//! (the diesel_migrations documentation's advice).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
