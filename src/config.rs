//! The command line: `ordersaga [serve]`, `ordersaga migrate`. Every flag of `serve` has an
//! `ORDERSAGA_*` environment variable, and `--help` lists both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::store::DbUrl;

#[derive(Parser, Debug)]
#[command(
    name = "ordersaga",
    version,
    about = "Checkout and payment orchestrator: one durable saga per order, WeChat Pay v2 Native",
    long_about = "Checkout and payment orchestrator for an online shop.\n\n\
        Without a subcommand, `ordersaga` runs `serve`. On the defaults it uses an embedded \
        SQLite database under data/ and keeps the cart in it; `--demo` seeds a demo shop.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve(Box<ServeArgs>),
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
    /// Run the WeChat Pay v2 simulator on its own port.
    WxpaySim(SimArgs),
}

/// Where payments go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WxPayMode {
    /// The embedded simulator, mounted at /wxpay-sim: the whole flow works offline.
    Sim,
    /// The real WeChat Pay: appid, mch id, key and notify URL are required.
    Live,
}

/// The simulator's own defaults: WeChat's documentation appid and mch_id, a fixed demo key.
pub const SIM_APPID: &str = "wxd930ea5d5a258f4f";
pub const SIM_MCH_ID: &str = "10000100";
pub const SIM_KEY: &str = "ordersagasimulatorkey0123456789a";

