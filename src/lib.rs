//! ordersaga: a checkout and payment orchestrator for an online shop.
//!
//! # Layout
//!
//! - [`domain`] – plain data: `Money` in fen, ids, users, SKUs, cart lines. No I/O.
//! - [`workflows`] – pure saga state machines: no I/O, no clock, no randomness.
//! - [`actors`] – ractor actors: `SagaSupervisor`, one `OrderSaga` per active order, and
//!   `PayReconciler`.
//! - [`store`] – the SQL store on PostgreSQL or SQLite: pools, migrations, queries written
//!   once for both backends.
//! - [`queue`] – the `PayLogQueue` port: SQL (the record) and Redis (an index).
//! - [`wxpay`] – WeChat Pay v2 Native: signing, XML, client, notifications, simulator.
//! - [`cart`] – the `Cart` port and its adapters: Redis (the seed's `Cart_{username}` hash)
//!   and SQL.
//! - [`auth`] – JWTs (HS256 or RS256 verify-only) and bcrypt passwords.
//! - [`http`] – axum routers, one module per resource, the envelope and error mapping,
//!   pages.
//! - [`metrics`] – Prometheus metrics for `/metrics`.
//! - [`config`] – the command line and its `ORDERSAGA_*` variables.
//! - [`app`] – wiring configuration into a running service, and shutdown.
//! - [`clock`] – injected time.
//! - [`bench`] – the load generator (`ordersaga bench`).

pub mod actors;
pub mod app;
pub mod auth;
pub mod bench;
pub mod cart;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod queue;
pub mod store;
pub mod workflows;
pub mod wxpay;
