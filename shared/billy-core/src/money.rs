//! Money: integer minor units tied to an ISO 4217 currency; `rust_decimal` for rates, rounded once
//! per line item, half away from zero; splits by largest remainder so parts always sum to the whole.

use crate::error::{DomainError, DomainResult};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest amount accepted for one price, item or invoice, in minor units. Far below `i64::MAX`
/// so that sums of many items cannot overflow before validation catches them.
pub const MAX_AMOUNT: i64 = 999_999_999_999;

/// ISO 4217 code and minor-unit exponent of every supported currency.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("MAD", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PEN", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("VND", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("ZAR", 2),
];

/// A supported ISO 4217 currency. Serialised as its lower-case code, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

impl Currency {
    /// Parses a code in any case; unknown codes are a 400 naming `param`.
    pub fn parse(raw: &str, param: &str) -> DomainResult<Self> {
        let upper = raw.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(code, _)| *code == upper)
            .map(|(code, exponent)| {
                let b = code.as_bytes();
                Self { code: [b[0], b[1], b[2]], exponent: *exponent }
            })
            .ok_or_else(|| {
                DomainError::invalid(
                    "currency_invalid",
                    format!("'{}' is not a supported ISO 4217 currency", raw.chars().take(16).collect::<String>()),
                    Some(param),
                )
            })
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Digits after the decimal point of the major unit (USD 2, JPY 0, BHD 3).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    pub fn all() -> impl Iterator<Item = Self> {
        CURRENCIES.iter().filter_map(|(c, _)| Self::parse(c, "currency").ok())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code().to_ascii_lowercase())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw, "currency").map_err(serde::de::Error::custom)
    }
}

/// An amount in a currency's minor unit (1999 USD = 19.99 USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: Currency,
}

fn overflow() -> DomainError {
    DomainError::invalid("amount_too_large", format!("amounts are limited to {MAX_AMOUNT} minor units"), None)
}

/// Validates an amount given by a client: an integer from 0 to `MAX_AMOUNT`.
pub fn validate_amount(amount: i64, param: &str) -> DomainResult<i64> {
    if amount < 0 {
        return Err(DomainError::invalid("amount_invalid", format!("{param} must not be negative"), Some(param)));
    }
    if amount > MAX_AMOUNT {
        return Err(DomainError::invalid(
            "amount_too_large",
            format!("{param} must be at most {MAX_AMOUNT} minor units"),
            Some(param),
        ));
    }
    Ok(amount)
}

/// Checked sum that reports overflow (or passing `MAX_AMOUNT` in size) as an error, never a wrap.
pub fn checked_sum(values: impl IntoIterator<Item = i64>) -> DomainResult<i64> {
    values
        .into_iter()
        .try_fold(0i64, |acc, v| acc.checked_add(v).filter(|s| s.abs() <= MAX_AMOUNT).ok_or_else(overflow))
}

/// `quantity × unit_amount` with overflow as an error.
pub fn checked_product(quantity: i64, unit_amount: i64) -> DomainResult<i64> {
    quantity.checked_mul(unit_amount).filter(|p| p.abs() <= MAX_AMOUNT).ok_or_else(overflow)
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self { amount: 0, currency }
    }

    fn same_currency(&self, other: &Self) -> DomainResult<()> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(DomainError::invalid(
                "currency_mismatch",
                format!("cannot combine {} with {}", self.currency, other.currency),
                Some("currency"),
            ))
        }
    }

    pub fn checked_add(self, other: Self) -> DomainResult<Self> {
        self.same_currency(&other)?;
        Ok(Self::new(checked_sum([self.amount, other.amount])?, self.currency))
    }

    pub fn checked_sub(self, other: Self) -> DomainResult<Self> {
        self.same_currency(&other)?;
        let negated = other.amount.checked_neg().ok_or_else(overflow)?;
        Ok(Self::new(checked_sum([self.amount, negated])?, self.currency))
    }

    /// Formats in major units, e.g. `19.99 USD`, `1000 JPY`, `1.500 BHD`.
    pub fn display(&self) -> String {
        let value = Decimal::new(self.amount, u32::from(self.currency.exponent()));
        format!("{value} {}", self.currency.code())
    }
}

/// Rounds a minor-unit decimal to an integer, half away from zero: the one rounding of a line item.
pub fn round_minor(value: Decimal) -> DomainResult<i64> {
    let rounded = value.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    i64::try_from(rounded).ok().filter(|v| v.abs() <= MAX_AMOUNT).ok_or_else(overflow)
}

