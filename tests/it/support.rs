//! The test harness: a real ordersaga on port 0 against a fresh PostgreSQL database (dropped
//! at the end) or a temporary SQLite file, with Redis keys under a prefix of its own.

use std::time::Duration;

use chrono::Utc;
use ordersaga::app;
use ordersaga::auth::hash_password;
use ordersaga::config::{Backoff, DatabaseArgs, ServeArgs, WxPayArgs, WxPayMode};
use ordersaga::domain::{Address, Money, Role, SkuId, SkuStatus, Username};
use ordersaga::http::AppState;
use ordersaga::store::{Db, DbUrl, NewSku, NewUser};
use ordersaga::wxpay::SignType;
use serde_json::Value;
use tokio::sync::oneshot;

/// bcrypt cost for test users: the minimum, so a login takes milliseconds.
pub const TEST_BCRYPT_COST: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL, with the cart in Redis: the production shape.
    PostgresRedis,
    /// SQLite, with the cart in SQL: the embedded default.
    Sqlite,
}

pub fn pg_admin_url() -> String {
    std::env::var("ORDERSAGA_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("ORDERSAGA_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A database of the test's own: on PostgreSQL `ordersaga_t_<uuid>`, dropped when the
/// value is dropped (even after a failed assertion); on SQLite a file in a temp folder.
pub struct TestDb {
    pub url: DbUrl,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create(postgres: bool) -> TestDb {
        if postgres {
            let name = format!("ordersaga_t_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&pg_admin_url())
                .await
                .expect("PostgreSQL must be reachable (scripts/test.sh starts it)");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .expect("create test database");
            admin.close().await;
            let mut url = url::Url::parse(&pg_admin_url()).unwrap();
            url.set_path(&name);
            TestDb {
                url: DbUrl::Postgres(url.to_string()),
                pg_name: Some(name),
                _dir: None,
            }
        } else {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("nested/ordersaga.db");
            TestDb {
                url: DbUrl::Sqlite(path.to_string_lossy().into_owned()),
                pg_name: None,
                _dir: Some(dir),
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside any async context we can rely on: use a runtime of our own on
        // a plain thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Deletes the test's Redis keys when dropped.
pub struct RedisPrefix(pub String);

impl RedisPrefix {
    pub fn new() -> Self {
        RedisPrefix(format!("t_{}:", uuid::Uuid::new_v4().simple()))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.0);
        let _ = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(redis_url()) else {
                return;
            };
            let Ok(mut conn) = client.get_connection() else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        })
        .join();
    }
}

pub fn serve_args(db: &TestDb, redis_prefix: Option<&RedisPrefix>) -> ServeArgs {
    ServeArgs {
        bind: "127.0.0.1:0".parse().unwrap(),
        db: DatabaseArgs {
            database_url: db.url.clone(),
            db_max_connections: 4,
        },
        redis_url: redis_prefix.map(|_| redis_url()),
        redis_key_prefix: redis_prefix.map(|p| p.0.clone()).unwrap_or_default(),
        jwt_secret: None,
        jwt_public_key: None,
        token_ttl: Duration::from_secs(8 * 3600),
        demo: false,
        pay_timeout: Duration::from_secs(30 * 60),
        points_per_order: 10,
        passivate_after: Duration::from_secs(60),
        sweep_interval: Duration::from_millis(200),
        checkout_wait: Duration::from_secs(5),
        worker_id: 1,
        wxpay: WxPayArgs {
            mode: WxPayMode::Sim,
            base_url: None,
            appid: None,
            mch_id: None,
            key: None,
            sign_type: SignType::HmacSha256,
            notify_url: None,
            // Short, so tests can see the rule without waiting five minutes.
            min_close_interval: Duration::from_millis(500),
            spbill_create_ip: "127.0.0.1".into(),
            body: "畅购商城-订单".into(),
            sim_notify_scale: 0.001,
            timeout: Duration::from_secs(1),
        },
        // Tests drive the reconciler themselves unless they turn the schedule on.
        reconcile_cron: "off".into(),
        reconcile_concurrency: 2,
        wxpay_qps: 200.0,
        reconcile_backoff: Backoff(vec![
            Duration::from_millis(100),
            Duration::from_millis(200),
            Duration::from_millis(400),
        ]),
        reconcile_lease: Duration::from_secs(2),
        reconcile_batch: 20,
        body_limit: 16 * 1024,
        request_timeout: Duration::from_secs(10),
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub state: AppState,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Dropped after the server has stopped: the database goes last.
    _redis: Option<RedisPrefix>,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with the configuration adjusted by `tweak`.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut ServeArgs)) -> TestApp {
        let db = TestDb::create(backend == Backend::PostgresRedis).await;
        let redis = (backend == Backend::PostgresRedis).then(RedisPrefix::new);
        let mut args = serve_args(&db, redis.as_ref());
        tweak(&mut args);
        let listener = tokio::net::TcpListener::bind(args.bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = app::build_state(&args, addr).await.expect("build state");
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app::run(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            state,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            shutdown: Some(tx),
            server: Some(server),
            _redis: redis,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The prefix of this test's Redis keys ("" without Redis).
    pub fn redis_prefix(&self) -> &str {
        self._redis.as_ref().map_or("", |p| p.0.as_str())
    }

    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// Stops the server and waits for it: graceful shutdown must complete.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server stops within 10 s of shutdown")
                .expect("server task")
                .expect("server result");
        }
    }

    pub async fn create_user(&self, name: &str, password: &str, roles: &[Role]) -> Username {
        let username = Username::parse(name).unwrap();
        let hash = hash_password(password, TEST_BCRYPT_COST).unwrap();
        self.db()
            .create_user(NewUser {
                username: &username,
                password_hash: &hash,
                roles,
                now: Utc::now(),
            })
            .await
            .unwrap();
        username
    }

    /// A shopper with a token, without going through bcrypt.
    pub async fn shopper(&self, name: &str) -> (Username, String) {
        let user = self.create_user(name, "pw-irrelevant", &[Role::User]).await;
        let token = self
            .state
            .tokens
            .issue(&user, &[Role::User], Utc::now())
            .unwrap();
        (user, token)
    }

    pub async fn add_address(&self, user: &Username, contact: &str, is_default: bool) -> i64 {
        self.db()
            .add_address(&Address {
                id: 0,
                username: user.to_string(),
                provinceid: Some("广东省".into()),
                cityid: Some("深圳市".into()),
                areaid: Some("南山区".into()),
                phone: Some("13800138000".into()),
                address: Some(format!("{contact} 的地址")),
                contact: Some(contact.into()),
                is_default: Some(if is_default { "1" } else { "0" }.into()),
                alias: None,
            })
            .await
            .unwrap()
    }

    pub async fn add_sku(&self, id: i64, price_fen: i64, num: i32, status: SkuStatus) -> SkuId {
        let id = SkuId::new(id).unwrap();
        self.db()
            .insert_sku(
                &NewSku {
                    id,
                    name: format!("测试商品 {id}"),
                    price: Money::from_fen(price_fen),
                    num,
                    brand_name: "测试".into(),
                    category_name: "测试".into(),
                    spec: "{}".into(),
                    image: "/static/sku.svg".into(),
                    status,
                },
                Utc::now(),
            )
            .await
            .unwrap();
        id
    }

    /// Sends a request with a bearer token and returns (status, envelope).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        envelope(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token)).await
    }

    pub async fn post(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(token)).await
    }
}

/// Status and JSON body; fails the test if the body is not the seed's envelope.
pub async fn envelope(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    for field in ["flag", "code", "message", "data"] {
        assert!(
            body.get(field).is_some(),
            "envelope lacks `{field}`: {body}"
        );
    }
    assert_eq!(
        body["flag"].as_bool().unwrap(),
        status < 400,
        "flag disagrees with status {status}: {body}"
    );
    (status, body)
}

/// Waits until `check` returns true, polling every 20 ms; fails the test after `deadline`.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// Puts `num` units of `sku` in the user's cart.
    pub async fn fill_cart(&self, user: &Username, sku: SkuId, num: i64) {
        let s = self.db().sku(sku).await.unwrap().expect("sku exists");
        self.state
            .cart
            .add(user, &s, ordersaga::domain::CartDelta::new(num).unwrap())
            .await
            .unwrap();
    }

    /// `POST /api/order` with the receiver given inline.
    pub async fn checkout(&self, token: &str) -> (u16, Value) {
        let body = serde_json::json!({
            "receiverContact": "张三", "receiverMobile": "13800138000", "receiverAddress": "深圳市南山区 1 号"
        });
        envelope(
            self.http
                .post(self.url("/api/order"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Saga states by order id.
    pub async fn saga_states(&self) -> Vec<(String, String)> {
        ordersaga::on_pool!(self.db(), |pool| {
            sqlx::query_as("SELECT order_id, state FROM saga ORDER BY order_id")
                .fetch_all(pool)
                .await
                .unwrap()
        })
    }

    /// Waits until no saga is mid-step: each is terminal, waiting for payment or stuck.
    pub async fn wait_settled(&self, deadline: Duration) {
        wait_until(
            deadline,
            "every saga terminal, waiting or stuck",
            || async {
                self.saga_states().await.iter().all(|(_, s)| {
                    matches!(
                        s.as_str(),
                        "completed" | "compensated" | "failed" | "stuck" | "awaiting_payment"
                    )
                })
            },
        )
        .await;
    }
}

/// The `ordersaga` binary under test: `ORDERSAGA_SMOKE_BIN` (scripts/test.sh points it at
/// the release build) or the one cargo built with the tests.
pub fn binary() -> String {
    std::env::var("ORDERSAGA_SMOKE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ordersaga").to_owned())
}

/// A running `ordersaga` process. Killed (SIGKILL) when dropped.
pub struct Process {
    pub child: std::process::Child,
    pub base: String,
    /// Every line the process printed on stdout, as it comes.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Process {
    /// Starts `ordersaga serve` in `dir` with `args` and waits (up to 60 s) for its start-up line.
    pub fn start(dir: &std::path::Path, args: &[String]) -> Process {
        Self::start_until(dir, args, "ordersaga is up: ")
    }

    /// Starts the binary with `args` and waits for the line starting with `ready`, which
    /// carries the base URL.
    pub fn start_until(dir: &std::path::Path, args: &[String], ready: &str) -> Process {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(binary())
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start the binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps reading to the end, so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut printed = Vec::new();
        let base = loop {
            let Ok(line) =
                rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            else {
                let _ = child.kill();
                panic!("no start-up line within 60 s; got {printed:?}");
            };
            printed.push(line.clone());
            if let Some(rest) = line.strip_prefix(ready) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches('/')
                    .to_owned();
            }
        };
        Process {
            child,
            base,
            lines: rx,
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to 20 s for a clean exit and returns its status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running 20 s after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
