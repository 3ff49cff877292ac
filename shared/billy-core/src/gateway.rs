//! The `PaymentGateway` port: how Billy asks a gateway to move money and how a gateway's webhook
//! becomes a verified, typed event. Adapters (sandbox, Stripe, ...) live in billy-aws.

use crate::money::Money;
use crate::payment_method::{Instrument, MethodType};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A request to move money, always with the idempotency key of its Billy transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyMovement {
    pub idempotency_key: String,
    pub amount: Money,
    pub instrument: Instrument,
    /// Billy's transaction id and scope key, sent as metadata and echoed back in the gateway's
    /// webhooks, so an outcome that overtakes the recording of its reference still finds its way.
    pub transaction: String,
    pub scope: String,
    pub description: String,
}

/// What the gateway said at once. Outcomes arrive later by webhook unless already final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum GatewayResponse {
    /// Accepted; the result will come by webhook.
    Accepted { reference: String },
    /// Refused at once (e.g. invalid instrument); final for this attempt.
    Declined { reference: Option<String>, code: String, message: String },
}

/// Why a call did not reach a decision: the router tries the next gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gateway unavailable: {0}")]
pub struct Unavailable(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayEventKind {
    ChargeSucceeded,
    ChargeFailed,
    RefundSucceeded,
    RefundFailed,
    DisputeOpened,
    DisputeWon,
    DisputeLost,
    PayoutPaid,
    PayoutFailed,
}

/// A webhook after its signature was verified, in Billy's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEvent {
    pub gateway: String,
    /// The gateway's own event id: the de-duplication key.
    pub id: String,
    pub kind: GatewayEventKind,
    /// The gateway's reference of the money movement it is about.
    pub reference: String,
    /// Billy's transaction id and scope key when the gateway echoes them.
    pub transaction: Option<String>,
    pub scope: Option<String>,
    pub amount: Option<i64>,
    pub failure_code: Option<String>,
    /// The gateway's event time: events apply in this order, not arrival order.
    pub occurred_at: DateTime<Utc>,
}

/// Why a webhook was refused (always a 4xx, nothing stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    #[error("missing or malformed signature header")]
    MissingSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("signature timestamp outside the tolerance window")]
    Stale,
    #[error("unreadable payload: {0}")]
    Payload(String),
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;
    fn supports(&self, method: MethodType) -> bool;
    async fn charge(&self, request: &MoneyMovement) -> Result<GatewayResponse, Unavailable>;
    async fn refund(&self, charge_reference: &str, request: &MoneyMovement) -> Result<GatewayResponse, Unavailable>;
    async fn payout(&self, request: &MoneyMovement) -> Result<GatewayResponse, Unavailable>;
    /// Voids an open attempt (an invoice canceled while its charge is pending).
    async fn cancel(&self, reference: &str, idempotency_key: &str) -> Result<GatewayResponse, Unavailable>;
    /// Verifies a webhook's signature (with its timestamp tolerance) and parses it.
    fn verify_webhook(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<GatewayEvent, WebhookRejection>;
}