/// Splits `total` into parts proportional to `weights` that sum exactly to `total`: each part is
/// rounded down, then the units left over go one each to the parts with the largest remainders
/// (earlier parts first on ties). Negative totals split symmetrically.
pub fn allocate(total: i64, weights: &[Decimal]) -> DomainResult<Vec<i64>> {
    if weights.is_empty() {
        return Err(DomainError::invalid("allocation_invalid", "at least one part is needed", None));
    }
    if weights.iter().any(|w| w.is_sign_negative()) {
        return Err(DomainError::invalid("allocation_invalid", "weights must not be negative", None));
    }
    let sum: Decimal = weights.iter().try_fold(Decimal::ZERO, |a, w| a.checked_add(*w)).ok_or_else(overflow)?;
    if sum.is_zero() {
        return Err(DomainError::invalid("allocation_invalid", "weights must not all be zero", None));
    }
    let sign = if total < 0 { -1 } else { 1 };
    let magnitude = Decimal::from(total.checked_abs().ok_or_else(overflow)?);
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (i, w) in weights.iter().enumerate() {
        let exact = magnitude.checked_mul(*w).and_then(|p| p.checked_div(sum)).ok_or_else(overflow)?;
        let floor = exact.floor();
        parts.push(i64::try_from(floor).map_err(|_| overflow())?);
        remainders.push((exact - floor, i));
    }
    let assigned: i64 = parts.iter().sum();
    let left = total.abs() - assigned;
    remainders.sort_by(|(ra, ia), (rb, ib)| rb.cmp(ra).then(ia.cmp(ib)));
    for (_, i) in remainders.into_iter().take(usize::try_from(left).unwrap_or(0)) {
        parts[i] += 1;
    }
    Ok(parts.into_iter().map(|p| p * sign).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn usd() -> Currency {
        Currency::parse("usd", "currency").unwrap()
    }

    #[test]
    fn currencies_know_their_minor_unit_exponent() {
        // GIVEN codes in any case WHEN parsed THEN the ISO 4217 exponent comes with them
        assert!(Currency::all().count() >= 30);
        for (code, exp) in [("usd", 2), ("EUR", 2), ("jpy", 0), ("KRW", 0), ("bhd", 3), ("KWD", 3), ("brl", 2)] {
            assert_eq!(Currency::parse(code, "currency").unwrap().exponent(), exp, "{code}");
        }
        let err = Currency::parse("xyz", "currency").unwrap_err();
        assert!(matches!(err, DomainError::Invalid { code: "currency_invalid", .. }));
    }

    #[test]
    fn money_displays_in_major_units() {
        let jpy = Currency::parse("JPY", "c").unwrap();
        let bhd = Currency::parse("BHD", "c").unwrap();
        assert_eq!(Money::new(1999, usd()).display(), "19.99 USD");
        assert_eq!(Money::new(1000, jpy).display(), "1000 JPY");
        assert_eq!(Money::new(1500, bhd).display(), "1.500 BHD");
    }

    #[test]
    fn arithmetic_is_checked_and_currency_safe() {
        let eur = Currency::parse("EUR", "c").unwrap();
        assert_eq!(Money::new(1000, usd()).checked_add(Money::new(99, usd())).unwrap().amount, 1099);
        assert_eq!(Money::new(1000, usd()).checked_sub(Money::new(1500, usd())).unwrap().amount, -500);
        assert!(Money::new(1, usd()).checked_add(Money::new(1, eur)).is_err());
        assert!(Money::new(MAX_AMOUNT, usd()).checked_add(Money::new(1, usd())).is_err());
        assert!(checked_product(i64::MAX, 2).is_err());
        assert!(checked_sum([i64::MAX, 1]).is_err());
        assert_eq!(checked_product(3, 1999).unwrap(), 5997);
    }

    #[test]
    fn amounts_from_clients_are_bounded() {
        assert_eq!(validate_amount(0, "amount").unwrap(), 0);
        assert_eq!(validate_amount(MAX_AMOUNT, "amount").unwrap(), MAX_AMOUNT, "the bound itself is accepted");
        assert!(matches!(validate_amount(-1, "amount"), Err(DomainError::Invalid { code: "amount_invalid", .. })));
        assert!(matches!(
            validate_amount(MAX_AMOUNT + 1, "amount"),
            Err(DomainError::Invalid { code: "amount_too_large", .. })
        ));
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        // 2.5 → 3, -2.5 → -3, 2.4999 → 2, 0.5 → 1
        assert_eq!(round_minor(dec!(2.5)).unwrap(), 3);
        assert_eq!(round_minor(dec!(-2.5)).unwrap(), -3);
        assert_eq!(round_minor(dec!(2.4999)).unwrap(), 2);
        assert_eq!(round_minor(dec!(0.5)).unwrap(), 1);
    }

    #[test]
    fn allocation_gives_leftover_cents_to_the_largest_remainders() {
        // 100 in three equal parts: 33.33 each, one cent left → to the first part
        assert_eq!(allocate(100, &[dec!(1), dec!(1), dec!(1)]).unwrap(), vec![34, 33, 33]);
        // 1000 split 1:2:3 → 166.67, 333.33, 500 → floors 166, 333, 500; one left → part 0 (.67)
        assert_eq!(allocate(1000, &[dec!(1), dec!(2), dec!(3)]).unwrap(), vec![167, 333, 500]);
        // 17 split 13:106:51 is exactly 1.3, 10.6 and 5.1: the cent left goes to the largest
        // remainder (.6, the big part), not to the part it would grow the most (1.3 → 2)
        assert_eq!(allocate(17, &[dec!(13), dec!(106), dec!(51)]).unwrap(), vec![1, 11, 5]);
        // negative totals mirror positive ones
        assert_eq!(allocate(-100, &[dec!(1), dec!(1), dec!(1)]).unwrap(), vec![-34, -33, -33]);
        assert!(allocate(100, &[]).is_err());
        assert!(allocate(100, &[dec!(0)]).is_err());
    }

    proptest! {
        #[test]
        fn allocation_parts_always_sum_to_the_whole(
            total in -MAX_AMOUNT..=MAX_AMOUNT,
            weights in proptest::collection::vec(0u32..10_000, 1..12),
        ) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let weights: Vec<Decimal> = weights.into_iter().map(Decimal::from).collect();
            let parts = allocate(total, &weights).unwrap();
            prop_assert_eq!(parts.iter().sum::<i64>(), total);
            // and no part is more than one unit away from its exact share
            let sum: Decimal = weights.iter().sum();
            for (p, w) in parts.iter().zip(&weights) {
                let exact = Decimal::from(total) * w / sum;
                prop_assert!((Decimal::from(*p) - exact).abs() < Decimal::ONE);
            }
        }
    }
}
