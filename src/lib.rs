//! jitgate: just-in-time access to Azure VM management ports.
//!
//! A request's path: `api` (HTTP) -> `domain` (rules, no I/O) -> `store` (SQL, one
//! transaction with its `audit` event) -> `dispatch` (ARM side effects, via the outbox).

pub mod api;
pub mod arm;
pub mod audit;
pub mod auth;
pub mod chatops;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod domain;
pub mod history_seed;
pub mod inventory;
pub mod metrics;
pub mod notify;
pub mod rbac;
pub mod server;
pub mod store;
pub mod telemetry;
