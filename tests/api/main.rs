//! The API tests: the service over HTTP against a real PostgreSQL and Redis, every test in a
//! database of its own. The quick inner loop (`cargo test --test api`); the tests that stop,
//! freeze or flood servers are in `tests/faults/`.

mod support;
// The harness under the name every test file imports it by.
use support::harness as helpers;

mod aggregates;
mod auth;
mod cache;
mod cache_race;
mod cache_tags;
mod cli;
mod crud;
mod dashboard;
mod errors;
mod filters;
mod health;
mod logs;
mod metrics;
mod money;
mod openapi;
mod paging;
mod plans;
mod prepared;
mod relations;
mod rfc;
mod rotation;
mod security;
mod tenancy;
mod transactions;
mod validation;
