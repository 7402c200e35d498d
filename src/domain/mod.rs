//! Plain data of the shop: money, ids, users, SKUs, cart lines, addresses.
//! No I/O and no async here; values are parsed once at the boundary and trusted inside.

mod address;
mod cart;
mod ids;
mod money;
mod sku;
mod user;

pub use address::Address;
pub use cart::{CART_LINE_MAX, CartDelta, CartLine};
pub use ids::{IdGenerator, OrderId, SkuId};
pub use money::Money;
pub use sku::{Sku, SkuStatus};
pub use user::{Role, Username};

/// Why a raw value was refused at the boundary; `field` names the input that was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}
