//! One integration test binary: the service over HTTP against a real PostgreSQL.

mod helpers;

mod auth;
mod bus_faults;
mod cache;
mod cache_faults;
mod cache_race;
mod cli;
mod cluster;
mod crud;
mod dashboard;
mod errors;
mod fairness;
mod filters;
mod health;
mod logs;
mod metrics;
mod money;
mod openapi;
mod outbox;
mod paging;
mod plans;
mod proxy;
mod redis_acl;
mod redis_forgets;
mod redis_server;
mod relations;
mod reliability;
mod rfc;
mod rotation;
mod security;
mod tenancy;
mod validation;
