use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{Cart, CartEntry, CartError};
use crate::domain::{CART_LINE_MAX, CartDelta, Sku, SkuId, Username};

/// The cart in Redis, as the seed keeps it: hash `{prefix}Cart_{username}`, field = SKU id,
/// value = a JSON line (`skuId`, `name`, `price`, `num`, `money`, `image`, as the seed's
/// OrderItem). `prefix` is empty in production; tests give each run its own.
#[derive(Clone)]
pub struct RedisCart {
    conn: ConnectionManager,
    prefix: String,
}

/// Adds to one line atomically: Redis runs a script without interleaving other commands.
/// The JSON is built by concatenation around the number instead of cjson, whose number
/// formatting would turn large ids into exponents.
/// KEYS[1] cart key; ARGV: sku field, delta, JSON prefix up to `"num":`, unit price, max.
const ADD_SCRIPT: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local num = 0
if cur then num = tonumber(cjson.decode(cur).num) or 0 end
num = num + tonumber(ARGV[2])
if num > tonumber(ARGV[5]) then return -1 end
if num <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
local money = num * tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. string.format('%d', num) .. ',"money":' .. string.format('%d', money) .. '}')
return num
"#;

#[derive(serde::Deserialize)]
struct StoredLine {
    num: i64,
}

impl RedisCart {
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }

    fn key(&self, user: &Username) -> String {
        format!("{}Cart_{}", self.prefix, user.as_str())
    }
}

#[async_trait]
impl Cart for RedisCart {
    async fn add(&self, user: &Username, sku: &Sku, delta: CartDelta) -> Result<i32, CartError> {
        let head = serde_json::json!({
            "skuId": sku.id.get(),
            "spuId": sku.spu_id,
            "name": sku.name,
            "image": sku.image,
            "price": sku.price_fen.fen(),
        })
        .to_string();
        // `{"skuId":..,"price":..}` → `{"skuId":..,"price":..,"num":` for the script.
        let prefix = format!("{},\"num\":", head.trim_end_matches('}'));
        let mut conn = self.conn.clone();
        let num: i64 = redis::Script::new(ADD_SCRIPT)
            .key(self.key(user))
            .arg(sku.id.get())
            .arg(delta.get())
            .arg(prefix)
            .arg(sku.price_fen.fen())
            .arg(CART_LINE_MAX)
            .invoke_async(&mut conn)
            .await
            .map_err(anyhow::Error::from)?;
        if num < 0 {
            return Err(CartError::LineTooLarge);
        }
        Ok(num as i32)
    }

    async fn entries(&self, user: &Username) -> anyhow::Result<Vec<CartEntry>> {
        let mut conn = self.conn.clone();
        let raw: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.key(user))
            .query_async(&mut conn)
            .await?;
        let mut entries = Vec::with_capacity(raw.len());
        for (field, json) in raw {
            let (Ok(sku_id), Ok(line)) = (
                field.parse::<SkuId>(),
                serde_json::from_str::<StoredLine>(&json),
            ) else {
                tracing::warn!(key = %self.key(user), field, "ignoring an unreadable cart line");
                continue;
            };
            if line.num > 0 {
                entries.push(CartEntry {
                    sku_id,
                    num: line.num.min(i64::from(CART_LINE_MAX)) as i32,
                });
            }
        }
        entries.sort_by_key(|e| e.sku_id);
        Ok(entries)
    }

    async fn remove(&self, user: &Username, skus: &[SkuId]) -> anyhow::Result<()> {
        if skus.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let fields: Vec<i64> = skus.iter().map(|s| s.get()).collect();
        let _: i64 = redis::cmd("HDEL")
            .arg(self.key(user))
            .arg(fields)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}
