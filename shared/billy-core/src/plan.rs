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
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    /// A tier's flat amount, included in `amount`.
    pub flat_amount: i64,
    pub amount: i64,
}

/// The most a usage quantity (one event, or a period's total) may be.
pub const MAX_QUANTITY: i64 = 1_000_000_000_000;
/// Decimal places a usage quantity may have.
pub const MAX_QUANTITY_SCALE: u32 = 9;

/// A usage quantity as given: 0 or more, at most `MAX_QUANTITY`, with at most 9 decimals.
pub fn validate_quantity(quantity: Decimal, param: &str) -> DomainResult<Decimal> {
    if quantity.is_sign_negative()
        || quantity > Decimal::from(MAX_QUANTITY)
        || quantity.normalize().scale() > MAX_QUANTITY_SCALE
    {
        return Err(invalid(
            "quantity_invalid",
            format!("{param} must be from 0 to {MAX_QUANTITY} with at most {MAX_QUANTITY_SCALE} decimals"),
            param,
        ));
    }
    Ok(quantity.normalize())
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

    /// Prices `quantity` units of `metric` into invoice lines, with Stripe's semantics: `up_to` is
    /// inclusive; graduated prices each unit in its own tier and adds the flat amount of every
    /// tier reached (the first tier's even at zero); volume prices every unit at the tier the
    /// whole quantity reaches, plus that tier's flat amount.
    pub fn price(&self, metric: &str, quantity: Decimal) -> DomainResult<Vec<PricedLine>> {
        let line = |description: String, qty: Decimal, unit: Decimal, flat: i64| -> DomainResult<PricedLine> {
            let variable = round_minor(qty * unit)?;
            Ok(PricedLine {
                description,
                quantity: qty,
                unit_amount: unit,
                flat_amount: flat,
                amount: checked_sum([variable, flat])?,
            })
        };
        match self {
            Self::PerUnit { unit_amount } => Ok(vec![line(format!("{metric} usage"), quantity, *unit_amount, 0)?]),
            Self::Graduated { tiers } => {
                let mut lines = Vec::new();
                let mut floor = Decimal::ZERO;
                for (i, tier) in tiers.iter().enumerate() {
                    if quantity <= floor && i > 0 {
                        break;
                    }
                    let ceiling = tier.up_to.map(Decimal::from);
                    let in_tier = ceiling.map_or(quantity, |c| quantity.min(c)) - floor.min(quantity);
                    let range = match tier.up_to {
                        Some(up_to) => format!("{}–{up_to}", tier_start(floor)),
                        None => format!("{}+", tier_start(floor)),
                    };
                    lines.push(line(
                        format!("{metric} usage, tier {} ({range})", i + 1),
                        in_tier,
                        tier.unit_amount,
                        tier.flat_amount,
                    )?);
                    match ceiling {
                        Some(c) => floor = c,
                        None => break,
                    }
                }
                Ok(lines)
            }
            Self::Volume { tiers } => {
                let (index, tier) = tiers
                    .iter()
                    .enumerate()
                    .find(|(_, t)| t.up_to.is_none_or(|u| quantity <= Decimal::from(u)))
                    .ok_or_else(|| DomainError::unexpected("volume tiers without an unbounded last tier"))?;
                Ok(vec![line(
                    format!("{metric} usage, tier {}", index + 1),
                    quantity,
                    tier.unit_amount,
                    tier.flat_amount,
                )?])
            }
        }
    }

    /// The total `quantity` costs (the sum of its lines).
    pub fn total(&self, quantity: Decimal) -> DomainResult<i64> {
        checked_sum(self.price("", quantity)?.iter().map(|l| l.amount))
    }
}

/// The first unit of the tier that starts after `floor` units.
fn tier_start(floor: Decimal) -> Decimal {
    floor.floor() + Decimal::ONE
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

/// One metered component of a plan: a metric and its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    pub metric: String,
    pub pricing: Pricing,
}

/// At most this many metered components per plan.
pub const MAX_METERS: usize = 10;

