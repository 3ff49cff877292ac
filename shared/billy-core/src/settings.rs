//! A tenant's settings: the refund window, the dunning and payout retry policies, the settlement
//! mode and commission, and the gateway routing rules, with
//! defaults for a tenant that set nothing. One item per tenant and mode, versioned and journaled
//! like any entity, and read afresh by every step that needs them, so a change applies to the
//! very next request.

use crate::dunning::{DunningPolicy, FinalAction, PayoutRetryPolicy, is_permanent};
use crate::error::{DomainError, DomainResult};
use crate::gateway::GatewayRegistry;
use crate::invoice::RefundPolicy;
use crate::plan::Commission;
use crate::routing::RoutingTable;
use crate::settlement::SettlementMode;
use serde::{Deserialize, Serialize};

/// The longest refund window a tenant can set.
pub const MAX_REFUND_WINDOW_DAYS: u32 = 365;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    #[serde(default)]
    pub refund: RefundPolicy,
    #[serde(default)]
    pub dunning: DunningPolicy,
    #[serde(default)]
    pub payout_retry: PayoutRetryPolicy,
    /// Each invoice on its own, or a customer's month netted into one charge or payout.
    #[serde(default)]
    pub settlement: SettlementMode,
    /// The tenant's cut of metered payouts whose plan names none (0 % by default).
    #[serde(default)]
    pub commission: Option<Commission>,
    /// `None`: charges try the deployment's gateways in their registration order.
    #[serde(default)]
    pub routing: Option<RoutingTable>,
    /// 0 for a tenant that never saved settings.
    #[serde(default)]
    pub version: u64,
}

/// What a tenant may change; what it leaves out stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub refund_window_days: Option<u32>,
    pub retry_gaps_hours: Option<Vec<u32>>,
    pub final_action: Option<FinalAction>,
    pub payout_retry_gaps_hours: Option<Vec<u32>>,
    pub settlement: Option<SettlementMode>,
    pub commission: Option<Commission>,
}

impl TenantSettings {
    /// The routing rules charges follow: the tenant's own, else every registered gateway in order.
    pub fn routing(&self, gateways: &GatewayRegistry) -> RoutingTable {
        self.routing.clone().unwrap_or_else(|| RoutingTable::in_order(&gateways.names()))
    }

    /// When an invoice whose attempt just failed with `code` at `at` is tried again: never after a
    /// permanent failure, else per the dunning policy (debits) or the payout retry policy.
    pub fn next_attempt_at(
        &self,
        inv: &crate::invoice::Invoice,
        code: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        if is_permanent(code) {
            return None;
        }
        match inv.direction {
            crate::plan::Direction::Debit => self.dunning.next_attempt_at(inv.attempt_count, at),
            crate::plan::Direction::Payout => self.payout_retry.next_attempt_at(inv.attempt_count, at),
        }
    }

    /// The settings with `patch` applied, validated; unchanged on error.
    pub fn patched(&self, patch: SettingsPatch) -> DomainResult<Self> {
        let mut next = self.clone();
        if let Some(days) = patch.refund_window_days {
            if days > MAX_REFUND_WINDOW_DAYS {
                return Err(DomainError::invalid(
                    "refund_window_invalid",
                    format!("the refund window is 0 to {MAX_REFUND_WINDOW_DAYS} days"),
                    Some("refund_window_days"),
                ));
            }
            next.refund = RefundPolicy { window_days: days };
        }
        if patch.retry_gaps_hours.is_some() || patch.final_action.is_some() {
            next.dunning = DunningPolicy::new(
                patch.retry_gaps_hours.unwrap_or_else(|| self.dunning.retry_gaps_hours.clone()),
                patch.final_action.unwrap_or(self.dunning.final_action),
            )?;
        }
        if let Some(gaps) = patch.payout_retry_gaps_hours {
            next.payout_retry = PayoutRetryPolicy::new(gaps)?;
        }
        if let Some(mode) = patch.settlement {
            next.settlement = mode;
        }
        if let Some(commission) = patch.commission {
            commission.validate()?;
            next.commission = Some(commission);
        }
        next.version = self.version + 1;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_changes_only_what_it_names_and_is_validated() {
        let defaults = TenantSettings::default();
        let two_attempts = SettingsPatch { retry_gaps_hours: Some(vec![120]), ..SettingsPatch::default() };
        let next = defaults.patched(two_attempts).unwrap();
        assert_eq!((next.dunning.max_attempts(), next.dunning.final_action), (2, FinalAction::PastDue));
        assert_eq!((next.refund.window_days, next.version), (7, 1));
        let window = next.patched(SettingsPatch { refund_window_days: Some(30), ..SettingsPatch::default() }).unwrap();
        assert_eq!((window.refund.window_days, window.dunning.max_attempts(), window.version), (30, 2, 2));
        assert!(defaults.patched(SettingsPatch { refund_window_days: Some(366), ..SettingsPatch::default() }).is_err());
        assert!(
            defaults.patched(SettingsPatch { retry_gaps_hours: Some(vec![0]), ..SettingsPatch::default() }).is_err()
        );
    }

    fn failed_once(direction: crate::plan::Direction) -> crate::invoice::Invoice {
        let at = chrono::DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z").unwrap().to_utc();
        let currency = crate::money::Currency::parse("usd", "currency").unwrap();
        let mut inv = crate::invoice::test_draft(direction, currency, at);
        inv.attempt_count = 1;
        inv
    }

    #[test]
    fn a_closed_account_is_never_retried_and_payouts_follow_their_own_policy() {
        use crate::plan::Direction;
        let at = chrono::DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z").unwrap().to_utc();
        let settings = TenantSettings::default();
        let (debit, payout) = (failed_once(Direction::Debit), failed_once(Direction::Payout));
        // a permanent failure ends it, whatever either policy still allows
        assert_eq!(settings.next_attempt_at(&debit, "account_closed", at), None);
        assert_eq!(settings.next_attempt_at(&payout, "account_closed", at), None);
        // a transient one: a debit after 3 days (dunning), a payout after 1 day (payout policy)
        assert_eq!(settings.next_attempt_at(&debit, "processing_error", at), Some(at + chrono::Duration::days(3)));
        assert_eq!(settings.next_attempt_at(&payout, "processing_error", at), Some(at + chrono::Duration::days(1)));
        let patched = settings
            .patched(SettingsPatch { payout_retry_gaps_hours: Some(vec![6]), ..SettingsPatch::default() })
            .unwrap();
        assert_eq!(patched.next_attempt_at(&payout, "processing_error", at), Some(at + chrono::Duration::hours(6)));
        assert_eq!(patched.dunning, settings.dunning, "the debit policy is untouched");
        let bad = SettingsPatch { payout_retry_gaps_hours: Some(vec![0]), ..SettingsPatch::default() };
        assert!(matches!(settings.patched(bad), Err(DomainError::Invalid { code: "payout_retry_invalid", .. })));
    }
}
