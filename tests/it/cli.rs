//! The operator CLI: the real binary (`ordersaga token`, `sagas`, `alerts`) against a test
//! server, with a cleared environment.

use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use ordersaga::domain::{Money, OrderId, Role, SkuStatus};
use ordersaga::store::DbUrl;
use ordersaga::workflows::checkout::{Event, Outcome, Payment};
use serde_json::Value;

use crate::support::{Backend, TestApp, wait_until};

/// What one run of the binary left behind.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn success(self) -> Run {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }

    #[track_caller]
    fn failure(self, code: i32) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}: {self:#?}"
        );
        assert!(
            self.stdout.is_empty(),
            "nothing on stdout on failure: {self:#?}"
        );
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Runs `ordersaga args...` with only PATH and `env` in its environment.
async fn ordersaga(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(crate::support::binary());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("`ordersaga {}` still running after 60 s", args.join(" ")))
        .expect("run the binary");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The database URL as the binary takes it (with the password, unlike `Display`).
fn db_url(app: &TestApp) -> String {
    match &app.db.url {
        DbUrl::Postgres(url) => url.clone(),
        DbUrl::Sqlite(path) => format!("sqlite://{path}"),
    }
}

/// A token with the admin role for `name`, issued by the test server itself.
async fn operator(app: &TestApp, name: &str) -> String {
    let roles = [Role::User, Role::Admin];
    let user = app.create_user(name, "pw-irrelevant", &roles).await;
    app.state.tokens.issue(&user, &roles, Utc::now()).unwrap()
}

/// The environment that points the CLI at `app` with `token`.
fn server_env<'a>(base: &'a str, token: &'a str) -> [(&'static str, &'a str); 2] {
    [("ORDERSAGA_URL", base), ("ORDERSAGA_TOKEN", token)]
}

/// A shopper's order of `num` × ¥15.00, waiting for payment.
async fn order_for(app: &TestApp, shopper: &str, sku: i64, num: i64) -> OrderId {
    let (user, token) = app.shopper(shopper).await;
    let sku = app.add_sku(sku, 1_500, 10, SkuStatus::OnSale).await;
    app.fill_cart(&user, sku, num).await;
    let (status, body) = app.checkout(&token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["state"], "awaiting_payment", "{body}");
    body["data"]["orderId"].as_str().unwrap().parse().unwrap()
}

