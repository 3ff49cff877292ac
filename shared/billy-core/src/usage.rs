//! Usage events: metered quantities reported by tenants, idempotent on the caller's id, placed in
//! the subscription period they happened in and added to that period's total for their metric.
//! A period takes usage until one hour after its end (`GRACE`); then its invoice prices the total
//! and closes it, and later events for it are refused.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::plan::{Plan, validate_quantity};
use crate::schedule::Period;
use crate::subscription::Subscription;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long after its end a period still takes usage: events often arrive a little late. The
/// period's metered invoice is made when this window closes.
pub const GRACE: Duration = Duration::hours(1);
/// How far ahead of now an event's timestamp may be (clocks drift).
pub const MAX_AHEAD: Duration = Duration::minutes(5);
pub const MAX_DIMENSIONS: usize = 10;

/// One usage event as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// The caller's id: a second event with the same id is the same event.
    pub id: String,
    pub subscription: Id,
    pub metric: String,
    pub quantity: Decimal,
    pub timestamp: DateTime<Utc>,
    /// What the usage was of (an ad, a website...), to total and trace it by.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// The subscription period it belongs to.
    pub period: Period,
    pub received: DateTime<Utc>,
}

/// A usage event as a client reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUsage {
    pub id: String,
    pub subscription: Id,
    pub metric: String,
    pub quantity: Decimal,
    /// When the usage happened; now (the subscription's time) when not given.
    pub timestamp: Option<DateTime<Utc>>,
    pub dimensions: BTreeMap<String, String>,
}

fn invalid(code: &'static str, message: impl Into<String>, param: &str) -> DomainError {
    DomainError::invalid(code, message, Some(param))
}

impl NewUsage {
    /// Checks what can be checked without the subscription.
    pub fn validate(mut self) -> DomainResult<Self> {
        if self.id.is_empty() || self.id.len() > 255 || self.id.chars().any(char::is_control) {
            return Err(invalid("parameter_invalid", "id must be 1 to 255 characters", "id"));
        }
        self.quantity = validate_quantity(self.quantity, "quantity")?;
        if self.dimensions.len() > MAX_DIMENSIONS {
            return Err(invalid("dimensions_invalid", format!("at most {MAX_DIMENSIONS} dimensions"), "dimensions"));
        }
        for (key, value) in &self.dimensions {
            let key_ok = !key.is_empty()
                && key.len() <= 40
                && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !key_ok {
                return Err(invalid(
                    "dimensions_invalid",
                    "dimension names are 1 to 40 characters of a-z, 0-9 and _",
                    "dimensions",
                ));
            }
            if value.is_empty() || value.chars().count() > 200 || value.chars().any(char::is_control) {
                return Err(invalid("dimensions_invalid", "dimension values are 1 to 200 characters", "dimensions"));
            }
        }
        Ok(self)
    }

    /// Places the event in its subscription's period and checks that period takes it: the metric
    /// is priced by the plan of that period, the period has begun billing and is not closed
    /// (`now` is the subscription's time: its test clock's, if any).
    pub fn place(self, sub: &Subscription, now: DateTime<Utc>) -> DomainResult<UsageEvent> {
        let timestamp = self.timestamp.unwrap_or(now);
        if timestamp > now + MAX_AHEAD {
            return Err(invalid("timestamp_invalid", "usage cannot be reported for the future", "timestamp"));
        }
        let period = sub.current_period(timestamp)?.ok_or_else(|| {
            invalid("timestamp_invalid", "the subscription was not billing yet at this timestamp", "timestamp")
        })?;
        if sub.cancel_at.is_some_and(|c| timestamp >= c) {
            return Err(invalid("timestamp_invalid", "the subscription had ended at this timestamp", "timestamp"));
        }
        let plan: &Plan = sub.plan_for_period(period.index);
        if plan.kind.meter(&self.metric).is_none() {
            let priced: Vec<&str> = plan.kind.meters().iter().map(|m| m.metric.as_str()).collect();
            return Err(invalid(
                "metric_unknown",
                if priced.is_empty() {
                    format!("the subscription's plan prices no usage, so '{}' cannot be reported", self.metric)
                } else {
                    format!("the subscription's plan prices {}, not '{}'", priced.join(", "), self.metric)
                },
                "metric",
            ));
        }
        if now >= closes_at(&period) {
            return Err(closed(&period));
        }
        Ok(UsageEvent {
            id: self.id,
            subscription: self.subscription,
            metric: self.metric,
            quantity: self.quantity,
            timestamp,
            dimensions: self.dimensions,
            period,
            received: now,
        })
    }
}

