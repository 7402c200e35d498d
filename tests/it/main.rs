//! The one integration-test binary (linking is slow on two cores): every module below is a
//! topic, every test a sentence. Tests talk to real PostgreSQL, Redis and HTTP.

mod support;

/// Defines `mod $name` with the test body run twice: on PostgreSQL with the cart in Redis,
/// and on SQLite with the cart in SQL.
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use crate::support::{Backend, TestApp};

            async fn body($app: TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                body(TestApp::spawn(Backend::PostgresRedis).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                body(TestApp::spawn(Backend::Sqlite).await).await
            }
        }
    };
}

/// Defines `mod $name` running the async fn `$run(backend)` on each backend, for tests that
/// need their own configuration or setup per backend.
macro_rules! each_backend {
    ($name:ident, $run:ident) => {
        mod $name {
            use crate::support::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                super::$run(Backend::PostgresRedis).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$run(Backend::Sqlite).await
            }
        }
    };
}

mod admin;
mod browser;
mod checkout;
mod cli;
mod compensation;
mod contracts;
mod dashboard;
mod http_auth;
mod http_basics;
mod http_cart;
mod invariants;
mod passivation;
mod payments;
mod reconciliation;
mod recovery;
mod shop_pages;
mod smoke;
