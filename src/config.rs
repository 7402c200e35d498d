//! The command line: `ordersaga [serve]`, `ordersaga migrate`, and the operator CLI
//! (`token`, `sagas`, `alerts`; see [`crate::cli`]). Every flag has an `ORDERSAGA_*`
//! environment variable, and `--help` lists both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

use crate::store::DbUrl;

#[derive(Parser, Debug)]
#[command(
    name = "ordersaga",
    version,
    about = "Checkout and payment orchestrator: one durable saga per order, WeChat Pay v2 Native",
    long_about = "Checkout and payment orchestrator for an online shop.\n\n\
        Without a subcommand, `ordersaga` runs `serve`. On the defaults it uses an embedded \
        SQLite database under data/ (cart and pay-log queue included) and the embedded WeChat \
        Pay simulator at /wxpay-sim, so the whole checkout works offline; `--demo` seeds a \
        demo shop.",
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
    /// Load generator: checkouts and payments on a temporary PostgreSQL database and SQLite
    /// file, over HTTP; prints throughput, latency and their ratio.
    Bench(crate::bench::BenchArgs),
    /// Mint a token signed with the server's HS256 secret (printed alone on stdout).
    #[command(
        long_about = "Mint a token signed with the server's HS256 secret; only the token is \
            printed on stdout.\n\n\
            The secret is --jwt-secret (ORDERSAGA_JWT_SECRET) when given, else the one the \
            server generated and keeps in its database (--database-url). A server that only \
            verifies RS256 tokens (--jwt-public-key) does not accept these tokens."
    )]
    Token(TokenArgs),
    /// List, show, cancel and retry sagas on a running server (admin API).
    Sagas(SagasArgs),
    /// List the operator alerts of a running server, or resolve one (admin API).
    Alerts(AlertsArgs),
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

/// The roles a minted token carries: `user` always, `admin` on top with `--role admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    /// A shopper: roles ["user"].
    User,
    /// An operator: roles ["user", "admin"].
    Admin,
}

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// Who the token is for (its `username` claim): 1 to 50 letters, digits, '_', '-' or '.'.
    #[arg(long, env = "ORDERSAGA_CLI_TOKEN_USER", value_parser = parse_username)]
    pub user: crate::domain::Username,

    /// `user` (a shopper) or `admin` (an operator; also carries `user`).
    #[arg(
        long,
        env = "ORDERSAGA_CLI_TOKEN_ROLE",
        value_enum,
        default_value = "user"
    )]
    pub role: TokenRole,

    /// How long the token is valid, e.g. `1h`, `15m`.
    #[arg(long, env = "ORDERSAGA_CLI_TOKEN_TTL", default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,

    /// Where the server keeps its generated secret (read only when --jwt-secret is absent).
    #[command(flatten)]
    pub db: DatabaseArgs,

    /// The HS256 secret the server was started with (at least 32 characters). Without it,
    /// the secret the server generated and keeps in the database is used.
    #[arg(long, env = "ORDERSAGA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

fn parse_username(raw: &str) -> Result<crate::domain::Username, String> {
    crate::domain::Username::parse(raw).map_err(|e| e.to_string())
}

fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(raw).map_err(|e| e.to_string())?;
    if ttl < Duration::from_secs(1) {
        return Err("give at least one second, e.g. 1h".into());
    }
    Ok(ttl)
}

/// The running server the `sagas` and `alerts` commands talk to.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Server")]
pub struct ServerArgs {
    /// Base URL of the running ordersaga server.
    #[arg(
        long,
        env = "ORDERSAGA_URL",
        default_value = "http://127.0.0.1:8080",
        value_parser = parse_server_url,
        global = true
    )]
    pub url: url::Url,

    /// A token with the admin role (required). Mint one on the server's machine with
    /// `ordersaga token --user admin --role admin`.
    #[arg(long, env = "ORDERSAGA_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

fn parse_server_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}`: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{raw}`: give an http:// or https:// URL"));
    }
    Ok(url)
}

#[derive(Args, Debug, Clone)]
pub struct SagasArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    #[command(subcommand)]
    pub command: SagasCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum SagasCommand {
    /// Sagas, newest first, one page at a time.
    List(SagaListArgs),
    /// One saga: its state, its timeline and its alerts.
    Show(SagaShowArgs),
    /// Cancel an unpaid order as an operator: everything done so far is undone.
    Cancel(SagaIdArgs),
    /// Resume a `stuck` saga.
    Retry(SagaIdArgs),
}

/// The states a saga can be in, as the server names them.
pub use crate::workflows::checkout::PHASE_NAMES as SAGA_STATES;

#[derive(Args, Debug, Clone)]
pub struct SagaListArgs {
    /// Only sagas in this state.
    #[arg(long, env = "ORDERSAGA_SAGAS_STATE", value_parser = SAGA_STATES)]
    pub state: Option<String>,

    /// Only this shopper's sagas.
    #[arg(long, env = "ORDERSAGA_SAGAS_USERNAME")]
    pub username: Option<String>,

    /// Only the saga of this order.
    #[arg(long, env = "ORDERSAGA_SAGAS_ORDER_ID")]
    pub order_id: Option<String>,

    /// Only sagas created at or after this time (RFC 3339, e.g. 2025-01-31T08:00:00Z).
    #[arg(long, env = "ORDERSAGA_SAGAS_SINCE", value_parser = parse_rfc3339)]
    pub since: Option<DateTime<FixedOffset>>,

    /// Only sagas created before this time (RFC 3339).
    #[arg(long, env = "ORDERSAGA_SAGAS_UNTIL", value_parser = parse_rfc3339)]
    pub until: Option<DateTime<FixedOffset>>,

    /// Most sagas on one page (the server caps it).
    #[arg(long, env = "ORDERSAGA_SAGAS_LIMIT", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,

    /// Where the page starts: the `next: --cursor` printed under the previous page.
    #[arg(long, env = "ORDERSAGA_SAGAS_CURSOR")]
    pub cursor: Option<String>,

    /// Print the server's JSON (`items`, `nextCursor`) instead of a table.
    #[arg(long, env = "ORDERSAGA_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

fn parse_rfc3339(raw: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map_err(|e| format!("`{raw}` is not an RFC 3339 time like 2025-01-31T08:00:00Z: {e}"))
}

#[derive(Args, Debug, Clone)]
pub struct SagaShowArgs {
    /// The order id.
    pub order_id: String,

    /// Print the server's JSON (saga, order, items, timeline, alerts) instead of text.
    #[arg(long, env = "ORDERSAGA_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SagaIdArgs {
    /// The order id.
    pub order_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    #[command(subcommand)]
    pub command: Option<AlertsCommand>,

    /// List resolved alerts too (by default only the open ones). Listing only.
    #[arg(long, env = "ORDERSAGA_ALERTS_ALL", value_parser = BoolishValueParser::new())]
    pub all: bool,

    /// Print the server's JSON (`items`) instead of a table. Listing only.
    #[arg(long, env = "ORDERSAGA_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum AlertsCommand {
    /// Mark an alert as handled (it is kept, with who resolved it and when).
    Resolve(AlertIdArgs),
}

#[derive(Args, Debug, Clone)]
pub struct AlertIdArgs {
    /// The alert's id (the ID column of `ordersaga alerts`).
    pub id: i64,
}
