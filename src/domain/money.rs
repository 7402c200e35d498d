use serde::{Deserialize, Serialize};

/// An amount of money in fen (1/100 yuan), the unit of the seed's columns and of WeChat Pay's
/// `total_fee`. Integer only: no rounding anywhere.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_fen(fen: i64) -> Self {
        Money(fen)
    }

    pub const fn fen(self) -> i64 {
        self.0
    }

    /// `self × n`, or `None` on overflow (a line of an absurd size).
    pub fn times(self, n: i64) -> Option<Money> {
        self.0.checked_mul(n).map(Money)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }
}

impl std::fmt::Display for Money {
    /// Yuan with two decimals, as a shopper reads it: `¥12.30`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}¥{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_displays_as_yuan_with_two_decimals() {
        assert_eq!(Money::from_fen(1230).to_string(), "¥12.30");
        assert_eq!(Money::from_fen(5).to_string(), "¥0.05");
        assert_eq!(Money::from_fen(-101).to_string(), "-¥1.01");
    }

    #[test]
    fn multiplication_overflow_is_detected() {
        assert_eq!(Money::from_fen(i64::MAX).times(2), None);
        assert_eq!(Money::from_fen(250).times(4), Some(Money::from_fen(1000)));
    }
}
