//! Plans and pricing: fixed and metered, debit and payout; validated at construction. A plan is
//! immutable once a subscription uses it (a change is a new plan).

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::money::{Currency, MAX_AMOUNT, checked_sum, round_minor, validate_amount};
use crate::schedule::Cadence;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Which way money moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The customer pays (charges).
    Debit,
    /// The customer is paid (payouts).
    Payout,
}

/// One tier of a tiered price; `up_to: None` is the last, unbounded tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub up_to: Option<u64>,
    /// Price per unit in minor units; may be fractional (0.5 = half a cent per unit).
    pub unit_amount: Decimal,
    /// A flat amount added when the tier is reached.
    #[serde(default)]
    pub flat_amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Pricing {
    /// Every unit at one price.
    PerUnit { unit_amount: Decimal },
    /// Each unit priced by the tier it falls in (1–100 at 10, 101+ at 8: 150 units = 100×10 + 50×8).
    Graduated { tiers: Vec<Tier> },
    /// Every unit priced by the tier the total falls in (150 units, 101+ at 8: 150×8).
    Volume { tiers: Vec<Tier> },
}

/// What usage costs, as invoice lines: each line is rounded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub description: String,
    pub quantity: u64,
    pub unit_amount: Decimal,
    pub amount: i64,
}

fn invalid(code: &'static str, message: impl Into<String>, param: &str) -> DomainError {
    DomainError::invalid(code, message, Some(param))
}

fn validate_unit(unit: Decimal, param: &str) -> DomainResult<()> {
    if unit.is_sign_negative() || unit > Decimal::from(MAX_AMOUNT) || unit.scale() > 12 {
        return Err(invalid(
            "amount_invalid",
            format!("{param} must be from 0 to {MAX_AMOUNT} with at most 12 decimals"),
            param,
        ));
    }
    Ok(())
}

fn validate_tiers(tiers: &[Tier]) -> DomainResult<()> {
    if tiers.is_empty() || tiers.len() > 20 {
        return Err(invalid("tiers_invalid", "a tiered price needs 1 to 20 tiers", "tiers"));
    }
    let mut previous = 0u64;
    for (i, tier) in tiers.iter().enumerate() {
        let last = i == tiers.len() - 1;
        validate_unit(tier.unit_amount, "tiers.unit_amount")?;
        validate_amount(tier.flat_amount, "tiers.flat_amount")?;
        match (tier.up_to, last) {
            (None, true) => {}
            (None, false) => {
                return Err(invalid("tiers_invalid", "only the last tier may be unbounded", "tiers"));
            }
            (Some(_), true) => {
                return Err(invalid("tiers_invalid", "the last tier must be unbounded (up_to: null)", "tiers"));
            }
            (Some(up_to), false) if up_to <= previous => {
                return Err(invalid("tiers_invalid", "tier bounds must increase", "tiers"));
            }
            (Some(up_to), false) => previous = up_to,
        }
    }
    Ok(())
}

impl Pricing {
    pub fn validate(&self) -> DomainResult<()> {
        match self {
            Self::PerUnit { unit_amount } => validate_unit(*unit_amount, "unit_amount"),
            Self::Graduated { tiers } | Self::Volume { tiers } => validate_tiers(tiers),
        }
    }

    /// Prices `quantity` units of `metric` into invoice lines.
    pub fn price(&self, metric: &str, quantity: u64) -> DomainResult<Vec<PricedLine>> {
        let line = |description: String, qty: u64, unit: Decimal, flat: i64| -> DomainResult<PricedLine> {
            let variable = round_minor(Decimal::from(qty) * unit)?;
            Ok(PricedLine { description, quantity: qty, unit_amount: unit, amount: checked_sum([variable, flat])? })
        };
        match self {
            Self::PerUnit { unit_amount } => Ok(vec![line(format!("{metric} usage"), quantity, *unit_amount, 0)?]),
            Self::Graduated { tiers } => {
                let mut lines = Vec::new();
                let mut floor = 0u64;
                for (i, tier) in tiers.iter().enumerate() {
                    if quantity <= floor && !(i == 0 && quantity == 0) {
                        break;
                    }
                    let ceiling = tier.up_to.unwrap_or(u64::MAX);
                    let in_tier = quantity.min(ceiling) - floor.min(quantity);
                    let range = tier.up_to.map_or_else(|| format!("{}+", floor + 1), |u| format!("{}–{u}", floor + 1));
                    lines.push(line(
                        format!("{metric} usage, tier {} ({range})", i + 1),
                        in_tier,
                        tier.unit_amount,
                        tier.flat_amount,
                    )?);
                    floor = ceiling;
                }
                Ok(lines)
            }
            Self::Volume { tiers } => {
                let tier = tiers
                    .iter()
                    .find(|t| t.up_to.is_none_or(|u| quantity <= u))
                    .ok_or_else(|| DomainError::unexpected("volume tiers without an unbounded last tier"))?;
                Ok(vec![line(format!("{metric} usage"), quantity, tier.unit_amount, tier.flat_amount)?])
            }
        }
    }
}

