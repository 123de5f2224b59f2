//! The fault tests: each starts servers of its own (a redis-server, a Redis Cluster, a TCP proxy
//! that cuts or freezes connections, the real binary killed at a fail point) or floods the
//! service, and checks that no answer is ever older than the newest acknowledged write.

#[path = "../api/support/mod.rs"]
mod support;
use support::harness as helpers;

mod aggregates;
mod bus_faults;
mod cache_faults;
mod cluster;
mod fairness;
mod outbox;
mod postgres_tls;
mod redis_acl;
mod redis_forgets;
mod redis_tls;
mod reliability;
