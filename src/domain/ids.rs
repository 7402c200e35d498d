use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::InvalidInput;

/// A SKU's primary key in `tb_sku`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SkuId(i64);

impl SkuId {
    pub fn new(raw: i64) -> Result<Self, InvalidInput> {
        if raw <= 0 {
            return Err(InvalidInput::new("id", "a SKU id is a positive integer"));
        }
        Ok(SkuId(raw))
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl FromStr for SkuId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw = s
            .trim()
            .parse::<i64>()
            .map_err(|_| InvalidInput::new("id", format!("`{s}` is not a SKU id")))?;
        SkuId::new(raw)
    }
}

impl std::fmt::Display for SkuId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An order id: a snowflake-style 64-bit integer, carried as a decimal string in
/// `tb_order.id` (a varchar in the seed) and as WeChat's `out_trade_no`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(i64);

impl OrderId {
    pub fn new(raw: i64) -> Result<Self, InvalidInput> {
        if raw <= 0 {
            return Err(InvalidInput::new(
                "orderId",
                "an order id is a positive integer",
            ));
        }
        Ok(OrderId(raw))
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl FromStr for OrderId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw = s
            .trim()
            .parse::<i64>()
            .map_err(|_| InvalidInput::new("orderId", format!("`{s}` is not an order id")))?;
        OrderId::new(raw)
    }
}

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for OrderId {
    /// As a string: JavaScript numbers lose precision above 2^53.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Snowflake ids: 41 bits of milliseconds since 2024-01-01, 10 bits of worker, 12 bits of
/// sequence. Unique per worker as long as the clock does not go backwards by more than the
/// last id's timestamp (the generator then keeps counting from the last timestamp).
pub struct IdGenerator {
    worker: i64,
    /// (last millisecond used, sequence within it). A std mutex: held for a few instructions,
    /// never across an await.
    last: Mutex<(i64, i64)>,
}

const EPOCH_MS: i64 = 1_704_067_200_000;

impl IdGenerator {
    pub fn new(worker: u16) -> Self {
        Self {
            worker: i64::from(worker & 0x3ff),
            last: Mutex::new((0, 0)),
        }
    }

    /// The next id for a wall-clock time of `now_ms` (milliseconds since the Unix epoch).
    pub fn next_id(&self, now_ms: i64) -> i64 {
        let mut last = self.last.lock().expect("id generator mutex poisoned");
        let mut ms = (now_ms - EPOCH_MS).max(last.0);
        let seq = if ms == last.0 { last.1 + 1 } else { 0 };
        let seq = if seq > 0xfff {
            ms += 1;
            0
        } else {
            seq
        };
        *last = (ms, seq);
        (ms << 22) | (self.worker << 12) | seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strictly_increasing_even_within_one_millisecond() {
        let ids = IdGenerator::new(3);
        let mut prev = 0;
        for _ in 0..10_000 {
            let id = ids.next_id(1_800_000_000_000);
            assert!(id > prev);
            prev = id;
        }
    }

    #[test]
    fn order_ids_serialize_as_strings() {
        let id = OrderId::new(1234567890123456789).unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"1234567890123456789\""
        );
        assert!("0".parse::<OrderId>().is_err());
        assert!("abc".parse::<OrderId>().is_err());
    }
}
