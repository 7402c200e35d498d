//! The `Cart` contract, run against RedisCart and against SqlCart on both databases.

use std::sync::Arc;

use ordersaga::cart::{Cart, CartEntry, CartError, SqlCart};
use ordersaga::domain::{CartDelta, Sku, SkuStatus, Username};

use crate::support::{Backend, TestApp};

async fn cart_contract(cart: Arc<dyn Cart>, app: &TestApp, tag: &str) {
    let (user, _) = app.shopper(&format!("cart-{tag}")).await;
    let (other, _) = app.shopper(&format!("other-{tag}")).await;
    let sku_a = app.add_sku(501, 1000, 50, SkuStatus::OnSale).await;
    let sku_b = app.add_sku(502, 250, 50, SkuStatus::OnSale).await;
    let a: Sku = app.db().sku(sku_a).await.unwrap().unwrap();
    let b: Sku = app.db().sku(sku_b).await.unwrap().unwrap();
    let d = |n: i64| CartDelta::new(n).unwrap();

    assert!(
        cart.entries(&user).await.unwrap().is_empty(),
        "{tag}: a new cart is empty"
    );
    assert_eq!(cart.add(&user, &b, d(2)).await.unwrap(), 2);
    assert_eq!(cart.add(&user, &a, d(1)).await.unwrap(), 1);
    assert_eq!(
        cart.add(&user, &b, d(3)).await.unwrap(),
        5,
        "{tag}: adding again sums"
    );
    assert_eq!(
        cart.add(&user, &b, d(-1)).await.unwrap(),
        4,
        "{tag}: negative takes away"
    );
    assert_eq!(
        cart.entries(&user).await.unwrap(),
        vec![
            CartEntry {
                sku_id: sku_a,
                num: 1
            },
            CartEntry {
                sku_id: sku_b,
                num: 4
            }
        ],
        "{tag}: lines in SKU id order"
    );
    assert!(
        cart.entries(&other).await.unwrap().is_empty(),
        "{tag}: carts are per user"
    );

    // Past the cap: refused, and the line keeps what it had.
    assert!(matches!(
        cart.add(&user, &b, d(999)).await,
        Err(CartError::LineTooLarge)
    ));
    assert_eq!(
        cart.entries(&user).await.unwrap()[1].num,
        4,
        "{tag}: refused add changed nothing"
    );

    // Down to zero or below: the line disappears.
    assert_eq!(cart.add(&user, &b, d(-10)).await.unwrap(), 0);
    assert_eq!(
        cart.entries(&user).await.unwrap(),
        vec![CartEntry {
            sku_id: sku_a,
            num: 1
        }]
    );
    // Taking from a line that is not there leaves no line behind.
    assert_eq!(cart.add(&user, &b, d(-1)).await.unwrap(), 0);
    assert_eq!(cart.entries(&user).await.unwrap().len(), 1);

    // Remove is idempotent and ignores absent lines.
    cart.remove(&user, &[sku_a, sku_b]).await.unwrap();
    cart.remove(&user, &[sku_a]).await.unwrap();
    cart.remove(&user, &[]).await.unwrap();
    assert!(cart.entries(&user).await.unwrap().is_empty());

    // Concurrent adds to the same new line are all counted: adds are atomic per line.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cart, user, a) = (cart.clone(), user.clone(), a.clone());
            tokio::spawn(async move { cart.add(&user, &a, CartDelta::new(1).unwrap()).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        cart.entries(&user).await.unwrap(),
        vec![CartEntry {
            sku_id: sku_a,
            num: 20
        }],
        "{tag}: no lost update"
    );
}

on_both_backends! {
    async fn every_cart_adapter_keeps_the_contract(app) {
        let sql: Arc<dyn Cart> = Arc::new(SqlCart::new(app.db().clone()));
        cart_contract(sql, &app, app.db().backend_name()).await;
        if app.state.cart.backend_name() == "redis" {
            cart_contract(app.state.cart.clone(), &app, "redis").await;
        }
        app.stop().await;
    }
}

/// Redis only: the key and value layout an existing changgou shop reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cart_uses_the_seeds_hash_layout() {
    let app = TestApp::spawn(Backend::PostgresRedis).await;
    assert_eq!(app.state.cart.backend_name(), "redis");
    let (user, _): (Username, _) = app.shopper("layout").await;
    let sku = app.add_sku(777, 4321, 9, SkuStatus::OnSale).await;
    let s = app.db().sku(sku).await.unwrap().unwrap();
    app.state
        .cart
        .add(&user, &s, CartDelta::new(3).unwrap())
        .await
        .unwrap();
    let mut conn = app.state.redis.clone().unwrap();
    let raw: Option<String> = redis::cmd("HGET")
        .arg(format!("{}Cart_layout", app.redis_prefix()))
        .arg("777")
        .query_async(&mut conn)
        .await
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(&raw.expect("field = sku id")).unwrap();
    assert_eq!(line["skuId"], 777);
    assert_eq!(line["num"], 3);
    assert_eq!(line["price"], 4321);
    assert_eq!(line["money"], 3 * 4321);
    app.stop().await;
}
