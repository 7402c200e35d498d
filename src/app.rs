//! Wiring: from the parsed configuration to a running service (store, cart, tokens, pages),
//! and its orderly shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::actors::reconciler::{ReconcileSettings, Reconciler, ReconcilerDeps};
use crate::actors::{SagaDeps, Sagas};
use crate::auth::{self, BCRYPT_COST, JWT_SECRET_NAME, TokenKeys};
use crate::cart::{Cart, RedisCart, SqlCart};
use crate::clock::{Clock, SystemClock};
use crate::config::{SIM_APPID, SIM_KEY, SIM_MCH_ID, ServeArgs, WxPayArgs, WxPayMode};
use crate::domain::IdGenerator;
use crate::http::{self, AppState, CheckoutSettings, Limits, Pages};
use crate::queue::{PayLogQueue, RedisPayLogQueue, SqlPayLogQueue};
use crate::store::{self, Db, DbUrl};
use crate::wxpay::sim::{SimConfig, WxPaySim};
use crate::wxpay::{PaymentGateway, WxPayClient, WxPayConfig};

/// Opens the database and applies migrations.
pub async fn open_db(url: &DbUrl, max_connections: u32) -> anyhow::Result<Db> {
    let db = Db::connect(url, max_connections).await?;
    db.migrate().await?;
    Ok(db)
}

