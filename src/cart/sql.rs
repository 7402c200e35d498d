use async_trait::async_trait;

use super::{Cart, CartEntry, CartError};
use crate::domain::{CART_LINE_MAX, CartDelta, Sku, SkuId, Username};
use crate::store::Db;
use crate::{on_pool, on_tx};

/// The cart in the `cart_line` table, for installations without Redis.
#[derive(Clone)]
pub struct SqlCart {
    db: Db,
}

impl SqlCart {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

enum Outcome {
    Num(i32),
    TooLarge,
    /// A concurrent add created the same new line first; try again.
    RaceLost,
}

impl SqlCart {
    /// The common case, an existing line staying within 1..=max, is one statement. The rest
    /// (new line, line emptied, line too large) is decided after reading the line in the
    /// same transaction; a concurrent insert of the same new line shows up as a conflict.
    async fn try_add(&self, user: &str, sku_id: i64, delta: i32) -> anyhow::Result<Outcome> {
        on_tx!(&self.db, |conn| {
            let updated: Option<(i64,)> = sqlx::query_as(
                "UPDATE cart_line SET num = num + $3, updated_at = CURRENT_TIMESTAMP
                 WHERE username = $1 AND sku_id = $2 AND num + $3 BETWEEN 1 AND $4
                 RETURNING CAST(num AS BIGINT)",
            )
            .bind(user)
            .bind(sku_id)
            .bind(delta)
            .bind(CART_LINE_MAX)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((num,)) = updated {
                Ok(Outcome::Num(num as i32))
            } else {
                let current: Option<(i64,)> = sqlx::query_as(
                    "SELECT CAST(num AS BIGINT) FROM cart_line WHERE username = $1 AND sku_id = $2",
                )
                .bind(user)
                .bind(sku_id)
                .fetch_optional(&mut *conn)
                .await?;
                let new_num = current.map_or(0, |(n,)| n) + i64::from(delta);
                if new_num > i64::from(CART_LINE_MAX) {
                    Ok(Outcome::TooLarge)
                } else if new_num <= 0 {
                    sqlx::query("DELETE FROM cart_line WHERE username = $1 AND sku_id = $2")
                        .bind(user)
                        .bind(sku_id)
                        .execute(&mut *conn)
                        .await?;
                    Ok(Outcome::Num(0))
                } else {
                    // Only a new line gets here (an existing one matched the UPDATE).
                    let inserted = sqlx::query(
                        "INSERT INTO cart_line (username, sku_id, num, updated_at)
                     VALUES ($1, $2, $3, CURRENT_TIMESTAMP) ON CONFLICT DO NOTHING",
                    )
                    .bind(user)
                    .bind(sku_id)
                    .bind(new_num)
                    .execute(&mut *conn)
                    .await?;
                    Ok(if inserted.rows_affected() == 1 {
                        Outcome::Num(new_num as i32)
                    } else {
                        Outcome::RaceLost
                    })
                }
            }
        })
    }
}

#[async_trait]
impl Cart for SqlCart {
    async fn add(&self, user: &Username, sku: &Sku, delta: CartDelta) -> Result<i32, CartError> {
        for _ in 0..3 {
            match self
                .try_add(user.as_str(), sku.id.get(), delta.get())
                .await?
            {
                Outcome::Num(n) => return Ok(n),
                Outcome::TooLarge => return Err(CartError::LineTooLarge),
                Outcome::RaceLost => continue,
            }
        }
        Err(CartError::Store(anyhow::anyhow!(
            "cart line ({user}, {}) kept changing under three attempts",
            sku.id
        )))
    }

    async fn entries(&self, user: &Username) -> anyhow::Result<Vec<CartEntry>> {
        let rows: Vec<(i64, i64)> = on_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT sku_id, CAST(num AS BIGINT) FROM cart_line WHERE username = $1 ORDER BY sku_id",
            )
            .bind(user.as_str())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(sku, num)| {
                Ok(CartEntry {
                    sku_id: SkuId::new(sku)?,
                    num: num as i32,
                })
            })
            .collect()
    }

    async fn remove(&self, user: &Username, skus: &[SkuId]) -> anyhow::Result<()> {
        let raw: Vec<i64> = skus.iter().map(|s| s.get()).collect();
        match &self.db {
            Db::Pg(pool) => {
                sqlx::query("DELETE FROM cart_line WHERE username = $1 AND sku_id = ANY($2)")
                    .bind(user.as_str())
                    .bind(&raw)
                    .execute(pool)
                    .await?;
            }
            Db::Sqlite(pool) => {
                sqlx::query(
                    "DELETE FROM cart_line WHERE username = $1
                     AND sku_id IN (SELECT value FROM json_each($2))",
                )
                .bind(user.as_str())
                .bind(serde_json::to_string(&raw)?)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "sql"
    }
}
