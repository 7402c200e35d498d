//! `ordersaga bench`: the load generator. It starts ordersaga in-process on a fresh
//! database of each backend (a temporary PostgreSQL database, a temporary SQLite file),
//! seeds shoppers with carts, then drives real HTTP on loopback: concurrent checkouts,
//! then every order paid through the embedded WeChat Pay simulator. It prints throughput
//! and latency per backend and their ratio. Figures from one run on one machine are only
//! comparable with each other: report ratios.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser};
use futures::StreamExt;

use crate::config::{Cli, Command};
use crate::domain::{CartDelta, Money, OrderId, Role, SkuId, SkuStatus, Username};
use crate::store::{NewSku, NewUser};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// A PostgreSQL URL allowed to CREATE DATABASE; a temporary database is made and dropped.
    #[arg(
        long,
        env = "ORDERSAGA_BENCH_PG",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub pg_admin_url: String,
    /// Checkouts per backend (one shopper each).
    #[arg(long, env = "ORDERSAGA_BENCH_ORDERS", default_value_t = 1000)]
    pub orders: usize,
    /// Requests in flight at once.
    #[arg(long, env = "ORDERSAGA_BENCH_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
    /// Backends to run, comma-separated: postgres, sqlite.
    #[arg(
        long,
        env = "ORDERSAGA_BENCH_BACKENDS",
        default_value = "postgres,sqlite",
        value_delimiter = ','
    )]
    pub backends: Vec<String>,
    /// Pool size of the server under test.
    #[arg(long, env = "ORDERSAGA_BENCH_DB_CONNECTIONS", default_value_t = 8)]
    pub db_connections: u32,
}

/// What one backend did.
#[derive(Debug, Clone)]
pub struct Figures {
    pub backend: String,
    pub checkouts: usize,
    pub ok: usize,
    pub checkout_secs: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub payments_secs: f64,
}

impl Figures {
    pub fn checkouts_per_sec(&self) -> f64 {
        self.ok as f64 / self.checkout_secs
    }

