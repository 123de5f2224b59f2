//! One integration test binary: the service over HTTP against a real PostgreSQL.

mod helpers;

mod auth;
mod crud;
mod errors;
mod filters;
mod paging;
mod relations;
mod tenancy;
mod validation;
