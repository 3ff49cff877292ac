//! A tenant's settings: the refund window, the dunning policy and the gateway routing rules, with
//! defaults for a tenant that set nothing. One item per tenant and mode, versioned like any entity.

use crate::dunning::DunningPolicy;
use crate::gateway::GatewayRegistry;
use crate::invoice::RefundPolicy;
use crate::payment_method::RoutingTable;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    #[serde(default)]
    pub refund: RefundPolicy,
    #[serde(default)]
    pub dunning: DunningPolicy,
    /// `None`: charges try the deployment's gateways in their registration order.
    #[serde(default)]
    pub routing: Option<RoutingTable>,
    /// 0 for a tenant that never saved settings.
    #[serde(default)]
    pub version: u64,
}

impl TenantSettings {
    /// The routing rules charges follow: the tenant's own, else every registered gateway in order.
    pub fn routing(&self, gateways: &GatewayRegistry) -> RoutingTable {
        self.routing.clone().unwrap_or_else(|| RoutingTable::in_order(&gateways.names()))
    }
}