async fn state_of(app: &TestApp, order: OrderId) -> String {
    app.db()
        .load_saga(order)
        .await
        .unwrap()
        .unwrap()
        .state
        .phase
        .name()
        .to_owned()
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `token` reads the secret the server generated and keeps in the database: the tokens it
/// mints are accepted, with the admin role only when asked for.
async fn minted_tokens_are_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = db_url(&app);

    let run = ordersaga(
        &[
            "token",
            "--user",
            "cli-admin",
            "--role",
            "admin",
            "--ttl",
            "10m",
            "--database-url",
            &url,
        ],
        &[],
    )
    .await
    .success();
    assert_eq!(run.stdout.lines().count(), 1, "only the token: {run:#?}");
    let admin = run.stdout.trim();
    assert_eq!(admin.split('.').count(), 3, "{admin}");
    let c = claims(admin);
    assert_eq!(c["username"], "cli-admin");
    assert_eq!(c["roles"], serde_json::json!(["user", "admin"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    let (status, body) = app.get("/admin/api/sagas", admin).await;
    assert_eq!(
        status, 200,
        "the admin API accepts the minted admin token: {body}"
    );

    // A shopper's token (the default role), configured through the environment.
    app.create_user("cli-shopper", "pw-irrelevant", &[Role::User])
        .await;
    let run = ordersaga(
        &["token"],
        &[
            ("ORDERSAGA_CLI_TOKEN_USER", "cli-shopper"),
            ("ORDERSAGA_DATABASE_URL", &url),
        ],
    )
    .await
    .success();
    let shopper = run.stdout.trim();
    assert_eq!(claims(shopper)["roles"], serde_json::json!(["user"]));
    assert_eq!(
        claims(shopper)["exp"].as_i64().unwrap() - claims(shopper)["iat"].as_i64().unwrap(),
        3600,
        "one hour by default"
    );
    let (status, body) = app.get("/api/cart/list", shopper).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.get("/admin/api/sagas", shopper).await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (403, Some(20003)),
        "{body}"
    );
    app.stop().await;
}

each_backend!(
    token_minted_from_the_database_secret_is_accepted_by_the_server,
    minted_tokens_are_accepted
);

/// Without a stored secret `token` says what to do and creates nothing; `--jwt-secret`
/// signs without any database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_a_stored_secret_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none/ordersaga.db");
    let missing_url = format!("sqlite://{}", missing.display());
    let run = ordersaga(
        &["token", "--user", "admin", "--database-url", &missing_url],
        &[],
    )
    .await
    .failure(1);
    assert!(
        run.stderr
            .contains("start the server once, or pass --jwt-secret"),
        "{run:#?}"
    );
    assert!(!missing.exists(), "no database created");

    // A database the server never ran on: migrated, but no secret.
    let fresh = dir.path().join("fresh.db");
    let fresh_url: DbUrl = format!("sqlite://{}", fresh.display()).parse().unwrap();
    ordersaga::app::open_db(&fresh_url, 1)
        .await
        .unwrap()
        .close()
        .await;
    let run = ordersaga(
        &["token", "--user", "admin", "--role", "admin"],
        &[("ORDERSAGA_DATABASE_URL", &fresh_url.to_string())],
    )
    .await
    .failure(1);
    assert!(
        run.stderr
            .contains("start the server once, or pass --jwt-secret"),
        "{run:#?}"
    );

    // An explicit secret: the token verifies with it, and no database is touched.
    let secret = "0123456789abcdef0123456789abcdef-cli";
    let run = ordersaga(
        &["token", "--user", "ops", "--role", "admin"],
        &[
            ("ORDERSAGA_JWT_SECRET", secret),
            ("ORDERSAGA_DATABASE_URL", &missing_url),
        ],
    )
    .await
    .success();
    let keys =
        ordersaga::auth::TokenKeys::hs256(secret.as_bytes(), Duration::from_secs(60)).unwrap();
    let principal = keys.verify(run.stdout.trim()).unwrap();
    assert_eq!(principal.username.as_str(), "ops");
    assert!(principal.is_admin());
    assert!(!missing.exists());

    // Usage errors exit 2, as clap's own.
    ordersaga(
        &["token", "--user", "ops", "--jwt-secret", "too short"],
        &[],
    )
    .await
    .failure(2);
    ordersaga(
        &["token", "--user", "no spaces", "--jwt-secret", secret],
        &[],
    )
    .await
    .failure(2);
    ordersaga(&["token", "--user", "ops", "--role", "root"], &[])
        .await
        .failure(2);
}

/// `sagas list` (JSON and table, filters, pages), `sagas show` (the timeline), `sagas
/// cancel` (the saga compensates; a second cancel is refused with the server's reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_are_listed_shown_and_cancelled() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = operator(&app, "ops").await;
    let base = app.url("");
    let env = server_env(&base, &admin);
    let older = order_for(&app, "cli-ann", 7101, 1).await;
    let order = order_for(&app, "cli-bob", 7102, 2).await;
    let id = order.to_string();

    // JSON: the envelope's data, newest first.
    let listed = ordersaga(&["sagas", "list", "--json"], &env)
        .await
        .success()
        .json();
    let items = listed["items"].as_array().unwrap();
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["orderId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), &older.to_string()], "{listed}");
    assert_eq!(items[0]["state"], "awaiting_payment");
    assert_eq!(items[0]["username"], "cli-bob");
    assert_eq!(items[0]["payMoney"], 3_000);

    // The table, with the flags instead of the environment.
    let run = ordersaga(&["sagas", "list", "--url", &base, "--token", &admin], &[])
        .await
        .success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    for header in [
        "ORDER ID",
        "STATE",
        "STEP",
        "USER",
        "PAY",
        "CREATED",
        "DEADLINE",
        "LAST ERROR",
    ] {
        assert!(lines[0].contains(header), "{}", run.stdout);
    }
    let row = lines
        .iter()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("a row for {id}: {}", run.stdout));
    assert!(row.contains("awaiting_payment"), "{row}");
    assert!(row.contains("cli-bob"), "{row}");
    assert!(row.contains("¥30.00"), "{row}");
    assert_eq!(
        lines[0].find("STATE"),
        row.find("awaiting_payment"),
        "aligned: {}",
        run.stdout
    );
    assert!(!run.stdout.contains("next:"), "one page: {}", run.stdout);

    // Filters.
    let run = ordersaga(
        &[
            "sagas",
            "list",
            "--username",
            "cli-ann",
            "--state",
            "awaiting_payment",
        ],
        &env,
    )
    .await
    .success();
    assert!(run.stdout.contains(&older.to_string()), "{run:#?}");
    assert!(!run.stdout.contains(&id), "{run:#?}");
    let run = ordersaga(&["sagas", "list", "--state", "completed"], &env)
        .await
        .success();
    assert_eq!(run.stdout, "no sagas match\n");
    let run = ordersaga(
        &[
            "sagas",
            "list",
            "--json",
            "--order-id",
            &id,
            "--since",
            "2000-01-01T00:00:00Z",
        ],
        &env,
    )
    .await
    .success();
    assert_eq!(run.json()["items"].as_array().unwrap().len(), 1, "{run:#?}");
    let run = ordersaga(
        &[
            "sagas",
            "list",
            "--json",
            "--until",
            "2000-01-01T00:00:00+08:00",
        ],
        &env,
    )
    .await
    .success();
    assert_eq!(run.json()["items"], serde_json::json!([]), "{run:#?}");

    // Pages: `next: --cursor` leads to the next one.
    let run = ordersaga(&["sagas", "list", "--limit", "1"], &env)
        .await
        .success();
    assert!(run.stdout.contains(&id), "{run:#?}");
    let cursor = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("next: --cursor "))
        .unwrap_or_else(|| panic!("a next page: {run:#?}"))
        .to_owned();
    let run = ordersaga(
        &["sagas", "list", "--limit", "1", "--cursor", &cursor],
        &env,
    )
    .await
    .success();
    assert!(run.stdout.contains(&older.to_string()), "{run:#?}");
    assert!(!run.stdout.contains(&id), "{run:#?}");

    // show: the timeline's kinds, in the JSON and in the text.
    let shown = ordersaga(&["sagas", "show", &id, "--json"], &env)
        .await
        .success()
        .json();
    assert_eq!(shown["saga"]["orderId"], id.as_str(), "{shown}");
    let kinds: Vec<String> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.len() >= 2, "{shown}");
    let run = ordersaga(&["sagas", "show", &id], &env).await.success();
    assert!(
        run.stdout.starts_with(&format!("order:      {id}\n")),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("state:      awaiting_payment\n"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("pay:        ¥30.00"), "{run:#?}");
    let timeline = run
        .stdout
        .split("\nTIMELINE\n")
        .nth(1)
        .unwrap_or_else(|| panic!("a TIMELINE section: {run:#?}"));
    assert!(timeline.starts_with("SEQ  AT"), "{run:#?}");
    for kind in &kinds {
        assert!(timeline.contains(kind.as_str()), "{kind}: {run:#?}");
    }
    assert!(run.stdout.ends_with("\nALERTS\nnone\n"), "{run:#?}");

    // cancel: accepted, and the saga undoes everything.
    let run = ordersaga(&["sagas", "cancel", &id], &env).await.success();
    assert!(run.stdout.contains(&id), "{run:#?}");
    wait_until(
        Duration::from_secs(20),
        "the cancelled saga compensated",
        || async { state_of(&app, order).await == "compensated" },
    )
    .await;
    let shown = ordersaga(&["sagas", "show", &id, "--json"], &env)
        .await
        .success()
        .json();
    assert_eq!(shown["saga"]["state"], "compensated");
    assert_eq!(shown["saga"]["endReason"]["kind"], "cancelled", "{shown}");

    // A second cancel is refused: the server's reason and 409 on stderr, exit code 1.
    let run = ordersaga(&["sagas", "cancel", &id], &env).await.failure(1);
    let (status, body) = app
        .post(&format!("/admin/api/sagas/{id}/cancel"), &admin)
        .await;
    assert_eq!(status, 409, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(run.stderr.contains(message), "{message}: {run:#?}");
    assert!(run.stderr.contains("HTTP 409"), "{run:#?}");
    // Retrying a saga that is not stuck is refused the same way.
    let run = ordersaga(&["sagas", "retry", &older.to_string()], &env)
        .await
        .failure(1);
    assert!(run.stderr.contains("HTTP 409"), "{run:#?}");
    assert_eq!(state_of(&app, older).await, "awaiting_payment");
    // An unknown order: 404.
    let run = ordersaga(&["sagas", "show", "1234567"], &env)
        .await
        .failure(1);
    assert!(run.stderr.contains("HTTP 404"), "{run:#?}");
    app.stop().await;
}

/// `alerts` lists an open alert (a payment of the wrong amount), `alerts resolve` resolves
/// it, `alerts --all` still shows it with who resolved it; resolving twice is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_listed_and_resolved() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = operator(&app, "ops").await;
    let base = app.url("");
    let env = server_env(&base, &admin);
    let order = order_for(&app, "cli-cat", 7201, 1).await;
    let id = order.to_string();
    let run = ordersaga(&["alerts"], &env).await.success();
    assert_eq!(run.stdout, "no open alerts\n");

    let wrong = Event::PaymentConfirmed {
        payment: Payment {
            transaction_id: "wxcli0001".into(),
            amount: Money::from_fen(1),
            paid_at_ms: 1,
        },
    };
    let outcome = app.state.sagas.deliver(order, wrong).await.unwrap();
    assert_eq!(outcome, Outcome::Alerted);

    let listed = ordersaga(&["alerts", "--json"], &env)
        .await
        .success()
        .json();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["orderId"], id.as_str());
    assert_eq!(items[0]["kind"], "wrong_amount");
    let alert = items[0]["id"].as_i64().unwrap().to_string();

    let run = ordersaga(&["alerts"], &env).await.success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("ID"), "{run:#?}");
    assert!(lines[0].contains("ORDER ID"), "{run:#?}");
    assert_eq!(lines.len(), 2, "{run:#?}");
    assert!(lines[1].starts_with(&alert), "{run:#?}");
    assert!(lines[1].contains(&id), "{run:#?}");
    assert!(lines[1].contains("wrong_amount"), "{run:#?}");

    // The saga shows it too.
    let run = ordersaga(&["sagas", "show", &id], &env).await.success();
    let alerts = run.stdout.split("\nALERTS\n").nth(1).unwrap();
    assert!(alerts.contains("wrong_amount"), "{run:#?}");

    let run = ordersaga(&["alerts", "resolve", &alert], &env)
        .await
        .success();
    assert_eq!(run.stdout, format!("alert {alert} resolved\n"));
    let run = ordersaga(&["alerts"], &env).await.success();
    assert_eq!(run.stdout, "no open alerts\n");
    let all = ordersaga(&["alerts", "--all", "--json"], &env)
        .await
        .success()
        .json();
    assert_eq!(all["items"][0]["id"].to_string(), alert, "{all}");
    assert!(all["items"][0]["resolvedAt"].is_string(), "{all}");
    assert_eq!(all["items"][0]["resolvedBy"], "ops", "{all}");
    let run = ordersaga(&["alerts", "--all"], &env).await.success();
    assert!(run.stdout.contains(" by ops"), "{run:#?}");

    // Resolving again: 409. An unknown alert: 404.
    let run = ordersaga(&["alerts", "resolve", &alert], &env)
        .await
        .failure(1);
    assert!(run.stderr.contains("HTTP 409"), "{run:#?}");
    assert!(run.stderr.contains("already resolved"), "{run:#?}");
    let run = ordersaga(&["alerts", "resolve", "999999"], &env)
        .await
        .failure(1);
    assert!(run.stderr.contains("HTTP 404"), "{run:#?}");
    app.stop().await;
}

