use serde::Serialize;

use super::{InvalidInput, Money, SkuId};

/// The most units of one SKU a cart line may hold; anything above is refused as absurd.
pub const CART_LINE_MAX: i32 = 999;

/// How many units to add to (positive) or take from (negative) a cart line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartDelta(i32);

impl CartDelta {
    pub fn new(raw: i64) -> Result<Self, InvalidInput> {
        if raw == 0 {
            return Err(InvalidInput::new("num", "must not be 0"));
        }
        if raw.abs() > i64::from(CART_LINE_MAX) {
            return Err(InvalidInput::new(
                "num",
                format!("must be between -{CART_LINE_MAX} and {CART_LINE_MAX}"),
            ));
        }
        Ok(CartDelta(raw as i32))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// A cart line as the shopper sees it: name, image and price always come from `tb_sku`
/// at the time of reading, never from what was stored when the line was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CartLine {
    pub sku_id: SkuId,
    pub name: String,
    pub image: String,
    pub price: Money,
    pub num: i32,
    pub money: Money,
    /// False when the SKU was taken off sale after it was put in the cart.
    pub on_sale: bool,
    /// Units in stock now; a checkout of more than this would be refused.
    pub stock: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_absurd_deltas_are_refused() {
        assert!(CartDelta::new(0).is_err());
        assert!(CartDelta::new(1000).is_err());
        assert!(CartDelta::new(-1000).is_err());
        assert!(CartDelta::new(i64::MAX).is_err());
        assert_eq!(CartDelta::new(-999).unwrap().get(), -999);
    }
}
