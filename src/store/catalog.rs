//! `tb_sku`: what the shop sells.

use chrono::{DateTime, Utc};

use super::Db;
use crate::domain::{Money, Sku, SkuId, SkuStatus};
use crate::on_pool;

#[derive(sqlx::FromRow)]
struct SkuRow {
    id: i64,
    sn: String,
    name: String,
    price: i64,
    num: i64,
    image: String,
    spu_id: i64,
    category_name: String,
    brand_name: String,
    spec: String,
    sale_num: i64,
    status: String,
}

impl From<SkuRow> for Sku {
    fn from(r: SkuRow) -> Sku {
        Sku {
            id: SkuId::new(r.id).expect("tb_sku ids are positive"),
            sn: r.sn,
            name: r.name,
            price_fen: Money::from_fen(r.price),
            num: r.num as i32,
            image: r.image,
            spu_id: r.spu_id,
            category_name: r.category_name,
            brand_name: r.brand_name,
            spec: r.spec,
            sale_num: r.sale_num as i32,
            status: SkuStatus::from_column(r.status.trim()),
        }
    }
}

/// `SELECT <the columns of SkuRow> FROM tb_sku <tail>`. Integer columns are cast to BIGINT
/// so both backends decode them as i64.
macro_rules! select_skus {
    ($tail:literal) => {
        concat!(
            "SELECT id, sn, name, CAST(price AS BIGINT) AS price, CAST(num AS BIGINT) AS num, ",
            "image, spu_id, category_name, brand_name, spec, ",
            "CAST(sale_num AS BIGINT) AS sale_num, status FROM tb_sku ",
            $tail
        )
    };
}

/// A SKU to insert (demo data and tests).
#[derive(Debug, Clone)]
pub struct NewSku {
    pub id: SkuId,
    pub name: String,
    pub price: Money,
    pub num: i32,
    pub brand_name: String,
    pub category_name: String,
    pub spec: String,
    pub image: String,
    pub status: SkuStatus,
}

impl Db {
    pub async fn sku(&self, id: SkuId) -> anyhow::Result<Option<Sku>> {
        let row: Option<SkuRow> = on_pool!(self, |pool| {
            sqlx::query_as(select_skus!("WHERE id = $1"))
                .bind(id.get())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Sku::from))
    }

    /// The SKUs with these ids that exist, in id order.
    pub async fn skus(&self, ids: &[SkuId]) -> anyhow::Result<Vec<Sku>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let rows: Vec<SkuRow> = match self {
            Db::Pg(pool) => {
                sqlx::query_as(select_skus!("WHERE id = ANY($1) ORDER BY id"))
                    .bind(&raw)
                    .fetch_all(pool)
                    .await?
            }
            // No arrays in SQLite: the ids travel as one JSON array.
            Db::Sqlite(pool) => {
                sqlx::query_as(select_skus!(
                    "WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id"
                ))
                .bind(serde_json::to_string(&raw)?)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows.into_iter().map(Sku::from).collect())
    }

    /// SKUs on sale, by id, for the shop's pages.
    pub async fn skus_on_sale(&self, limit: i64) -> anyhow::Result<Vec<Sku>> {
        let rows: Vec<SkuRow> = on_pool!(self, |pool| {
            sqlx::query_as(select_skus!("WHERE status = '1' ORDER BY id LIMIT $1"))
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(Sku::from).collect())
    }

    /// Inserts a SKU; an existing id is left as it is (so demo seeding can be repeated).
    pub async fn insert_sku(&self, sku: &NewSku, now: DateTime<Utc>) -> anyhow::Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO tb_sku (id, sn, name, price, num, alert_num, image, weight, spu_id,
                                     category_id, category_name, brand_name, spec, sale_num,
                                     status, create_time, update_time)
                 VALUES ($1, $2, $3, $4, $5, 10, $6, 500, $1, NULL, $7, $8, $9, 0, $10, $11, $11)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(sku.id.get())
            .bind(format!("SN{}", sku.id.get()))
            .bind(&sku.name)
            .bind(sku.price.fen())
            .bind(sku.num)
            .bind(&sku.image)
            .bind(&sku.category_name)
            .bind(&sku.brand_name)
            .bind(&sku.spec)
            .bind(sku.status.column())
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
