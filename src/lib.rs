//! aishacrm: a multi-tenant CRM JSON API on PostgreSQL.

pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod errors;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod relay;
pub mod startup;
pub mod state;