/// Everything `serve` needs, built from the configuration: the database migrated, demo
/// data seeded if asked, Redis connected if configured, the token keys ready.
/// `local_addr` is where the server listens: the embedded simulator and the default
/// notify URL are reached there.
pub async fn build_state(args: &ServeArgs, local_addr: SocketAddr) -> anyhow::Result<AppState> {
    anyhow::ensure!(
        args.checkout_wait < args.request_timeout,
        "--checkout-wait ({:?}) must be shorter than --request-timeout ({:?})",
        args.checkout_wait,
        args.request_timeout
    );
    let db = open_db(&args.db.database_url, args.db.db_max_connections).await?;
    crate::metrics::handle();
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

    // With Redis, the cart and the pay-log index live there; without, both are in SQL.
    let (cart, queue, redis): (Arc<dyn Cart>, Arc<dyn PayLogQueue>, _) = match &args.redis_url {
        Some(url) => {
            let client = redis::Client::open(url.as_str()).context("parsing --redis-url")?;
            let conn = client
                .get_connection_manager()
                .await
                .context("connecting to Redis (--redis-url)")?;
            let prefix = args.redis_key_prefix.clone();
            (
                Arc::new(RedisCart::new(conn.clone(), prefix.clone())),
                Arc::new(RedisPayLogQueue::new(conn.clone(), db.clone(), prefix)),
                Some(conn),
            )
        }
        None => (
            Arc::new(SqlCart::new(db.clone())),
            Arc::new(SqlPayLogQueue::new(db.clone())),
            None,
        ),
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

    let (wxpay, wxpay_sim) = wxpay(&args.wxpay, local_addr)?;
    let gateway: Arc<dyn PaymentGateway> = Arc::new(WxPayClient::new(wxpay.clone())?);
    let backoff_ms: Vec<i64> = args
        .reconcile_backoff
        .0
        .iter()
        .map(|d| d.as_millis() as i64)
        .collect();

    let deps = Arc::new(SagaDeps {
        db: db.clone(),
        cart: cart.clone(),
        gateway,
        clock: clock.clone(),
        passivate_after: args.passivate_after,
        sweep_interval: args.sweep_interval,
        first_check_ms: backoff_ms[0],
    });
    let (sagas, _supervisor_task) = Sagas::start(deps.clone()).await?;

    let reconciler_deps = ReconcilerDeps::new(
        db.clone(),
        queue,
        deps.gateway.clone(),
        sagas.clone(),
        clock.clone(),
        ReconcileSettings {
            owner: format!("ordersaga-{}", uuid::Uuid::new_v4().simple()),
            batch: args.reconcile_batch.max(1),
            lease_ms: args.reconcile_lease.as_millis() as i64,
            concurrency: args.reconcile_concurrency.max(1),
            qps: args.wxpay_qps,
            backoff_ms,
            max_batches: 20,
        },
    );
    let cron = (args.reconcile_cron != "off").then_some(args.reconcile_cron.as_str());
    let reconciler = Reconciler::start(reconciler_deps, cron).await?;

    Ok(AppState {
        db,
        cart,
        sagas,
        reconciler,
        ids: Arc::new(IdGenerator::new(args.worker_id)),
        checkout: CheckoutSettings {
            pay_timeout: args.pay_timeout,
            points_per_order: args.points_per_order,
            wait: args.checkout_wait,
            wx_min_close_interval: args.wxpay.min_close_interval,
        },
        wxpay: Arc::new(wxpay),
        wxpay_sim,
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

/// The WeChat Pay client's configuration, and the simulator when in `sim` mode.
fn wxpay(
    args: &WxPayArgs,
    local_addr: SocketAddr,
) -> anyhow::Result<(WxPayConfig, Option<Arc<WxPaySim>>)> {
    let host = if local_addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), local_addr.port())
    } else {
        local_addr
    };
    let default_notify = format!("http://{host}/api/pay/notify/wechat");
    match args.mode {
        WxPayMode::Sim => {
            let appid = args.appid.clone().unwrap_or_else(|| SIM_APPID.into());
            let mch_id = args.mch_id.clone().unwrap_or_else(|| SIM_MCH_ID.into());
            let key = args.key.clone().unwrap_or_else(|| SIM_KEY.into());
            let sim = WxPaySim::new(SimConfig {
                appid: appid.clone(),
                mch_id: mch_id.clone(),
                key: key.clone(),
                min_close_interval: args.min_close_interval,
                notify_time_scale: args.sim_notify_scale,
            });
            let config = WxPayConfig {
                base_url: args
                    .base_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{host}{SIM_MOUNT}")),
                appid,
                mch_id,
                key,
                sign_type: args.sign_type,
                notify_url: args.notify_url.clone().unwrap_or(default_notify),
                spbill_create_ip: args.spbill_create_ip.clone(),
                body: args.body.clone(),
                timeout: args.timeout,
            };
            Ok((config, Some(sim)))
        }
        WxPayMode::Live => {
            let required = |v: &Option<String>, flag: &str| {
                v.clone()
                    .filter(|s| !s.is_empty())
                    .with_context(|| format!("--wxpay live needs {flag}"))
            };
            let key = required(&args.key, "--wxpay-key")?;
            anyhow::ensure!(
                key.len() == 32,
                "--wxpay-key must be the 32-character API key"
            );
            let notify_url = required(&args.notify_url, "--wxpay-notify-url")?;
            anyhow::ensure!(
                notify_url.starts_with("https://") && !notify_url.contains('?'),
                "--wxpay-notify-url must be an https URL without a query string"
            );
            let config = WxPayConfig {
                base_url: args
                    .base_url
                    .clone()
                    .unwrap_or_else(|| "https://api.mch.weixin.qq.com".into()),
                appid: required(&args.appid, "--wxpay-appid")?,
                mch_id: required(&args.mch_id, "--wxpay-mch-id")?,
                key,
                sign_type: args.sign_type,
                notify_url,
                spbill_create_ip: args.spbill_create_ip.clone(),
                body: args.body.clone(),
                timeout: args.timeout,
            };
            Ok((config, None))
        }
    }
}

/// Where `serve` mounts the simulator.
pub const SIM_MOUNT: &str = "/wxpay-sim";

/// Runs the service on `listener` until `shutdown` completes; then HTTP drains, the
/// reconciler's schedule stops, the saga actors stop (their state is already on disk) and
/// the pools close.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = state.db.clone();
    let sagas = state.sagas.clone();
    let reconciler = state.reconciler.clone();
    let result = http::serve(listener, state, shutdown).await;
    reconciler.stop().await;
    sagas.stop().await;
    db.close().await;
    result
}
