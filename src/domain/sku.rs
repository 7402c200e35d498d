use serde::Serialize;

use super::{Money, SkuId};

/// `tb_sku.status` as the changgou course uses it: `1` on sale, `2` taken off the shelf,
/// `3` deleted. Only SKUs on sale can go into a cart or an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SkuStatus {
    OnSale,
    OffShelf,
    Deleted,
}

impl SkuStatus {
    pub fn from_column(raw: &str) -> SkuStatus {
        match raw {
            "1" => SkuStatus::OnSale,
            "3" => SkuStatus::Deleted,
            _ => SkuStatus::OffShelf,
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            SkuStatus::OnSale => "1",
            SkuStatus::OffShelf => "2",
            SkuStatus::Deleted => "3",
        }
    }
}

/// A row of `tb_sku`, the columns the shop reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    pub id: SkuId,
    pub sn: String,
    pub name: String,
    #[serde(rename = "price")]
    pub price_fen: Money,
    /// Units in stock and not reserved by any order.
    pub num: i32,
    pub image: String,
    pub spu_id: i64,
    pub category_name: String,
    pub brand_name: String,
    pub spec: String,
    pub sale_num: i32,
    pub status: SkuStatus,
}

impl Sku {
    pub fn is_on_sale(&self) -> bool {
        self.status == SkuStatus::OnSale
    }
}
