//! Coupons: a percentage or an amount off, for one invoice, for N invoices of a subscription, or
//! for ever. A discount is an adjustment with its reason, applied before customer credit.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::invoice::{Adjustment, AdjustmentKind, Invoice};
use crate::money::{Currency, round_minor, validate_amount};
use crate::plan::Direction;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How many invoices a coupon discounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "duration", rename_all = "snake_case")]
pub enum CouponDuration {
    Once,
    /// This many invoices of the subscription.
    Repeating {
        duration_in_periods: u32,
    },
    Forever,
}

/// What a coupon takes off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Off {
    Percent(Decimal),
    /// An amount in one currency: it applies only to invoices in that currency.
    Amount {
        amount: i64,
        currency: Currency,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    pub id: Id,
    pub name: String,
    pub off: Off,
    #[serde(flatten)]
    pub duration: CouponDuration,
    pub created: DateTime<Utc>,
    pub livemode: bool,
}

fn invalid(code: &'static str, message: impl Into<String>, param: &str) -> DomainError {
    DomainError::invalid(code, message, Some(param))
}

impl Coupon {
    pub fn new(
        id: Id,
        name: &str,
        off: Off,
        duration: CouponDuration,
        created: DateTime<Utc>,
        livemode: bool,
    ) -> DomainResult<Self> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(invalid("parameter_invalid", "name must be 1 to 100 characters", "name"));
        }
        match &off {
            Off::Percent(p) if p.is_sign_negative() || p.is_zero() || *p > Decimal::from(100) || p.scale() > 4 => {
                return Err(invalid("coupon_invalid", "percent_off is more than 0 and at most 100", "percent_off"));
            }
            Off::Amount { amount, .. } if *amount <= 0 => {
                return Err(invalid("coupon_invalid", "amount_off is more than zero", "amount_off"));
            }
            Off::Amount { amount, .. } => validate_amount(*amount, "amount_off").map(drop)?,
            Off::Percent(_) => {}
        }
        if let CouponDuration::Repeating { duration_in_periods } = duration
            && !(1..=120).contains(&duration_in_periods)
        {
            return Err(invalid("coupon_invalid", "duration_in_periods is 1 to 120", "duration_in_periods"));
        }
        Ok(Self { id, name: name.to_owned(), off, duration, created, livemode })
    }

    /// Refuses a coupon whose amount off is in another currency than the invoices it would discount.
    pub fn check_currency(&self, currency: Currency) -> DomainResult<()> {
        match &self.off {
            Off::Amount { currency: own, .. } if *own != currency => Err(invalid(
                "coupon_currency_mismatch",
                format!("coupon {} takes an amount off in {own}, not {currency}", self.id),
                "coupon",
            )),
            _ => Ok(()),
        }
    }

    /// Discounts a draft debit invoice: a percentage of its items (rounded once), or the amount off
    /// (at most what the items come to). Applied before any customer credit.
    pub fn discount(&self, inv: &mut Invoice) -> DomainResult<Option<i64>> {
        if inv.direction != Direction::Debit {
            return Ok(None);
        }
        self.check_currency(inv.currency)?;
        let subtotal: i64 = inv.items.iter().map(|i| i.amount).sum();
        let off = match &self.off {
            Off::Percent(p) => round_minor(Decimal::from(subtotal) * p / Decimal::from(100))?,
            Off::Amount { amount, .. } => *amount,
        }
        .min(inv.total)
        .max(0);
        if off == 0 {
            return Ok(None);
        }
        let what = match &self.off {
            Off::Percent(p) => format!("{}% off", p.normalize()),
            Off::Amount { amount, currency } => format!("{amount} {currency} off"),
        };
        inv.add_adjustment(Adjustment {
            kind: AdjustmentKind::Discount,
            amount: -off,
            reason: format!("coupon {} ({what})", self.name),
        })?;
        Ok(Some(off))
    }
}

/// A coupon on a subscription, and how many of its invoices it has discounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discount {
    pub coupon: Coupon,
    pub invoices_used: u32,
}