    pub fn payments_per_sec(&self) -> f64 {
        self.ok as f64 / self.payments_secs
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for backend in &args.backends {
        let figures = match backend.as_str() {
            "postgres" => on_postgres(&args).await?,
            "sqlite" => {
                let dir = tempfile_dir()?;
                let url = format!("sqlite://{}/bench.db", dir.display());
                let f = one_backend("sqlite", &url, &args).await;
                let _ = std::fs::remove_dir_all(&dir);
                f?
            }
            other => anyhow::bail!("unknown backend `{other}` (postgres, sqlite)"),
        };
        all.push(figures);
    }
    println!(
        "{:<10} {:>9} {:>6} {:>13} {:>9} {:>9} {:>13}",
        "backend", "checkouts", "ok", "checkouts/s", "p50 ms", "p99 ms", "paid/s"
    );
    for f in &all {
        println!(
            "{:<10} {:>9} {:>6} {:>13.1} {:>9.1} {:>9.1} {:>13.1}",
            f.backend,
            f.checkouts,
            f.ok,
            f.checkouts_per_sec(),
            f.p50_ms,
            f.p99_ms,
            f.payments_per_sec()
        );
    }
    if let [a, b] = all.as_slice() {
        println!(
            "ratio {}/{}: checkouts/s ×{:.2}, p99 ×{:.2}, paid/s ×{:.2}",
            a.backend,
            b.backend,
            a.checkouts_per_sec() / b.checkouts_per_sec(),
            a.p99_ms / b.p99_ms,
            a.payments_per_sec() / b.payments_per_sec()
        );
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("ordersaga-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn on_postgres(args: &BenchArgs) -> anyhow::Result<Figures> {
    let name = format!("ordersaga_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&args.pg_admin_url)
        .await
        .context("connecting to --pg-admin-url")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    let mut url = url::Url::parse(&args.pg_admin_url)?;
    url.set_path(&name);
    let result = one_backend("postgres", url.as_str(), args).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    admin.close().await;
    result
}

const SECRET: &str = "bench-secret-bench-secret-bench-secret";

async fn one_backend(name: &str, database_url: &str, args: &BenchArgs) -> anyhow::Result<Figures> {
    let cli = Cli::try_parse_from([
        "ordersaga",
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--db-max-connections",
        &args.db_connections.to_string(),
        "--jwt-secret",
        SECRET,
        "--reconcile-cron",
        "off",
        "--wxpay-sim-notify-scale",
        "0.001",
        "--checkout-wait",
        "20s",
        "--request-timeout",
        "30s",
    ])?;
    let Some(Command::Serve(serve)) = cli.command else {
        unreachable!("parsed as serve")
    };
    let listener = tokio::net::TcpListener::bind(serve.bind).await?;
    let addr = listener.local_addr()?;
    let state = crate::app::build_state(&serve, addr).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::app::run(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));

    // Ten SKUs with plenty of stock; one shopper per order with one or two lines.
    let now = chrono::Utc::now();
    for i in 0..10 {
        state
            .db
            .insert_sku(
                &NewSku {
                    id: SkuId::new(1_000 + i)?,
                    name: format!("bench {i}"),
                    price: Money::from_fen(1_000 + i * 100),
                    num: 1_000_000,
                    brand_name: "bench".into(),
                    category_name: "bench".into(),
                    spec: "{}".into(),
                    image: String::new(),
                    status: SkuStatus::OnSale,
                },
                now,
            )
            .await?;
    }
    let hash = crate::auth::hash_password("bench", 4)?;
    let mut tokens = Vec::with_capacity(args.orders);
    for i in 0..args.orders {
        let user = Username::parse(&format!("bench{i}"))?;
        state
            .db
            .create_user(NewUser {
                username: &user,
                password_hash: &hash,
                roles: &[Role::User],
                now,
            })
            .await?;
        for sku in [1_000 + (i as i64 % 10), 1_000 + ((i as i64 + 3) % 10)]
            .into_iter()
            .take(1 + i % 2)
        {
            let s = state.db.sku(SkuId::new(sku)?).await?.context("bench sku")?;
            state.cart.add(&user, &s, CartDelta::new(1)?).await?;
        }
        tokens.push(state.tokens.issue(&user, &[Role::User], now)?);
    }

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let base = format!("http://{addr}");
    let body = serde_json::json!({ "receiverContact": "R", "receiverMobile": "1", "receiverAddress": "A" });
    let started = Instant::now();
    let results: Vec<(Duration, Option<(String, String)>)> = futures::stream::iter(tokens)
        .map(|token| {
            let (http, base, body) = (http.clone(), base.clone(), body.clone());
            async move {
                let t = Instant::now();
                let resp = http
                    .post(format!("{base}/api/order"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                let order = match resp {
                    Ok(r) if r.status().is_success() => {
                        r.json::<serde_json::Value>().await.ok().and_then(|v| {
                            v["data"]["orderId"]
                                .as_str()
                                .map(|id| (id.to_owned(), token.clone()))
                        })
                    }
                    _ => None,
                };
                (t.elapsed(), order)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let checkout_secs = started.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = results
        .iter()
        .map(|(d, _)| d.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let orders: Vec<(String, String)> = results.into_iter().filter_map(|(_, o)| o).collect();

    // Pay everything: the pay page's Native order, the simulator's scan, the notification.
    let sim = state
        .wxpay_sim
        .clone()
        .context("bench runs on the embedded simulator")?;
    let paying = Instant::now();
    futures::stream::iter(orders.iter().cloned())
        .for_each_concurrent(args.concurrency.max(1), |(order, token)| {
            let (http, base, sim) = (http.clone(), base.clone(), sim.clone());
            async move {
                let _ = http
                    .get(format!("{base}/api/pay/native?orderId={order}"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                let _ = sim.pay(&order).await;
            }
        })
        .await;
    let ids: Vec<OrderId> = orders.iter().filter_map(|(o, _)| o.parse().ok()).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let counts = state.db.saga_counts().await?;
        let completed = counts
            .iter()
            .find(|(s, _)| s == "completed")
            .map_or(0, |(_, n)| *n);
        if completed as usize >= ids.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let payments_secs = paying.elapsed().as_secs_f64();

    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(Figures {
        backend: name.to_owned(),
        checkouts: latencies.len(),
        ok: orders.len(),
        checkout_secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        payments_secs,
    })
}