/// A payout plan's cut: a percentage of the gross plus a fixed amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commission {
    pub percent: Decimal,
    #[serde(default)]
    pub fixed_amount: i64,
}

impl Commission {
    pub fn validate(&self) -> DomainResult<()> {
        if self.percent.is_sign_negative() || self.percent > Decimal::from(100) {
            return Err(invalid(
                "commission_invalid",
                "commission percent must be from 0 to 100",
                "commission.percent",
            ));
        }
        validate_amount(self.fixed_amount, "commission.fixed_amount")?;
        Ok(())
    }

    /// The commission on `gross`, rounded once, never more than the gross itself.
    pub fn on(&self, gross: i64) -> DomainResult<i64> {
        let percent = round_minor(Decimal::from(gross) * self.percent / Decimal::from(100))?;
        Ok(checked_sum([percent, self.fixed_amount])?.min(gross))
    }
}

/// The four kinds of plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanKind {
    /// A classic fixed price, billed in advance.
    FixedDebit { amount: i64 },
    /// Usage priced at period close, billed in arrears.
    MeteredDebit { metric: String, pricing: Pricing },
    /// A fixed amount paid out at each period's end.
    FixedPayout { amount: i64 },
    /// Usage priced at period close, paid out minus a commission.
    MeteredPayout { metric: String, pricing: Pricing, commission: Commission },
}

impl PlanKind {
    pub fn direction(&self) -> Direction {
        match self {
            Self::FixedDebit { .. } | Self::MeteredDebit { .. } => Direction::Debit,
            Self::FixedPayout { .. } | Self::MeteredPayout { .. } => Direction::Payout,
        }
    }

    /// Fixed debit bills when a period begins; everything else when it ends.
    pub fn bills_in_advance(&self) -> bool {
        matches!(self, Self::FixedDebit { .. })
    }

    pub fn metric(&self) -> Option<&str> {
        match self {
            Self::MeteredDebit { metric, .. } | Self::MeteredPayout { metric, .. } => Some(metric),
            _ => None,
        }
    }

