//! A tenant's settings: the refund window, the dunning policy and the gateway routing rules, with
//! defaults for a tenant that set nothing. One item per tenant and mode, versioned and journaled
//! like any entity, and read afresh by every step that needs them, so a change applies to the
//! very next request.

use crate::dunning::{DunningPolicy, FinalAction, PayoutRetryPolicy, is_permanent};
use crate::error::{DomainError, DomainResult};
use crate::gateway::GatewayRegistry;
use crate::invoice::RefundPolicy;
use crate::routing::RoutingTable;
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
}