/// A shopper's token, a bad token, no token, a server that is not there, bad flags: each
/// a clear message on stderr and a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_usage_errors_are_explained() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let base = app.url("");
    let (_, shopper) = app.shopper("cli-dan").await;

    let run = ordersaga(&["sagas", "list"], &server_env(&base, &shopper))
        .await
        .failure(1);
    assert!(run.stderr.contains("HTTP 403"), "{run:#?}");
    assert!(run.stderr.contains("access"), "{run:#?}");
    assert!(run.stderr.contains("--role admin"), "{run:#?}");

    let run = ordersaga(&["alerts"], &server_env(&base, "not-a-token"))
        .await
        .failure(1);
    assert!(run.stderr.contains("HTTP 401"), "{run:#?}");

    let run = ordersaga(&["sagas", "list", "--url", &base], &[])
        .await
        .failure(2);
    assert!(
        run.stderr
            .contains("ordersaga token --user admin --role admin"),
        "{run:#?}"
    );

    // Nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let run = ordersaga(&["alerts", "resolve", "1"], &server_env(&closed, "t"))
        .await
        .failure(1);
    assert!(run.stderr.contains("cannot reach the server"), "{run:#?}");

    let env = server_env(&base, &shopper);
    for bad in [
        &["sagas", "list", "--since", "yesterday"][..],
        &["sagas", "list", "--state", "lost"],
        &["sagas", "list", "--limit", "0"],
        &["sagas", "show"],
        &["alerts", "resolve", "first"],
        &["sagas", "list", "--url", "ftp://example.com"],
    ] {
        ordersaga(bad, &env).await.failure(2);
    }

    // Every flag shows its environment variable.
    let help = ordersaga(&["sagas", "list", "--help"], &[]).await.success();
    for var in [
        "ORDERSAGA_URL",
        "ORDERSAGA_TOKEN",
        "ORDERSAGA_SAGAS_STATE",
        "ORDERSAGA_SAGAS_CURSOR",
        "ORDERSAGA_JSON",
    ] {
        assert!(help.stdout.contains(var), "{var}: {}", help.stdout);
    }
    let help = ordersaga(&["token", "--help"], &[]).await.success();
    for var in [
        "ORDERSAGA_CLI_TOKEN_USER",
        "ORDERSAGA_CLI_TOKEN_ROLE",
        "ORDERSAGA_CLI_TOKEN_TTL",
        "ORDERSAGA_DATABASE_URL",
        "ORDERSAGA_JWT_SECRET",
    ] {
        assert!(help.stdout.contains(var), "{var}: {}", help.stdout);
    }
    let help = ordersaga(&["alerts", "--help"], &[]).await.success();
    assert!(
        help.stdout.contains("ORDERSAGA_ALERTS_ALL"),
        "{}",
        help.stdout
    );
    app.stop().await;
}