    fn validate(&self) -> DomainResult<()> {
        let metric_ok = |m: &str| {
            if m.is_empty() || m.len() > 100 || !m.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c)) {
                Err(invalid(
                    "metric_invalid",
                    "metric must be 1 to 100 characters of letters, digits, _ - . :",
                    "metric",
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Self::FixedDebit { amount } | Self::FixedPayout { amount } => validate_amount(*amount, "amount").map(drop),
            Self::MeteredDebit { metric, pricing } => {
                metric_ok(metric)?;
                pricing.validate()
            }
            Self::MeteredPayout { metric, pricing, commission } => {
                metric_ok(metric)?;
                pricing.validate()?;
                commission.validate()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: Id,
    pub name: String,
    pub description: Option<String>,
    pub currency: Currency,
    pub cadence: Cadence,
    pub trial_period_days: Option<u32>,
    #[serde(flatten)]
    pub kind: PlanKind,
    pub created: DateTime<Utc>,
    pub livemode: bool,
}

/// A plan as a client describes it, validated by `Plan::new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlan {
    pub name: String,
    pub description: Option<String>,
    pub currency: Currency,
    pub cadence: Cadence,
    pub trial_period_days: Option<u32>,
    pub kind: PlanKind,
}

pub const MAX_TRIAL_DAYS: u32 = 730;

impl Plan {
    pub fn new(id: Id, input: NewPlan, created: DateTime<Utc>, livemode: bool) -> DomainResult<Self> {
        let name = input.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 256 {
            return Err(invalid("parameter_invalid", "name must be 1 to 256 characters", "name"));
        }
        if input.trial_period_days.is_some_and(|d| d == 0 || d > MAX_TRIAL_DAYS) {
            return Err(invalid(
                "trial_invalid",
                format!("trial_period_days must be from 1 to {MAX_TRIAL_DAYS}"),
                "trial_period_days",
            ));
        }
        if input.trial_period_days.is_some() && input.kind.direction() == Direction::Payout {
            return Err(invalid("trial_invalid", "payout plans have no trial", "trial_period_days"));
        }
        input.kind.validate()?;
        Ok(Self {
            id,
            name,
            description: input.description,
            currency: input.currency,
            cadence: input.cadence,
            trial_period_days: input.trial_period_days,
            kind: input.kind,
            created,
            livemode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Frequency;
    use rust_decimal_macros::dec;

    fn tiers() -> Vec<Tier> {
        vec![
            Tier { up_to: Some(100), unit_amount: dec!(10), flat_amount: 0 },
            Tier { up_to: Some(1000), unit_amount: dec!(8), flat_amount: 0 },
            Tier { up_to: None, unit_amount: dec!(5), flat_amount: 0 },
        ]
    }

    #[test]
    fn graduated_prices_each_unit_in_its_own_tier() {
        // GIVEN 1–100 at 10, 101–1000 at 8, 1001+ at 5; WHEN 1,500 units
        let lines = Pricing::Graduated { tiers: tiers() }.price("clicks", 1500).unwrap();
        // THEN 100×10 = 1000, 900×8 = 7200, 500×5 = 2500 → 10,700
        assert_eq!(
            lines.iter().map(|l| (l.quantity, l.amount)).collect::<Vec<_>>(),
            vec![(100, 1000), (900, 7200), (500, 2500)]
        );
        // and 150 units touch only two tiers: 1000 + 50×8 = 1400
        let lines = Pricing::Graduated { tiers: tiers() }.price("clicks", 150).unwrap();
        assert_eq!(lines.iter().map(|l| l.amount).sum::<i64>(), 1400);
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn volume_prices_every_unit_at_the_reached_tier() {
        // 1,500 units reach the 5-per-unit tier: 7,500; exactly 100 stays in tier 1: 1,000
        assert_eq!(Pricing::Volume { tiers: tiers() }.price("api_calls", 1500).unwrap()[0].amount, 7500);
        assert_eq!(Pricing::Volume { tiers: tiers() }.price("api_calls", 100).unwrap()[0].amount, 1000);
    }

    #[test]
    fn fractional_unit_prices_round_once_per_line_half_away_from_zero() {
        // 0.5 minor units × 3 = 1.5 → 2 (not 0 + 1 + 1 or 3 × 0)
        let lines = Pricing::PerUnit { unit_amount: dec!(0.5) }.price("emails", 3).unwrap();
        assert_eq!(lines[0].amount, 2);
        // zero usage is a zero line, not an error
        assert_eq!(Pricing::PerUnit { unit_amount: dec!(7) }.price("emails", 0).unwrap()[0].amount, 0);
    }

    #[test]
    fn commission_is_rounded_once_and_capped_at_the_gross() {
        // 12.5% of 1,005 = 125.625 → 126, plus 30 fixed = 156
        let c = Commission { percent: dec!(12.5), fixed_amount: 30 };
        assert_eq!(c.on(1005).unwrap(), 156);
        // a commission never exceeds what was earned
        assert_eq!(c.on(20).unwrap(), 20);
    }

    #[test]
    fn bad_tiers_and_plans_are_rejected_with_the_param_named() {
        let bounded_last = vec![Tier { up_to: Some(10), unit_amount: dec!(1), flat_amount: 0 }];
        assert!(Pricing::Graduated { tiers: bounded_last }.validate().is_err());
        let decreasing = vec![
            Tier { up_to: Some(10), unit_amount: dec!(1), flat_amount: 0 },
            Tier { up_to: Some(5), unit_amount: dec!(1), flat_amount: 0 },
            Tier { up_to: None, unit_amount: dec!(1), flat_amount: 0 },
        ];
        assert!(Pricing::Volume { tiers: decreasing }.validate().is_err());
        assert!(Pricing::PerUnit { unit_amount: dec!(-1) }.validate().is_err());
        assert!(Commission { percent: dec!(101), fixed_amount: 0 }.validate().is_err());
        let plan = |kind: PlanKind, trial: Option<u32>| NewPlan {
            name: "Pro".into(),
            description: None,
            currency: Currency::parse("usd", "currency").unwrap(),
            cadence: Cadence::new(Frequency::Monthly, 1).unwrap(),
            trial_period_days: trial,
            kind,
        };
        let id = Id::from_trusted("plan_x".into());
        let now = Utc::now();
        assert!(Plan::new(id.clone(), plan(PlanKind::FixedDebit { amount: 1000 }, Some(14)), now, false).is_ok());
        for (kind, trial, param) in [
            (PlanKind::FixedDebit { amount: -1 }, None, "amount"),
            (PlanKind::FixedDebit { amount: 1000 }, Some(0), "trial_period_days"),
            (PlanKind::FixedPayout { amount: 1000 }, Some(7), "trial_period_days"),
            (
                PlanKind::MeteredDebit {
                    metric: "bad metric".into(),
                    pricing: Pricing::PerUnit { unit_amount: dec!(1) },
                },
                None,
                "metric",
            ),
        ] {
            let err = Plan::new(id.clone(), plan(kind, trial), now, false).unwrap_err();
            assert!(matches!(err, DomainError::Invalid { param: Some(ref p), .. } if p == param), "{err:?}");
        }
    }

    #[test]
    fn fixed_debit_bills_in_advance_everything_else_in_arrears() {
        assert!(PlanKind::FixedDebit { amount: 1 }.bills_in_advance());
        assert!(!PlanKind::FixedPayout { amount: 1 }.bills_in_advance());
        assert_eq!(PlanKind::FixedPayout { amount: 1 }.direction(), Direction::Payout);
    }
}
