//! Crash recovery: the real binary on PostgreSQL, SIGKILLed at random moments while
//! shoppers check out, cancel and pay and deadlines expire. After the last restart every
//! saga must settle and every invariant of DESIGN.md must hold.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ordersaga::auth::TokenKeys;
use ordersaga::cart::{Cart, RedisCart};
use ordersaga::domain::{CartDelta, Role, SkuId, SkuStatus, Username};
use ordersaga::store::Db;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::invariants::{assert_invariants, stock_snapshot};
use crate::support::{Process, RedisPrefix, TestDb, redis_url, wait_until};

const SECRET: &str = "recovery-test-secret-0123456789abcdef";
const SHOPPERS: usize = 60;

fn args(db: &TestDb, prefix: &RedisPrefix) -> Vec<String> {
    let ordersaga::store::DbUrl::Postgres(url) = &db.url else {
        unreachable!("postgres only")
    };
    [
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        url,
        "--db-max-connections",
        "4",
        "--redis-url",
        &redis_url(),
        "--redis-key-prefix",
        &prefix.0,
        "--jwt-secret",
        SECRET,
        "--pay-timeout",
        "3s",
        "--passivate-after",
        "1s",
        "--sweep-interval",
        "200ms",
        "--checkout-wait",
        "2s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One shopper's turn: check out, then pay, cancel or let the deadline pass. Every request
/// may fail because the process is being killed; that is the point.
async fn shopper_turn(base: String, token: String, admin: String, action: u8, db: Db) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let body = json!({ "receiverContact": "R", "receiverMobile": "1", "receiverAddress": "A" });
    let Ok(resp) = http
        .post(format!("{base}/api/order"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
    else {
        return;
    };
    let Ok(env) = resp.json::<serde_json::Value>().await else {
        return;
    };
    let Some(order) = env["data"]["orderId"].as_str().map(str::to_owned) else {
        return;
    };
    match action {
        0 => {
            let _ = http
                .post(format!("{base}/api/order/{order}/cancel"))
                .bearer_auth(&token)
                .send()
                .await;
        }
        1 | 2 => {
            let Ok(Some(saga)) = db.load_saga(order.parse().unwrap()).await else {
                return;
            };
            let Some(money) = saga.state.pay_money() else {
                return;
            };
            let body = json!({ "transactionId": format!("wx{order}"), "totalFee": money.fen() });
            // Twice: a repeated confirmation must not pay twice.
            for _ in 0..2 {
                let _ = http
                    .post(format!("{base}/admin/api/sagas/{order}/payment"))
                    .bearer_auth(&admin)
                    .json(&body)
                    .send()
                    .await;
            }
        }
        _ => {} // the deadline will pass
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_process_at_random_moments_loses_nothing_and_applies_nothing_twice() {
    let seed: u64 = std::env::var("ORDERSAGA_RECOVERY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("recovery seed: {seed} (set ORDERSAGA_RECOVERY_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let db_handle = TestDb::create(true).await;
    let prefix = RedisPrefix::new();
    let db = ordersaga::app::open_db(&db_handle.url, 2).await.unwrap();
    let skus: Vec<SkuId> = {
        let mut v = Vec::new();
        for (i, stock) in [60, 60, 30].into_iter().enumerate() {
            let id = SkuId::new(7001 + i as i64).unwrap();
            db.insert_sku(
                &ordersaga::store::NewSku {
                    id,
                    name: format!("恢复测试 {i}"),
                    price: ordersaga::domain::Money::from_fen(1_000 + 100 * i as i64),
                    num: stock,
                    brand_name: "t".into(),
                    category_name: "t".into(),
                    spec: "{}".into(),
                    image: String::new(),
                    status: SkuStatus::OnSale,
                },
                Utc::now(),
            )
            .await
            .unwrap();
            v.push(id);
        }
        v
    };
    let initial = stock_snapshot(&db).await;
    let keys = TokenKeys::hs256(SECRET.as_bytes(), Duration::from_secs(3600)).unwrap();
    let admin = Username::parse("ops").unwrap();
    let hash = ordersaga::auth::hash_password("x", 4).unwrap();
    db.create_user(ordersaga::store::NewUser {
        username: &admin,
        password_hash: &hash,
        roles: &[Role::User, Role::Admin],
        now: Utc::now(),
    })
    .await
    .unwrap();
    let admin_token = keys
        .issue(&admin, &[Role::User, Role::Admin], Utc::now())
        .unwrap();
    let mut shoppers = Vec::new();
    for i in 0..SHOPPERS {
        let user = Username::parse(&format!("crash{i}")).unwrap();
        db.create_user(ordersaga::store::NewUser {
            username: &user,
            password_hash: &hash,
            roles: &[Role::User],
            now: Utc::now(),
        })
        .await
        .unwrap();
        let token = keys.issue(&user, &[Role::User], Utc::now()).unwrap();
        shoppers.push((user, token));
    }
    let conn = redis::Client::open(redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let cart = Arc::new(RedisCart::new(conn, prefix.0.clone()));
    let dir = tempfile::tempdir().unwrap();

    let mut interrupted = 0;
    for round in 0..4 {
        // Every shopper fills the cart again: one or two SKUs.
        for (user, _) in &shoppers {
            for sku in &skus {
                if rng.random_bool(0.5) {
                    let s = db.sku(*sku).await.unwrap().unwrap();
                    let _ = cart
                        .add(user, &s, CartDelta::new(rng.random_range(1..=2)).unwrap())
                        .await;
                }
            }
        }
        let process = Process::start(dir.path(), &args(&db_handle, &prefix));
        let tasks: Vec<_> = shoppers
            .iter()
            .map(|(_, token)| {
                let action = rng.random_range(0..4u8);
                let delay = Duration::from_millis(rng.random_range(0..50));
                let (base, token, admin, db) = (
                    process.base.clone(),
                    token.clone(),
                    admin_token.clone(),
                    db.clone(),
                );
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    shopper_turn(base, token, admin, action, db).await
                })
            })
            .collect();
        let kill_after = Duration::from_millis(rng.random_range(40..700));
        tokio::time::sleep(kill_after).await;
        process.kill();
        for t in tasks {
            t.await.unwrap();
        }
        let open: Vec<(String, i64)> = ordersaga::on_pool!(&db, |pool| {
            sqlx::query_as(
                "SELECT state, COUNT(*) FROM saga WHERE state NOT IN ('completed', 'compensated', 'failed')
                 GROUP BY state ORDER BY state",
            )
            .fetch_all(pool)
            .await
            .unwrap()
        });
        println!("round {round}: SIGKILL after {kill_after:?}; sagas left open: {open:?}");
        interrupted += open.iter().map(|(_, n)| n).sum::<i64>();
    }
    assert!(
        interrupted > 0,
        "the kills must leave sagas open for recovery to resume"
    );

    // The last start: everything in flight resumes, deadlines expire, nothing is left.
    let process = Process::start(dir.path(), &args(&db_handle, &prefix));
    wait_until(Duration::from_secs(60), "every saga terminal", || async {
        let states: Vec<(String,)> = ordersaga::on_pool!(&db, |pool| {
            sqlx::query_as("SELECT state FROM saga")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        states
            .iter()
            .all(|(s,)| matches!(s.as_str(), "completed" | "compensated" | "failed"))
    })
    .await;
    let exit = process.terminate().await;
    assert!(exit.success(), "{exit:?}");

    let counts: Vec<(String, i64)> = ordersaga::on_pool!(&db, |pool| {
        sqlx::query_as("SELECT state, COUNT(*) FROM saga GROUP BY state ORDER BY state")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    println!("saga outcomes: {counts:?}");
    assert!(
        counts.iter().map(|(_, n)| n).sum::<i64>() > 0,
        "the driver created sagas"
    );
    // Journals are gap-free: one entry per version, none lost, none doubled.
    let gaps: Vec<(String, i64, i64)> = ordersaga::on_pool!(&db, |pool| {
        sqlx::query_as(
            "SELECT s.order_id, s.version, COUNT(e.seq) FROM saga s JOIN saga_event e ON e.order_id = s.order_id
             GROUP BY s.order_id, s.version HAVING COUNT(e.seq) <> s.version + 1",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    });
    assert!(gaps.is_empty(), "journals with gaps: {gaps:?}");
    // No payment applied twice: one transaction id per paid order, and each paid order completed.
    let (paid_orders, paid_completed): (i64, i64) = ordersaga::on_pool!(&db, |pool| {
        sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE s.state = 'completed')
             FROM tb_order o JOIN saga s ON s.order_id = o.id WHERE o.pay_status = '1'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(
        paid_orders, paid_completed,
        "every paid order's saga completed"
    );
    assert_invariants(&db, &initial, 10).await;
    db.close().await;
}

/// The reconciler killed mid-pass: WeChat (a simulator process of its own, which survives)
/// was paid for every order and told us nothing; the server is SIGKILLed while its passes
/// claim and query. After the last restart every paid order is completed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_reconciler_mid_pass_loses_no_pay_log_and_completes_nothing_twice() {
    let seed: u64 = std::env::var("ORDERSAGA_RECOVERY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("reconciler recovery seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let sim_args: Vec<String> = [
        "wxpay-sim",
        "--bind",
        "127.0.0.1:0",
        "--min-close-interval",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sim = Process::start_until(dir.path(), &sim_args, "WeChat Pay simulator is up: ");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let faults = json!({ "dropAllNotifications": true });
    assert!(
        http.post(format!("{}/sim/faults", sim.base))
            .json(&faults)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    let db_handle = TestDb::create(true).await;
    let prefix = RedisPrefix::new();
    let db = ordersaga::app::open_db(&db_handle.url, 2).await.unwrap();
    let sku = SkuId::new(7101).unwrap();
    db.insert_sku(
        &ordersaga::store::NewSku {
            id: sku,
            name: "对账测试".into(),
            price: ordersaga::domain::Money::from_fen(2_500),
            num: 1_000,
            brand_name: "t".into(),
            category_name: "t".into(),
            spec: "{}".into(),
            image: String::new(),
            status: SkuStatus::OnSale,
        },
        Utc::now(),
    )
    .await
    .unwrap();
    let initial = stock_snapshot(&db).await;
    let keys = TokenKeys::hs256(SECRET.as_bytes(), Duration::from_secs(3600)).unwrap();
    let hash = ordersaga::auth::hash_password("x", 4).unwrap();
    let conn = redis::Client::open(redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let cart = RedisCart::new(conn, prefix.0.clone());
    let server_args = {
        let mut a = args(&db_handle, &prefix);
        for (flag, value) in [
            ("--pay-timeout", "10m"),
            ("--wxpay-base-url", sim.base.as_str()),
            ("--reconcile-cron", "* * * * * *"),
            ("--reconcile-backoff", "200ms,400ms,800ms"),
            ("--reconcile-lease", "1s"),
            ("--wxpay-timeout", "1s"),
            // Slow enough that a pass is still running when the kill comes.
            ("--wxpay-qps", "4"),
        ] {
            match a.iter().position(|x| x == flag) {
                Some(i) => a[i + 1] = value.into(),
                None => a.extend([flag.to_owned(), value.to_owned()]),
            }
        }
        a
    };

    let mut paid: Vec<String> = Vec::new();
    for round in 0..3 {
        let server = Process::start(dir.path(), &server_args);
        for i in 0..6 {
            let user = Username::parse(&format!("rec{round}x{i}")).unwrap();
            db.create_user(ordersaga::store::NewUser {
                username: &user,
                password_hash: &hash,
                roles: &[Role::User],
                now: Utc::now(),
            })
            .await
            .unwrap();
            let token = keys.issue(&user, &[Role::User], Utc::now()).unwrap();
            let s = db.sku(sku).await.unwrap().unwrap();
            cart.add(&user, &s, CartDelta::new(1).unwrap())
                .await
                .unwrap();
            let body =
                json!({ "receiverContact": "R", "receiverMobile": "1", "receiverAddress": "A" });
            let env: serde_json::Value = http
                .post(format!("{}/api/order", server.base))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let order = env["data"]["orderId"]
                .as_str()
                .expect("checkout answered")
                .to_owned();
            let native: serde_json::Value = http
                .get(format!("{}/api/pay/native?orderId={order}", server.base))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(native["flag"], true, "{native}");
            let pay = http
                .post(format!("{}/sim/pay", sim.base))
                .json(&json!({ "outTradeNo": order }))
                .send()
                .await
                .unwrap();
            assert!(pay.status().is_success());
            paid.push(order);
        }
        let kill_after = Duration::from_millis(rng.random_range(300..2500));
        tokio::time::sleep(kill_after).await;
        let leased: (i64,) = ordersaga::on_pool!(&db, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM pay_log")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        println!(
            "round {round}: SIGKILL after {kill_after:?} with {} pay logs open",
            leased.0
        );
        server.kill();
    }

    let server = Process::start(dir.path(), &server_args);
    wait_until(
        Duration::from_secs(90),
        "every paid order completed",
        || async {
            let mut all = true;
            for order in &paid {
                let saga = db.load_saga(order.parse().unwrap()).await.unwrap().unwrap();
                all &= saga.state.phase.name() == "completed";
            }
            all
        },
    )
    .await;
    assert!(server.terminate().await.success());
    for order in &paid {
        let (recorded,): (i64,) = ordersaga::on_pool!(&db, |pool| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM saga_event WHERE order_id = $1 AND kind = 'payment_recorded'",
            )
            .bind(order)
            .fetch_one(pool)
            .await
            .unwrap()
        });
        assert_eq!(recorded, 1, "{order} completed exactly once");
    }
    let (left,): (i64,) = ordersaga::on_pool!(&db, |pool| {
        sqlx::query_as("SELECT COUNT(*) FROM pay_log")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(left, 0, "no pay log outlives its saga");
    assert_invariants(&db, &initial, 10).await;
    drop(sim);
    db.close().await;
}
