//! Test clocks (as in Stripe): a frozen time that test-mode customers live on. Advancing one runs
//! every billing step that became due, through the same queues and functions as real time.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// At most this many customers share one clock (as in Stripe): readiness is checked per customer.
pub const MAX_CLOCK_CUSTOMERS: usize = 3;
/// One advance moves at most this far.
pub const MAX_ADVANCE_DAYS: i64 = 5 * 366;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockStatus {
    /// Everything due up to the frozen time has settled.
    Ready,
    /// Billing steps triggered by the last advance are still running.
    Advancing,
    /// A step at the clock's current time failed for good (its reasons are listed); named as in
    /// Stripe's test clocks.
    InternalFailure,
}

/// A step of a test clock that failed for good: which step, about what, why, at which clock time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockFailure {
    pub step: String,
    pub subject: Id,
    pub reason: String,
    pub frozen_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestClock {
    pub id: Id,
    pub name: Option<String>,
    pub frozen_time: DateTime<Utc>,
    pub customers: Vec<Id>,
    pub created: DateTime<Utc>,
    pub version: u64,
}

impl TestClock {
    pub fn new(id: Id, name: Option<String>, frozen_time: DateTime<Utc>, created: DateTime<Utc>) -> DomainResult<Self> {
        if let Some(n) = &name
            && (n.is_empty() || n.chars().count() > 300)
        {
            return Err(DomainError::invalid("parameter_invalid", "name must be 1 to 300 characters", Some("name")));
        }
        Ok(Self { id, name, frozen_time, customers: Vec::new(), created, version: 1 })
    }

    /// Moves the frozen time forward; never backwards, and not while earlier work is running.
    pub fn advance(&mut self, to: DateTime<Utc>, status: ClockStatus) -> DomainResult<DateTime<Utc>> {
        if status == ClockStatus::Advancing {
            return Err(DomainError::conflict(
                "clock_advancing",
                "the test clock is still advancing; wait until it is ready",
            ));
        }
        if to <= self.frozen_time {
            return Err(DomainError::invalid(
                "frozen_time_invalid",
                "a test clock can only move forward: frozen_time must be after the current one",
                Some("frozen_time"),
            ));
        }
        if to - self.frozen_time > Duration::days(MAX_ADVANCE_DAYS) {
            return Err(DomainError::invalid(
                "frozen_time_invalid",
                "one advance moves at most five years",
                Some("frozen_time"),
            ));
        }
        let from = self.frozen_time;
        self.frozen_time = to;
        self.version += 1;
        Ok(from)
    }

    /// Attaches a customer; a clock holds at most `MAX_CLOCK_CUSTOMERS`.
    pub fn attach(&mut self, customer: Id) -> DomainResult<()> {
        if self.customers.len() >= MAX_CLOCK_CUSTOMERS {
            return Err(DomainError::invalid(
                "clock_full",
                format!("a test clock holds at most {MAX_CLOCK_CUSTOMERS} customers"),
                Some("test_clock"),
            ));
        }
        self.customers.push(customer);
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn clock() -> TestClock {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        TestClock::new(Id::from_trusted("clock_1".into()), None, t, t).unwrap()
    }

    #[test]
    fn clocks_only_move_forward_and_not_while_advancing() {
        let mut c = clock();
        let later = c.frozen_time + Duration::days(31);
        assert!(matches!(c.advance(c.frozen_time, ClockStatus::Ready), Err(DomainError::Invalid { .. })));
        assert!(matches!(c.advance(later, ClockStatus::Advancing), Err(DomainError::Conflict { .. })));
        assert!(c.advance(c.frozen_time + Duration::days(6 * 366), ClockStatus::Ready).is_err());
        c.advance(later, ClockStatus::Ready).unwrap();
        assert_eq!((c.frozen_time, c.version), (later, 2));
    }

    #[test]
    fn a_clock_holds_at_most_three_customers() {
        let mut c = clock();
        for i in 0..3 {
            c.attach(Id::from_trusted(format!("cus_{i}"))).unwrap();
        }
        assert!(c.attach(Id::from_trusted("cus_4".into())).is_err());
    }
}
