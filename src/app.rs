//! Wiring: from the parsed configuration to a running service (store, cart, tokens, pages),
//! and its orderly shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::actors::{SagaDeps, Sagas};
use crate::auth::{self, BCRYPT_COST, JWT_SECRET_NAME, TokenKeys};
use crate::cart::{Cart, RedisCart, SqlCart};
use crate::clock::{Clock, SystemClock};
use crate::config::ServeArgs;
use crate::domain::IdGenerator;
use crate::http::{self, AppState, CheckoutSettings, Limits, Pages};
use crate::store::{self, Db, DbUrl};

/// Opens the database and applies migrations.
pub async fn open_db(url: &DbUrl, max_connections: u32) -> anyhow::Result<Db> {
    let db = Db::connect(url, max_connections).await?;
    db.migrate().await?;
    Ok(db)
}

/// Everything `serve` needs, built from the configuration: the database migrated, demo
/// data seeded if asked, Redis connected if configured, the token keys ready.
pub async fn build_state(args: &ServeArgs) -> anyhow::Result<AppState> {
    anyhow::ensure!(
        args.checkout_wait < args.request_timeout,
        "--checkout-wait ({:?}) must be shorter than --request-timeout ({:?})",
        args.checkout_wait,
        args.request_timeout
    );
    let db = open_db(&args.db.database_url, args.db.db_max_connections).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    if args.demo {
        let now = clock.now();
        // Hashing blocks for ~250 ms per new demo user, once, before serving starts.
        store::seed_demo(&db, now, |password| {
            auth::hash_password(password, BCRYPT_COST)
        })
        .await
        .context("seeding demo data")?;
    }

    let (cart, redis): (Arc<dyn Cart>, _) = match &args.redis_url {
        Some(url) => {
            let client = redis::Client::open(url.as_str()).context("parsing --redis-url")?;
            let conn = client
                .get_connection_manager()
                .await
                .context("connecting to Redis (--redis-url)")?;
            (
                Arc::new(RedisCart::new(conn.clone(), args.redis_key_prefix.clone())),
                Some(conn),
            )
        }
        None => (Arc::new(SqlCart::new(db.clone())), None),
    };

    let tokens = match (&args.jwt_secret, &args.jwt_public_key) {
        (Some(secret), _) => {
            anyhow::ensure!(
                secret.len() >= 32,
                "--jwt-secret must be at least 32 characters"
            );
            TokenKeys::hs256(secret.as_bytes(), args.token_ttl)?
        }
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --jwt-public-key {}", path.display()))?;
            TokenKeys::rs256_public(&pem, args.token_ttl)?
        }
        (None, None) => {
            let secret = db
                .secret_or_insert(JWT_SECRET_NAME, auth::random_secret)
                .await?;
            TokenKeys::hs256(secret.as_bytes(), args.token_ttl)?
        }
    };

    let deps = Arc::new(SagaDeps {
        db: db.clone(),
        cart: cart.clone(),
        clock: clock.clone(),
        passivate_after: args.passivate_after,
        sweep_interval: args.sweep_interval,
    });
    let (sagas, _supervisor_task) = Sagas::start(deps).await?;

    Ok(AppState {
        db,
        cart,
        sagas,
        ids: Arc::new(IdGenerator::new(args.worker_id)),
        checkout: CheckoutSettings {
            pay_timeout: args.pay_timeout,
            points_per_order: args.points_per_order,
            wait: args.checkout_wait,
        },
        tokens: Arc::new(tokens),
        redis,
        pages: Pages::new(),
        clock,
        limits: Limits {
            body_bytes: args.body_limit,
            request_timeout: args.request_timeout,
        },
    })
}

/// Runs the service on `listener` until `shutdown` completes; then HTTP drains, the saga
/// actors stop (their state is already on disk) and the pools close.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = state.db.clone();
    let sagas = state.sagas.clone();
    let result = http::serve(listener, state, shutdown).await;
    sagas.stop().await;
    db.close().await;
    result
}
