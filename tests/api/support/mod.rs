//! What the test binaries share: the harness (`spawn_app()`, a database per test cloned from a
//! migrated template), a redis-server, a PostgreSQL server (with test certificates) and a TCP
//! proxy of a test's own, the real binary as a child
//! process, and `EXPLAIN` of the service's queries. Behaviour files hold tests only.

// Each binary uses part of it.
#![allow(dead_code)]

pub mod binary;
pub mod explain;
pub mod harness;
pub mod postgres_server;
pub mod proxy;
pub mod redis_server;
