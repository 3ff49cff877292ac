//! Usage events: metered quantities reported by tenants, idempotent on the caller's id, and summed
//! per period when a metered plan's period closes.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::schedule::Period;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// The caller's id: a second event with the same id is the same event.
    pub id: String,
    pub subscription: Id,
    pub metric: String,
    pub quantity: u64,
    pub timestamp: DateTime<Utc>,
    pub received: DateTime<Utc>,
}

pub const MAX_USAGE_QUANTITY: u64 = 1_000_000_000_000;

impl UsageEvent {
    pub fn new(
        id: &str,
        subscription: Id,
        metric: &str,
        quantity: i64,
        timestamp: DateTime<Utc>,
        received: DateTime<Utc>,
    ) -> DomainResult<Self> {
        if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
            return Err(DomainError::invalid("parameter_invalid", "id must be 1 to 255 characters", Some("id")));
        }
        let quantity = u64::try_from(quantity).ok().filter(|q| *q <= MAX_USAGE_QUANTITY).ok_or_else(|| {
            DomainError::invalid(
                "quantity_invalid",
                format!("quantity must be from 0 to {MAX_USAGE_QUANTITY}"),
                Some("quantity"),
            )
        })?;
        if timestamp > received + chrono::Duration::minutes(5) {
            return Err(DomainError::invalid(
                "timestamp_invalid",
                "usage cannot be reported for the future",
                Some("timestamp"),
            ));
        }
        Ok(Self { id: id.to_owned(), subscription, metric: metric.to_owned(), quantity, timestamp, received })
    }
}

/// The quantity of `metric` in `[period.start, period.end)`, each event counted once.
pub fn total_for_period(events: &[UsageEvent], metric: &str, period: &Period) -> DomainResult<u64> {
    let mut seen = std::collections::BTreeSet::new();
    events
        .iter()
        .filter(|e| {
            e.metric == metric && e.timestamp >= period.start && e.timestamp < period.end && seen.insert(e.id.as_str())
        })
        .try_fold(0u64, |acc, e| acc.checked_add(e.quantity))
        .ok_or_else(|| DomainError::invalid("quantity_invalid", "usage total overflows", None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn usage_is_summed_per_metric_and_period_counting_each_id_once() {
        let at = |d: u32| Utc.with_ymd_and_hms(2026, 7, d, 0, 0, 0).unwrap();
        let sub = Id::from_trusted("sub_1".into());
        let ev = |id: &str, metric: &str, q: i64, d: u32| {
            UsageEvent::new(id, sub.clone(), metric, q, at(d), at(28)).unwrap()
        };
        let events = vec![
            ev("a", "clicks", 10, 1),
            ev("a", "clicks", 10, 1),
            ev("b", "clicks", 5, 15),
            ev("c", "views", 99, 15),
            ev("d", "clicks", 7, 20),
        ];
        let period = Period { index: 0, start: at(1), end: at(20) };
        // a (once) + b; d is at the period's end, so it belongs to the next period
        assert_eq!(total_for_period(&events, "clicks", &period).unwrap(), 15);
    }

    #[test]
    fn bad_usage_is_rejected() {
        let now = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let sub = Id::from_trusted("sub_1".into());
        assert!(UsageEvent::new("x", sub.clone(), "clicks", -1, now, now).is_err());
        assert!(UsageEvent::new("", sub.clone(), "clicks", 1, now, now).is_err());
        assert!(UsageEvent::new("x", sub, "clicks", 1, now + chrono::Duration::hours(1), now).is_err());
    }
}