impl Discount {
    pub fn new(coupon: Coupon) -> Self {
        Self { coupon, invoices_used: 0 }
    }

    /// Whether the next invoice is discounted.
    pub fn applies(&self) -> bool {
        match self.coupon.duration {
            CouponDuration::Once => self.invoices_used < 1,
            CouponDuration::Repeating { duration_in_periods } => self.invoices_used < duration_in_periods,
            CouponDuration::Forever => true,
        }
    }

    /// The coupon for the next invoice, counting it as used; `None` once it has run out.
    pub fn take(&mut self) -> Option<Coupon> {
        if !self.applies() {
            return None;
        }
        self.invoices_used = self.invoices_used.saturating_add(1);
        Some(self.coupon.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoice::InvoiceItem;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn usd() -> Currency {
        Currency::parse("usd", "c").unwrap()
    }

    fn coupon(off: Off, duration: CouponDuration) -> Coupon {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        Coupon::new(Id::from_trusted("coupon_1".into()), "Launch", off, duration, at, false).unwrap()
    }

    fn draft(amount: i64, currency: Currency) -> Invoice {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        crate::invoice::test_draft(Direction::Debit, currency, at)
            .with_items(vec![InvoiceItem::new("Seat", 3, amount).unwrap()])
            .unwrap()
    }

    #[test]
    fn percent_off_is_rounded_once_and_amount_off_never_passes_the_total() {
        // 3 × 3.33 = 9.99; 15% = 1.4985 → 1.50
        let mut inv = draft(333, usd());
        assert_eq!(coupon(Off::Percent(dec!(15)), CouponDuration::Once).discount(&mut inv).unwrap(), Some(150));
        assert_eq!(inv.total, 849);
        // 20.00 off a 9.99 invoice takes 9.99, never below zero
        let mut inv = draft(333, usd());
        let big = coupon(Off::Amount { amount: 2000, currency: usd() }, CouponDuration::Forever);
        assert_eq!(big.discount(&mut inv).unwrap(), Some(999));
        assert_eq!(inv.total, 0);
    }

    #[test]
    fn an_amount_off_applies_only_in_its_own_currency() {
        let mut eur = draft(1000, Currency::parse("eur", "c").unwrap());
        let usd_off = coupon(Off::Amount { amount: 100, currency: usd() }, CouponDuration::Once);
        let err = usd_off.discount(&mut eur).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { code: "coupon_currency_mismatch", .. }), "{err:?}");
        assert_eq!(eur.total, 3000, "nothing changed");
    }

    #[test]
    fn once_and_repeating_count_invoices_and_forever_never_runs_out() {
        let mut once = Discount::new(coupon(Off::Percent(dec!(10)), CouponDuration::Once));
        assert!(once.take().is_some());
        assert!(once.take().is_none());
        let mut three =
            Discount::new(coupon(Off::Percent(dec!(10)), CouponDuration::Repeating { duration_in_periods: 3 }));
        assert_eq!((0..5).filter(|_| three.take().is_some()).count(), 3);
        let mut forever = Discount::new(coupon(Off::Percent(dec!(10)), CouponDuration::Forever));
        assert_eq!((0..50).filter(|_| forever.take().is_some()).count(), 50);
    }

    #[test]
    fn bad_coupons_are_refused() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let id = Id::from_trusted("coupon_1".into());
        let make = |off, duration| Coupon::new(id.clone(), "X", off, duration, at, false);
        assert!(make(Off::Percent(dec!(0)), CouponDuration::Once).is_err());
        assert!(make(Off::Percent(dec!(100.5)), CouponDuration::Once).is_err());
        assert!(make(Off::Amount { amount: -1, currency: usd() }, CouponDuration::Once).is_err());
        assert!(make(Off::Percent(dec!(5)), CouponDuration::Repeating { duration_in_periods: 0 }).is_err());
        assert!(Coupon::new(id.clone(), " ", Off::Percent(dec!(5)), CouponDuration::Forever, at, false).is_err());
    }
}