/// When a period stops taking usage (and its metered invoice is made).
pub fn closes_at(period: &Period) -> DateTime<Utc> {
    period.end + GRACE
}

/// The refusal of an event for a period that no longer takes usage.
pub fn closed(period: &Period) -> DomainError {
    DomainError::invalid(
        "period_closed",
        format!(
            "usage for the period {} – {} closed at {} (one hour after the period's end) and has been invoiced",
            period.start.to_rfc3339(),
            period.end.to_rfc3339(),
            closes_at(period).to_rfc3339()
        ),
        Some("timestamp"),
    )
}

impl UsageEvent {
    /// What makes two reports of one id the same event (the receipt time does not).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::json!({
            "subscription": self.subscription,
            "metric": self.metric,
            "quantity": self.quantity.normalize().to_string(),
            "timestamp": self.timestamp.timestamp_micros(),
            "dimensions": self.dimensions,
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// What became of one reported event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Counted now.
    Counted(UsageEvent),
    /// Counted before, with the same content: the event as first recorded.
    Duplicate(UsageEvent),
}

/// The usage of one metric in one period of one subscription, kept exact as events arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotal {
    pub subscription: Id,
    pub metric: String,
    pub period: Period,
    pub quantity: Decimal,
    pub events: u64,
    /// Priced on an invoice: no more usage is counted for it.
    pub closed: bool,
}

impl UsageTotal {
    pub fn empty(subscription: Id, metric: &str, period: Period) -> Self {
        Self { subscription, metric: metric.to_owned(), period, quantity: Decimal::ZERO, events: 0, closed: false }
    }
}

/// The quantity of `metric` in `period`, each event id counted once: what the stored total must
/// equal (the verification job's fold).
pub fn total_for_period(events: &[UsageEvent], metric: &str, period: &Period) -> Decimal {
    let mut seen = std::collections::BTreeSet::new();
    events
        .iter()
        .filter(|e| {
            e.metric == metric && e.timestamp >= period.start && e.timestamp < period.end && seen.insert(e.id.as_str())
        })
        .map(|e| e.quantity)
        .sum()
}

