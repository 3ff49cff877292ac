//! Dunning: how a failed charge (or payout) is retried, and what happens when retries run out.

use crate::error::{DomainError, DomainResult};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// What becomes of the subscription when an invoice is finally uncollectible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalAction {
    PastDue,
    Cancel,
}

/// Attempts and the gaps between them. The default is 4 attempts over 21 days with increasing gaps:
/// day 0, day 3, day 10, day 21.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DunningPolicy {
    /// Hours between attempt n and n+1; its length + 1 is the number of attempts.
    pub retry_gaps_hours: Vec<u32>,
    pub final_action: FinalAction,
}

impl Default for DunningPolicy {
    fn default() -> Self {
        Self { retry_gaps_hours: vec![3 * 24, 7 * 24, 11 * 24], final_action: FinalAction::PastDue }
    }
}

pub const MAX_ATTEMPTS: usize = 10;
pub const MAX_SPAN_DAYS: u32 = 60;

/// Failure codes no retry can cure (the account is gone or never existed): the attempt that meets
/// one is the last, whatever the policy still allows.
pub const PERMANENT_FAILURES: &[&str] =
    &["account_closed", "no_account", "invalid_account", "invalid_account_number", "pix_key_rejected"];

pub fn is_permanent(code: &str) -> bool {
    PERMANENT_FAILURES.contains(&code)
}

fn validate_gaps(gaps: &[u32], code: &'static str, param: &'static str) -> DomainResult<()> {
    let bad = |m: String| Err(DomainError::invalid(code, m, Some(param)));
    if gaps.len() + 1 > MAX_ATTEMPTS {
        return bad(format!("at most {MAX_ATTEMPTS} attempts"));
    }
    if gaps.contains(&0) {
        return bad("gaps must be at least one hour".into());
    }
    let span: u64 = gaps.iter().map(|h| u64::from(*h)).sum();
    if span > u64::from(MAX_SPAN_DAYS) * 24 {
        return bad(format!("retries must end within {MAX_SPAN_DAYS} days"));
    }
    Ok(())
}

/// After attempt number `attempts_made` (1-based) failed at `failed_at`, when is the next one due
/// under these gaps? `None` means they are exhausted.
fn next_after(gaps: &[u32], attempts_made: u32, failed_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let index = usize::try_from(attempts_made.checked_sub(1)?).ok()?;
    gaps.get(index).map(|h| failed_at + Duration::hours(i64::from(*h)))
}

impl DunningPolicy {
    pub fn new(retry_gaps_hours: Vec<u32>, final_action: FinalAction) -> DomainResult<Self> {
        validate_gaps(&retry_gaps_hours, "dunning_invalid", "retry_gaps_hours")?;
        Ok(Self { retry_gaps_hours, final_action })
    }

    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.retry_gaps_hours.len() + 1).unwrap_or(u32::MAX)
    }

    /// After attempt number `attempts_made` (1-based) failed at `failed_at`, when is the next one
    /// due? `None` means the policy is exhausted.
    pub fn next_attempt_at(&self, attempts_made: u32, failed_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_after(&self.retry_gaps_hours, attempts_made, failed_at)
    }
}

/// How a failed payout is retried. The default is 3 attempts over 4 days (day 0, day 1, day 4):
/// a bank's transient refusal clears in a day or two. When the attempts run out, or a failure is
/// permanent, the payout invoice stays `payout_failed` (the money is still owed; nothing is
/// written off, and the subscription goes on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRetryPolicy {
    pub retry_gaps_hours: Vec<u32>,
}

impl Default for PayoutRetryPolicy {
    fn default() -> Self {
        Self { retry_gaps_hours: vec![24, 72] }
    }
}

impl PayoutRetryPolicy {
    pub fn new(retry_gaps_hours: Vec<u32>) -> DomainResult<Self> {
        validate_gaps(&retry_gaps_hours, "payout_retry_invalid", "payout_retry.retry_gaps_hours")?;
        Ok(Self { retry_gaps_hours })
    }

    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.retry_gaps_hours.len() + 1).unwrap_or(u32::MAX)
    }

    pub fn next_attempt_at(&self, attempts_made: u32, failed_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_after(&self.retry_gaps_hours, attempts_made, failed_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_default_is_four_attempts_over_21_days_with_growing_gaps() {
        // GIVEN the default policy and a first failure on 1 March
        let p = DunningPolicy::default();
        let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 12, 0, 0).unwrap();
        assert_eq!(p.max_attempts(), 4);
        // THEN retries on 4 March, 11 March, 22 March; after the 4th attempt, none
        let second = p.next_attempt_at(1, day(1)).unwrap();
        assert_eq!(second, day(4));
        let third = p.next_attempt_at(2, second).unwrap();
        assert_eq!(third, day(11));
        let fourth = p.next_attempt_at(3, third).unwrap();
        assert_eq!(fourth, day(22));
        assert_eq!(p.next_attempt_at(4, fourth), None);
        assert_eq!(fourth - day(1), Duration::days(21));
    }

    #[test]
    fn policies_are_validated() {
        assert!(DunningPolicy::new(vec![24; 9], FinalAction::Cancel).is_ok());
        assert!(DunningPolicy::new(vec![24; 10], FinalAction::Cancel).is_err());
        assert!(DunningPolicy::new(vec![0], FinalAction::Cancel).is_err());
        assert!(DunningPolicy::new(vec![61 * 24], FinalAction::Cancel).is_err());
        // retries may end on day 60 itself, not an hour later
        assert!(DunningPolicy::new(vec![30 * 24, 30 * 24], FinalAction::Cancel).is_ok());
        assert!(DunningPolicy::new(vec![30 * 24, 30 * 24 + 1], FinalAction::Cancel).is_err());
        // a single attempt (no retries) is allowed
        assert_eq!(DunningPolicy::new(vec![], FinalAction::PastDue).unwrap().max_attempts(), 1);
    }

    #[test]
    fn a_failed_payout_is_tried_three_times_over_four_days_by_default() {
        // GIVEN the default payout policy and a first failure on 1 March at noon
        let p = PayoutRetryPolicy::default();
        let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 12, 0, 0).unwrap();
        assert_eq!(p.max_attempts(), 3);
        // THEN the next tries are on 2 March and 5 March, and none after the third
        let second = p.next_attempt_at(1, day(1)).unwrap();
        assert_eq!(second, day(2));
        let third = p.next_attempt_at(2, second).unwrap();
        assert_eq!(third, day(5));
        assert_eq!(p.next_attempt_at(3, third), None);
        // AND a tenant's own gaps count the same way, under their own error code
        assert_eq!(PayoutRetryPolicy::new(vec![6, 12, 24]).unwrap().max_attempts(), 4);
        assert!(matches!(
            PayoutRetryPolicy::new(vec![0]),
            Err(DomainError::Invalid { code: "payout_retry_invalid", .. })
        ));
    }
}
