//! One integration test binary: the service over HTTP against a real PostgreSQL.

mod helpers;

mod auth;
mod cli;
mod crud;
mod dashboard;
mod errors;
mod filters;
mod health;
mod openapi;
mod paging;
mod plans;
mod relations;
mod tenancy;
mod validation;
mod cache;
mod cache_faults;
mod cache_race;
