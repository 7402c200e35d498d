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

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "ORDERSAGA_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub body_limit: usize,

    /// A request taking longer is answered 408.
    #[arg(long, env = "ORDERSAGA_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
}

impl ServeArgs {
    /// The defaults, as `ordersaga serve` with no flag and no environment would get them.
    pub fn defaults() -> ServeArgs {
        ServeArgs::parse_from_args(["ordersaga"])
    }

    fn parse_from_args<I: IntoIterator<Item = &'static str>>(args: I) -> ServeArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Only::parse_from(args).serve
    }
}