/// The four kinds of plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanKind {
    /// A classic fixed price, billed in advance.
    FixedDebit { amount: i64 },
    /// Usage priced at period close, billed in arrears: one or more metered components, on top of
    /// an optional fixed base amount billed on the same invoice.
    MeteredDebit {
        #[serde(default)]
        base_amount: i64,
        meters: Vec<Meter>,
    },
    /// A fixed amount paid out at each period's end.
    FixedPayout { amount: i64 },
    /// Usage priced at period close, paid out minus a commission (its own line): the plan's own,
    /// else the tenant's.
    MeteredPayout {
        #[serde(default)]
        base_amount: i64,
        meters: Vec<Meter>,
        #[serde(default)]
        commission: Option<Commission>,
    },
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

    /// The metered components (none for fixed plans).
    pub fn meters(&self) -> &[Meter] {
        match self {
            Self::MeteredDebit { meters, .. } | Self::MeteredPayout { meters, .. } => meters,
            _ => &[],
        }
    }

    pub fn is_metered(&self) -> bool {
        !self.meters().is_empty()
    }

    pub fn meter(&self, metric: &str) -> Option<&Meter> {
        self.meters().iter().find(|m| m.metric == metric)
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
        let meters_ok = |base_amount: i64, meters: &[Meter]| {
            validate_amount(base_amount, "base_amount")?;
            if meters.is_empty() || meters.len() > MAX_METERS {
                return Err(invalid(
                    "meters_invalid",
                    format!("a metered plan has 1 to {MAX_METERS} meters"),
                    "meters",
                ));
            }
            for (i, meter) in meters.iter().enumerate() {
                metric_ok(&meter.metric)?;
                meter.pricing.validate()?;
                if meters[..i].iter().any(|m| m.metric == meter.metric) {
                    return Err(invalid(
                        "meters_invalid",
                        format!("metric '{}' is priced twice", meter.metric),
                        "meters",
                    ));
                }
            }
            Ok(())
        };
        match self {
            Self::FixedDebit { amount } | Self::FixedPayout { amount } => validate_amount(*amount, "amount").map(drop),
            Self::MeteredDebit { base_amount, meters } => meters_ok(*base_amount, meters),
            Self::MeteredPayout { base_amount, meters, commission } => {
                meters_ok(*base_amount, meters)?;
                commission.as_ref().map_or(Ok(()), Commission::validate)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: Id,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub currency: Currency,
    pub cadence: Cadence,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
// Amounts in these tests are written dollars_cents (35_00 is 35.00 USD).
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;
    use crate::schedule::Frequency;
    use rust_decimal_macros::dec;

    fn tier(up_to: Option<u64>, unit: Decimal, flat: i64) -> Tier {
        Tier { up_to, unit_amount: unit, flat_amount: flat }
    }

    /// Stripe's tiered-pricing guide (Typographic's fonts): 1–5 at 7.00, 6–10 at 6.50, 11+ at 6.00.
    fn typographic() -> Vec<Tier> {
        vec![tier(Some(5), dec!(700), 0), tier(Some(10), dec!(650), 0), tier(None, dec!(600), 0)]
    }

    /// Stripe's API guide to tiers: 1–5 at 5.00, 6–10 at 4.00, 11–15 at 3.00, 16–20 at 2.00, 21+ at 1.00.
    fn five_tiers() -> Vec<Tier> {
        vec![
            tier(Some(5), dec!(500), 0),
            tier(Some(10), dec!(400), 0),
            tier(Some(15), dec!(300), 0),
            tier(Some(20), dec!(200), 0),
            tier(None, dec!(100), 0),
        ]
    }

    fn total(pricing: &Pricing, quantity: Decimal) -> i64 {
        pricing.total(quantity).unwrap()
    }

    #[test]
    fn volume_tiers_match_stripes_worked_examples() {
        // Typographic: 1 → 7, 5 → 35, 6 → 39, 20 → 120, 25 → 150 (USD)
        let volume = Pricing::Volume { tiers: typographic() };
        for (fonts, usd) in [(1, 7_00), (5, 35_00), (6, 39_00), (20, 120_00), (25, 150_00)] {
            assert_eq!(total(&volume, Decimal::from(fonts)), usd, "{fonts} fonts");
        }
        // five tiers: 1 → 5, 5 → 25, 6 → 24, 20 → 40, 25 → 25 (the total can go down)
        let volume = Pricing::Volume { tiers: five_tiers() };
        for (units, usd) in [(1, 5_00), (5, 25_00), (6, 24_00), (20, 40_00), (25, 25_00)] {
            assert_eq!(total(&volume, Decimal::from(units)), usd, "{units} units");
        }
    }

    #[test]
    fn graduated_tiers_match_stripes_worked_examples() {
        // five tiers: 6 units = 5 × 5.00 + 1 × 4.00 = 29.00 (Stripe's own figure)
        let graduated = Pricing::Graduated { tiers: five_tiers() };
        assert_eq!(total(&graduated, dec!(6)), 29_00);
        // worked by hand from the same tiers: 20 = 25 + 20 + 15 + 10 = 70.00; 25 = 70 + 5 = 75.00
        assert_eq!(total(&graduated, dec!(20)), 70_00);
        assert_eq!(total(&graduated, dec!(25)), 75_00);
        // Typographic, 6 fonts: 35.00 + 6.50; one line per tier reached, each with its range
        let lines = Pricing::Graduated { tiers: typographic() }.price("fonts", dec!(6)).unwrap();
        assert_eq!(
            lines.iter().map(|l| (l.description.as_str(), l.quantity, l.amount)).collect::<Vec<_>>(),
            vec![("fonts usage, tier 1 (1–5)", dec!(5), 35_00), ("fonts usage, tier 2 (6–10)", dec!(1), 6_50)]
        );
    }

    #[test]
    fn flat_amounts_are_added_per_tier_reached() {
        // graduated: 0–10 units for a flat 10.00, then 1.00 each: 0 units → 10.00 (the first
        // tier's flat fee is owed at zero), 10 → 10.00, 12 → 12.00
        let graduated = Pricing::Graduated { tiers: vec![tier(Some(10), dec!(0), 10_00), tier(None, dec!(100), 0)] };
        assert_eq!(
            (total(&graduated, dec!(0)), total(&graduated, dec!(10)), total(&graduated, dec!(12))),
            (10_00, 10_00, 12_00)
        );
        // volume: the reached tier's flat amount once, on top of its unit price
        let volume = Pricing::Volume { tiers: vec![tier(Some(10), dec!(100), 5_00), tier(None, dec!(50), 20_00)] };
        assert_eq!((total(&volume, dec!(10)), total(&volume, dec!(11))), (15_00, 25_50));
    }

    #[test]
    fn decimal_quantities_are_priced_and_rounded_once_per_line() {
        // 12.345 kWh at 21.5 minor units = 265.4175 → 265
        let per_unit = Pricing::PerUnit { unit_amount: dec!(21.5) };
        assert_eq!(total(&per_unit, dec!(12.345)), 265);
        // 0.5 minor units × 3 = 1.5 → 2 (not 0 + 1 + 1 or 3 × 0)
        assert_eq!(total(&Pricing::PerUnit { unit_amount: dec!(0.5) }, dec!(3)), 2);
        // zero usage is a zero line, not an error
        assert_eq!(Pricing::PerUnit { unit_amount: dec!(7) }.price("emails", dec!(0)).unwrap()[0].amount, 0);
        // a fractional quantity across a tier boundary: 5.5 units = 5 × 7.00 + 0.5 × 6.50
        assert_eq!(total(&Pricing::Graduated { tiers: typographic() }, dec!(5.5)), 38_25);
        assert_eq!(total(&Pricing::Volume { tiers: typographic() }, dec!(5.5)), 35_75);
        // bad quantities are refused with the field named
        assert!(validate_quantity(dec!(-1), "quantity").is_err());
        assert!(validate_quantity(dec!(0.0000000001), "quantity").is_err());
        assert_eq!(validate_quantity(dec!(2.500), "quantity").unwrap(), dec!(2.5));
    }

    proptest::proptest! {
        #[test]
        fn graduated_totals_never_fall_as_usage_grows(a in 0u64..5_000, b in 0u64..5_000, frac in 0u32..1000) {
            let graduated = Pricing::Graduated { tiers: vec![
                tier(Some(100), dec!(10), 2_00), tier(Some(1000), dec!(7.5), 0), tier(None, dec!(0.25), 1_00),
            ] };
            let (low, high) = (a.min(b), a.max(b));
            let low = Decimal::from(low) + Decimal::new(i64::from(frac), 3);
            let high = Decimal::from(high) + Decimal::new(i64::from(frac), 3);
            proptest::prop_assert!(total(&graduated, low) <= total(&graduated, high));
        }

        #[test]
        fn graduated_lines_cover_every_unit_exactly_once(q in 0u64..20_000) {
            let lines = Pricing::Graduated { tiers: five_tiers() }.price("u", Decimal::from(q)).unwrap();
            let covered: Decimal = lines.iter().map(|l| l.quantity).sum();
            proptest::prop_assert_eq!(covered, Decimal::from(q));
        }
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
                    base_amount: 0,
                    meters: vec![Meter {
                        metric: "bad metric".into(),
                        pricing: Pricing::PerUnit { unit_amount: dec!(1) },
                    }],
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
    fn quantities_and_unit_prices_are_accepted_up_to_their_bounds_and_no_further() {
        // a period's usage may reach MAX_QUANTITY, with 9 decimals at most
        let max = Decimal::from(MAX_QUANTITY);
        assert_eq!(validate_quantity(max, "quantity").unwrap(), max);
        assert!(validate_quantity(max + Decimal::ONE, "quantity").is_err());
        assert_eq!(validate_quantity(dec!(0.000000001), "quantity").unwrap(), dec!(0.000000001));
        // a unit price may reach MAX_AMOUNT minor units, with 12 decimals at most
        let unit = |u: Decimal| Pricing::PerUnit { unit_amount: u }.validate();
        assert!(unit(Decimal::from(MAX_AMOUNT)).is_ok());
        assert!(matches!(
            unit(Decimal::from(MAX_AMOUNT + 1)),
            Err(DomainError::Invalid { code: "amount_invalid", .. })
        ));
        assert!(unit(dec!(0.000000000001)).is_ok());
        assert!(matches!(unit(dec!(0.0000000000001)), Err(DomainError::Invalid { code: "amount_invalid", .. })));
    }

    #[test]
    fn a_tiered_price_has_1_to_20_tiers_with_rising_bounds() {
        let tiers = |n: u64| (1..=n).map(|i| tier((i < n).then_some(i * 10), dec!(1), 0)).collect::<Vec<_>>();
        let tiers_invalid = |t: Vec<Tier>| {
            matches!(
                Pricing::Graduated { tiers: t }.validate(),
                Err(DomainError::Invalid { code: "tiers_invalid", .. })
            )
        };
        assert!(Pricing::Graduated { tiers: tiers(1) }.validate().is_ok(), "one unbounded tier");
        assert!(Pricing::Graduated { tiers: tiers(20) }.validate().is_ok());
        assert!(Pricing::Volume { tiers: typographic() }.validate().is_ok());
        assert!(tiers_invalid(tiers(21)));
        assert!(tiers_invalid(vec![]));
        // a bound equal to the one before leaves an empty tier: refused, as is a first bound of 0
        assert!(tiers_invalid(vec![tier(Some(10), dec!(1), 0), tier(Some(10), dec!(1), 0), tier(None, dec!(1), 0)]));
        assert!(tiers_invalid(vec![tier(Some(0), dec!(1), 0), tier(None, dec!(1), 0)]));
        // only the last tier is unbounded
        assert!(tiers_invalid(vec![tier(None, dec!(1), 0), tier(None, dec!(1), 0)]));
    }

    #[test]
    fn a_commission_may_take_everything_but_no_more() {
        let all = Commission { percent: dec!(100), fixed_amount: 0 };
        assert!(all.validate().is_ok());
        assert_eq!(all.on(1234).unwrap(), 1234);
        assert!(Commission { percent: dec!(100.01), fixed_amount: 0 }.validate().is_err());
        assert!(Commission { percent: dec!(-0.01), fixed_amount: 0 }.validate().is_err());
    }

    #[test]
    fn only_plans_with_meters_wait_for_usage() {
        assert!(!PlanKind::FixedDebit { amount: 1 }.is_metered());
        assert!(!PlanKind::FixedPayout { amount: 1 }.is_metered());
        let meters = vec![Meter { metric: "calls".into(), pricing: Pricing::PerUnit { unit_amount: dec!(1) } }];
        let metered = PlanKind::MeteredDebit { base_amount: 0, meters };
        assert!(metered.is_metered());
        assert!(metered.meter("calls").is_some() && metered.meter("emails").is_none());
    }

    #[test]
    fn a_metered_plan_has_1_to_10_meters_named_in_at_most_100_characters() {
        let meter = |metric: String| Meter { metric, pricing: Pricing::PerUnit { unit_amount: dec!(1) } };
        let plan = |meters: Vec<Meter>| {
            let input = NewPlan {
                name: "Usage".into(),
                description: None,
                currency: Currency::parse("usd", "currency").unwrap(),
                cadence: Cadence::new(Frequency::Monthly, 1).unwrap(),
                trial_period_days: None,
                kind: PlanKind::MeteredDebit { base_amount: 0, meters },
            };
            Plan::new(Id::from_trusted("plan_x".into()), input, Utc::now(), false)
        };
        let code = |r: DomainResult<Plan>| match r {
            Err(DomainError::Invalid { code, .. }) => code,
            other => panic!("expected a 400, got {other:?}"),
        };
        assert!(plan(vec![meter("m".repeat(100))]).is_ok());
        assert_eq!(code(plan(vec![meter("m".repeat(101))])), "metric_invalid");
        assert_eq!(code(plan(vec![meter(String::new())])), "metric_invalid");
        assert!(plan((0..10).map(|i| meter(format!("metric_{i}"))).collect()).is_ok());
        assert_eq!(code(plan((0..11).map(|i| meter(format!("metric_{i}"))).collect())), "meters_invalid");
        assert_eq!(code(plan(vec![])), "meters_invalid");
        assert_eq!(code(plan(vec![meter("calls".into()), meter("calls".into())])), "meters_invalid");
    }

    #[test]
    fn fixed_debit_bills_in_advance_everything_else_in_arrears() {
        assert!(PlanKind::FixedDebit { amount: 1 }.bills_in_advance());
        assert!(!PlanKind::FixedPayout { amount: 1 }.bills_in_advance());
        assert_eq!(PlanKind::FixedPayout { amount: 1 }.direction(), Direction::Payout);
    }
}