#[derive(Args, Debug, Clone)]
pub struct WxPayArgs {
    /// `sim` (the embedded simulator, the default) or `live` (the real WeChat Pay).
    #[arg(
        long = "wxpay",
        env = "ORDERSAGA_WXPAY",
        value_enum,
        default_value = "sim"
    )]
    pub mode: WxPayMode,

    /// WeChat Pay's API base. Default: the embedded simulator (sim), https://api.mch.weixin.qq.com (live).
    #[arg(long = "wxpay-base-url", env = "ORDERSAGA_WXPAY_BASE_URL")]
    pub base_url: Option<String>,

    /// appid bound to the merchant (required for live).
    #[arg(long = "wxpay-appid", env = "ORDERSAGA_WXPAY_APPID")]
    pub appid: Option<String>,

    /// Merchant number (required for live).
    #[arg(long = "wxpay-mch-id", env = "ORDERSAGA_WXPAY_MCH_ID")]
    pub mch_id: Option<String>,

    /// The 32-character API key (required for live). Never logged.
    #[arg(
        long = "wxpay-key",
        env = "ORDERSAGA_WXPAY_KEY",
        hide_env_values = true
    )]
    pub key: Option<String>,

    /// How requests are signed.
    #[arg(
        long = "wxpay-sign-type",
        env = "ORDERSAGA_WXPAY_SIGN_TYPE",
        value_enum,
        default_value = "hmac-sha256"
    )]
    pub sign_type: crate::wxpay::SignType,

    /// Where WeChat posts payment notifications (required for live; default: this server's
    /// /api/pay/notify/wechat).
    #[arg(long = "wxpay-notify-url", env = "ORDERSAGA_WXPAY_NOTIFY_URL")]
    pub notify_url: Option<String>,

    /// WeChat refuses to close an order younger than this; the saga waits at least as long.
    #[arg(long = "wxpay-min-close-interval", env = "ORDERSAGA_WXPAY_MIN_CLOSE_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub min_close_interval: Duration,

    /// spbill_create_ip sent with unifiedorder: the IP of this server.
    #[arg(
        long = "wxpay-spbill-ip",
        env = "ORDERSAGA_WXPAY_SPBILL_IP",
        default_value = "127.0.0.1"
    )]
    pub spbill_create_ip: String,

    /// The order description the payer sees.
    #[arg(
        long = "wxpay-body",
        env = "ORDERSAGA_WXPAY_BODY",
        default_value = "畅购商城-订单"
    )]
    pub body: String,

    /// How long one WeChat Pay call may take before it is retried (at most 3 attempts).
    #[arg(long = "wxpay-timeout", env = "ORDERSAGA_WXPAY_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Simulator only: multiplies WeChat's notification retry delays (1 = real schedule).
    #[arg(
        long = "wxpay-sim-notify-scale",
        env = "ORDERSAGA_WXPAY_SIM_NOTIFY_SCALE",
        default_value_t = 1.0
    )]
    pub sim_notify_scale: f64,
}

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks one).
    #[arg(long, env = "ORDERSAGA_SIM_BIND", default_value = "127.0.0.1:8090")]
    pub bind: SocketAddr,
    #[arg(long, env = "ORDERSAGA_SIM_APPID", default_value = SIM_APPID)]
    pub appid: String,
    #[arg(long, env = "ORDERSAGA_SIM_MCH_ID", default_value = SIM_MCH_ID)]
    pub mch_id: String,
    #[arg(long, env = "ORDERSAGA_SIM_KEY", default_value = SIM_KEY, hide_env_values = true)]
    pub key: String,
    /// closeorder refuses orders younger than this.
    #[arg(long, env = "ORDERSAGA_SIM_MIN_CLOSE_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub min_close_interval: Duration,
    /// Multiplies the notification retry delays.
    #[arg(long, env = "ORDERSAGA_SIM_NOTIFY_SCALE", default_value_t = 1.0)]
    pub notify_scale: f64,
}

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Database: `sqlite://<path>` (folder created) or `postgres://user@host/db`.
    #[arg(
        long,
        env = "ORDERSAGA_DATABASE_URL",
        default_value = "sqlite://data/ordersaga.db"
    )]
    pub database_url: DbUrl,

    /// Most connections the pool opens.
    #[arg(long, env = "ORDERSAGA_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "ORDERSAGA_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    #[command(flatten)]
    pub db: DatabaseArgs,

    /// Redis for the cart (hash `Cart_{username}`); without it the cart lives in the database.
    #[arg(long, env = "ORDERSAGA_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix for every Redis key, to share one Redis between shops or test runs.
    #[arg(long, env = "ORDERSAGA_REDIS_KEY_PREFIX", default_value = "")]
    pub redis_key_prefix: String,

    /// HS256 secret that signs and verifies tokens. Without it and without
    /// --jwt-public-key, a random secret is generated once and kept in the database.
    #[arg(
        long,
        env = "ORDERSAGA_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    pub jwt_secret: Option<String>,

    /// RS256 public key (PEM file) to verify tokens issued elsewhere; login is then off.
    #[arg(long, env = "ORDERSAGA_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// How long an issued token is valid, e.g. `8h`, `30m`.
    #[arg(long, env = "ORDERSAGA_TOKEN_TTL", default_value = "8h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,

    /// Seed demo data (users demo/demo-pass and admin/admin-pass, addresses, 56 SKUs).
    /// Idempotent: existing rows are kept.
    #[arg(long, env = "ORDERSAGA_DEMO")]
    pub demo: bool,

    /// How long a shopper has to pay before the order is closed and everything undone.
    #[arg(long, env = "ORDERSAGA_PAY_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub pay_timeout: Duration,

    /// Loyalty points awarded per order (revoked if the order is undone).
    #[arg(long, env = "ORDERSAGA_POINTS_PER_ORDER", default_value_t = 10)]
    pub points_per_order: i64,

    /// A saga that only waits for payment leaves memory after this long without events;
    /// its next event or its deadline brings it back.
    #[arg(long, env = "ORDERSAGA_PASSIVATE_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    pub passivate_after: Duration,

    /// How often expired payment deadlines of sagas out of memory are looked for.
    #[arg(long, env = "ORDERSAGA_SWEEP_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,

    /// How long `POST /api/order` waits for the saga to reach "awaiting payment" before
    /// answering 202 with the order id.
    #[arg(long, env = "ORDERSAGA_CHECKOUT_WAIT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub checkout_wait: Duration,

    /// This process's worker number in order ids (0-1023); processes sharing a database
    /// need different ones.
    #[arg(long, env = "ORDERSAGA_WORKER_ID", default_value_t = 1, value_parser = clap::value_parser!(u16).range(0..1024))]
    pub worker_id: u16,

    #[command(flatten)]
    pub wxpay: WxPayArgs,

    /// When the pay-log reconciler runs: a cron expression with seconds first (UTC), or
    /// `off`. Each firing only sends a Tick; passes never overlap.
    #[arg(
        long,
        env = "ORDERSAGA_RECONCILE_CRON",
        default_value = "*/5 * * * * *"
    )]
    pub reconcile_cron: String,

    /// orderquery calls the reconciler has in flight at once.
    #[arg(long, env = "ORDERSAGA_RECONCILE_CONCURRENCY", default_value_t = 4)]
    pub reconcile_concurrency: usize,

    /// orderquery calls per second, at most (WeChat rate-limits merchants).
    #[arg(long, env = "ORDERSAGA_WXPAY_QPS", default_value_t = 10.0)]
    pub wxpay_qps: f64,

    /// Delays between checks of one pay log, comma-separated; the last repeats until the
    /// order's deadline. The first is also the delay before the first check.
    #[arg(long, env = "ORDERSAGA_RECONCILE_BACKOFF", default_value = "10s,30s,1m,2m,5m", value_parser = parse_backoff)]
    pub reconcile_backoff: Backoff,

    /// How long a claimed pay log stays with its claimer; a process that dies mid-pass
    /// loses its claims after this and another pass takes them.
    #[arg(long, env = "ORDERSAGA_RECONCILE_LEASE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub reconcile_lease: Duration,

    /// Pay logs claimed per batch.
    #[arg(long, env = "ORDERSAGA_RECONCILE_BATCH", default_value_t = 50)]
    pub reconcile_batch: i64,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "ORDERSAGA_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,

    /// A request taking longer is answered 408.
    #[arg(long, env = "ORDERSAGA_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
}

/// The reconciler's backoff schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff(pub Vec<Duration>);

fn parse_backoff(raw: &str) -> Result<Backoff, String> {
    let delays = raw
        .split(',')
        .map(|part| {
            humantime::parse_duration(part.trim()).map_err(|e| format!("`{}`: {e}", part.trim()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() || delays.iter().any(|d| d.is_zero()) {
        return Err("give one or more positive delays, e.g. 10s,30s,1m".into());
    }
    Ok(Backoff(delays))
}
