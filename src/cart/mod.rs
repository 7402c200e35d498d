//! The shopper's cart: the `Cart` port and its two adapters, Redis (the seed's hash
//! `Cart_{username}`, one field per SKU id holding a JSON line) and SQL (the `cart_line`
//! table, used when no Redis is configured).
//!
//! A cart stores only which SKUs and how many. Names, images and prices shown to the
//! shopper, and used by checkout, are read from `tb_sku` at that moment.

mod redis;
mod sql;

use async_trait::async_trait;

pub use self::redis::RedisCart;
pub use self::sql::SqlCart;
use crate::domain::{CART_LINE_MAX, CartDelta, Sku, SkuId, Username};

/// One line as stored: which SKU, how many units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartEntry {
    pub sku_id: SkuId,
    pub num: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error("a cart line holds at most {CART_LINE_MAX} units")]
    LineTooLarge,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

#[async_trait]
pub trait Cart: Send + Sync + 'static {
    /// Adds `delta` units of `sku` (negative takes units away) and returns the line's new
    /// number of units; 0 means the line is gone. A line that would exceed
    /// [`CART_LINE_MAX`] is refused and left unchanged. Atomic per line.
    async fn add(&self, user: &Username, sku: &Sku, delta: CartDelta) -> Result<i32, CartError>;

    /// The user's lines, in SKU id order.
    async fn entries(&self, user: &Username) -> anyhow::Result<Vec<CartEntry>>;

    /// Removes these SKUs' lines; lines that are not there are ignored, so it can be repeated.
    async fn remove(&self, user: &Username, skus: &[SkuId]) -> anyhow::Result<()>;

    /// The adapter's name for logs and `/readyz`: "redis" or "sql".
    fn backend_name(&self) -> &'static str;
}
