//! The `PaymentGateway` port: how Billy asks a gateway to move money, how a gateway's webhook
//! becomes a verified, typed event, and the registry that holds a deployment's gateways by name.
//! Adapters (sandbox, Stripe, Adyen) live in billy-aws.
//!
//! A failed call is one of two kinds, never confused: **not sent** (nothing reached the gateway,
//! or the gateway documents that nothing was processed) may fail over to another gateway;
//! **outcome unknown** (a timeout after sending, a 5xx) leaves the transaction `unknown` until the
//! gateway's webhook or a look-up settles it, and is never sent anywhere again.

use crate::money::Money;
use crate::payment_method::{MethodDetails, MethodType, SensitiveNumber, Vaulted};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A request to move money, always with the idempotency key of its Billy transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyMovement {
    pub idempotency_key: String,
    pub amount: Money,
    pub method_type: MethodType,
    /// The gateway's own token for the payment method (or payout destination).
    pub token: String,
    /// Billy's transaction id and scope key, sent as metadata and echoed back in the gateway's
    /// webhooks, so an outcome that overtakes the recording of its reference still finds its way,
    /// and an unknown outcome can be looked up.
    pub transaction: String,
    pub scope: String,
    pub description: String,
    /// The gateway's own customer the token belongs to, where it has one.
    #[serde(default)]
    pub customer: Option<String>,
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

/// Why a call reached no decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Nothing was processed: the router may try the next gateway that holds a token.
    #[error("gateway not reached: {0}")]
    NotSent(String),
    /// The request may have been processed: never sent again, anywhere; settled by the gateway's
    /// webhook or by a look-up.
    #[error("gateway outcome unknown: {0}")]
    Unknown(String),
}

/// What a gateway knows of one of Billy's transactions, found by Billy's transaction id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LookupResult {
    /// The gateway has no record of it: the request never arrived.
    NotFound,
    /// Still processing.
    Pending {
        reference: String,
    },
    Succeeded {
        reference: String,
    },
    Failed {
        reference: String,
        code: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayEventKind {
    ChargeSucceeded,
    ChargeFailed,
    /// An open charge was voided (an invoice canceled while its charge was in flight).
    ChargeCanceled,
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
    /// For a webhook to a tenant's own account: that tenant's scope key, which the event may not
    /// leave (an event about another tenant's transaction is refused).
    #[serde(default)]
    pub account_scope: Option<String>,
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

impl WebhookRejection {
    /// The stable API error code of each rejection.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingSignature => "signature_missing",
            Self::BadSignature => "signature_invalid",
            Self::Stale => "signature_stale",
            Self::Payload(_) => "payload_invalid",
        }
    }
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;
    fn supports(&self, method: MethodType) -> bool;
    async fn charge(&self, request: &MoneyMovement) -> Result<GatewayResponse, GatewayError>;
    async fn refund(&self, charge_reference: &str, request: &MoneyMovement) -> Result<GatewayResponse, GatewayError>;
    async fn payout(&self, request: &MoneyMovement) -> Result<GatewayResponse, GatewayError>;
    /// Voids an open attempt (an invoice canceled while its charge is pending). A charge that
    /// already succeeded cannot be voided: the answer is `Declined` (code `charge_already_succeeded`).
    async fn cancel(&self, reference: &str, idempotency_key: &str) -> Result<GatewayResponse, GatewayError>;
    /// Whether every event this gateway sends about a movement names Billy's transaction and
    /// scope (metadata it echoes back, disputes included). Then nothing maps its references back
    /// to transactions: events are located by the ids they carry.
    fn echoes_billy_ids(&self) -> bool {
        false
    }
    /// Whether a merchant can open a dispute here. Only the sandbox can (it plays the card
    /// network); with a real gateway, disputes arrive by webhook from the cardholder's bank.
    fn opens_disputes(&self) -> bool {
        false
    }
    /// Opens a dispute on a succeeded charge (the sandbox only); its outcome arrives by webhook.
    async fn open_dispute(&self, _charge_reference: &str, _reason: &str) -> Result<(), GatewayError> {
        Err(GatewayError::NotSent(format!("{} does not let merchants open disputes", self.name())))
    }
    /// Finds what became of one of Billy's movements, by Billy's transaction id (which every
    /// request carries as metadata) or its idempotency key: how an `unknown` outcome is settled
    /// without ever sending the request again.
    async fn lookup(&self, transaction: &str, idempotency_key: &str) -> Result<LookupResult, GatewayError>;
    /// Exchanges a test number for the gateway's token (the sandbox does; real gateways take
    /// numbers only on the client side and refuse).
    async fn vault(&self, kind: MethodType, number: &SensitiveNumber) -> Result<Vaulted, GatewayError>;
    /// What the gateway shows of a token it issued (last four digits, brand, fingerprint);
    /// `None` for a token it does not know.
    /// `customer` is the gateway's own customer the token belongs to, where it has one.
    async fn describe(
        &self,
        kind: MethodType,
        token: &str,
        customer: Option<&str>,
    ) -> Result<Option<MethodDetails>, GatewayError>;
    /// What the gateway expects as the body of a successful webhook answer.
    fn webhook_answer(&self) -> &'static str {
        r#"{"received":true}"#
    }
    /// Verifies a webhook's signature (with its timestamp tolerance) and parses it. A body may
    /// carry several events (Adyen batches its notifications); every one is verified. Events the
    /// gateway sends that Billy does not act on parse to nothing (and are acknowledged).
    fn verify_webhook(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Vec<GatewayEvent>, WebhookRejection>;
}

/// The gateways a function may call, by name. A new gateway is one registration here.
#[derive(Debug, Clone, Default)]
pub struct GatewayRegistry {
    by_name: BTreeMap<String, Arc<dyn PaymentGateway>>,
    /// Registration order: the routing order for tenants without rules of their own.
    order: Vec<String>,
}

impl GatewayRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a gateway under its own name (a later registration of the same name replaces it).
    pub fn register(&mut self, gateway: Arc<dyn PaymentGateway>) {
        let name = gateway.name().to_owned();
        if !self.order.contains(&name) {
            self.order.push(name.clone());
        }
        self.by_name.insert(name, gateway);
    }

    pub fn get(&self, name: &str) -> Option<&dyn PaymentGateway> {
        self.by_name.get(name).map(|g| g.as_ref())
    }

    pub fn shared(&self, name: &str) -> Option<Arc<dyn PaymentGateway>> {
        self.by_name.get(name).cloned()
    }

    /// Names in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.order.iter().map(String::as_str).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