/// Totals per value of one dimension (events without it under `None`).
pub fn by_dimension(events: &[UsageEvent], dimension: &str) -> BTreeMap<Option<String>, Decimal> {
    let mut out = BTreeMap::new();
    for e in events {
        *out.entry(e.dimensions.get(dimension).cloned()).or_insert(Decimal::ZERO) += e.quantity;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::plan::{Meter, NewPlan, PlanKind, Pricing};
    use crate::schedule::{Cadence, Frequency};
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn at(m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap()
    }

    fn metered_sub() -> Subscription {
        let meter = |m: &str| Meter { metric: m.into(), pricing: Pricing::PerUnit { unit_amount: dec!(1) } };
        let plan = Plan::new(
            Id::from_trusted("plan_m".into()),
            NewPlan {
                name: "Metered".into(),
                description: None,
                currency: Currency::parse("usd", "c").unwrap(),
                cadence: Cadence::new(Frequency::Monthly, 1).unwrap(),
                trial_period_days: None,
                kind: PlanKind::MeteredDebit { base_amount: 0, meters: vec![meter("clicks"), meter("kwh")] },
            },
            at(1, 1, 0),
            false,
        )
        .unwrap();
        Subscription::new(
            Id::from_trusted("sub_1".into()),
            Id::from_trusted("cus_1".into()),
            plan,
            at(7, 1, 0),
            None,
            at(7, 1, 0),
        )
        .unwrap()
    }

    fn usage(id: &str, metric: &str, quantity: Decimal, timestamp: DateTime<Utc>) -> NewUsage {
        NewUsage {
            id: id.into(),
            subscription: Id::from_trusted("sub_1".into()),
            metric: metric.into(),
            quantity,
            timestamp: Some(timestamp),
            dimensions: BTreeMap::from([("ad".to_owned(), "ad_42".to_owned())]),
        }
    }

    #[test]
    fn an_event_lands_in_the_period_of_its_timestamp_until_an_hour_after_that_period_ends() {
        let sub = metered_sub();
        let e = usage("a", "kwh", dec!(12.345), at(7, 31, 23)).validate().unwrap().place(&sub, at(8, 1, 0)).unwrap();
        assert_eq!((e.period.index, e.period.start, e.period.end), (0, at(7, 1, 0), at(8, 1, 0)));
        // 59 minutes after the end it still counts; at one hour the period is closed
        let late = usage("b", "kwh", dec!(1), at(7, 31, 23)).validate().unwrap();
        assert!(late.clone().place(&sub, at(8, 1, 0) + Duration::minutes(59)).is_ok());
        let err = late.place(&sub, at(8, 1, 1)).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { code, .. } if code == "period_closed"), "{err:?}");
    }

    #[test]
    fn bad_usage_is_refused_with_the_field_named() {
        let sub = metered_sub();
        let now = at(7, 15, 0);
        let code = |r: DomainResult<UsageEvent>| match r.unwrap_err() {
            DomainError::Invalid { code, param, .. } => (code, param.unwrap_or_default()),
            other => panic!("{other:?}"),
        };
        let place = |u: NewUsage| u.validate().and_then(|u| u.place(&sub, now));
        assert_eq!(code(place(usage("x", "views", dec!(1), now))), ("metric_unknown", "metric".to_owned()));
        assert_eq!(code(place(usage("x", "kwh", dec!(-1), now))), ("quantity_invalid", "quantity".to_owned()));
        assert_eq!(code(place(usage("", "kwh", dec!(1), now))), ("parameter_invalid", "id".to_owned()));
        assert_eq!(
            code(place(usage("x", "kwh", dec!(1), at(7, 16, 0)))),
            ("timestamp_invalid", "timestamp".to_owned())
        );
        assert_eq!(
            code(place(usage("x", "kwh", dec!(1), at(6, 30, 0)))),
            ("timestamp_invalid", "timestamp".to_owned())
        );
        let mut odd = usage("x", "kwh", dec!(1), now);
        odd.dimensions.insert("Bad Key".into(), "v".into());
        assert_eq!(code(place(odd)), ("dimensions_invalid", "dimensions".to_owned()));
    }

    #[test]
    fn the_same_content_has_the_same_fingerprint_whatever_its_receipt() {
        let sub = metered_sub();
        let a = usage("a", "kwh", dec!(2.50), at(7, 2, 0)).validate().unwrap().place(&sub, at(7, 3, 0)).unwrap();
        let again = usage("a", "kwh", dec!(2.5), at(7, 2, 0)).validate().unwrap().place(&sub, at(7, 9, 0)).unwrap();
        assert_eq!(a.fingerprint(), again.fingerprint());
        let other = usage("a", "kwh", dec!(2.6), at(7, 2, 0)).validate().unwrap().place(&sub, at(7, 3, 0)).unwrap();
        assert_ne!(a.fingerprint(), other.fingerprint());
    }

    #[test]
    fn totals_count_each_id_once_per_metric_and_period_and_split_by_dimension() {
        let sub = metered_sub();
        let ev = |id: &str, metric: &str, q: Decimal, d: u32, ad: &str| {
            let mut u = usage(id, metric, q, at(7, d, 0));
            u.dimensions.insert("ad".into(), ad.into());
            u.validate().unwrap().place(&sub, at(7, 28, 0)).unwrap()
        };
        let events = vec![
            ev("a", "clicks", dec!(10), 1, "ad_1"),
            ev("a", "clicks", dec!(10), 1, "ad_1"),
            ev("b", "clicks", dec!(5), 15, "ad_2"),
            ev("c", "kwh", dec!(99), 15, "ad_1"),
        ];
        let period = sub.period(0).unwrap();
        assert_eq!(total_for_period(&events, "clicks", &period), dec!(15));
        let split = by_dimension(&events[1..3], "ad");
        assert_eq!(split.get(&Some("ad_1".into())), Some(&dec!(10)));
        assert_eq!(split.get(&Some("ad_2".into())), Some(&dec!(5)));
    }
}
