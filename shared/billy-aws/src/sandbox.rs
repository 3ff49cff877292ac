//! The sandbox gateway adapter: Billy's `PaymentGateway` port over the sandbox's HTTP API, and
//! verification of its signed webhooks.

use async_trait::async_trait;
use billy_core::gateway::{
    GatewayEvent, GatewayEventKind, GatewayResponse, MoneyMovement, PaymentGateway, Unavailable, WebhookRejection,
};
use billy_core::payment_method::{Instrument, MethodType};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;

pub const NAME: &str = "sandbox";
pub const SIGNATURE_HEADER: &str = "sandbox-signature";
/// Signatures older (or newer) than this are refused, so a captured webhook cannot be replayed.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone)]
pub struct SandboxGateway {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    webhook_secret: String,
}

impl SandboxGateway {
    pub fn new(base_url: &str, api_key: &str, webhook_secret: &str) -> Self {
        // A gateway call that takes longer than this is treated as unavailable (the router moves on,
        // or the step is retried with the same idempotency key).
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
        }
    }

    async fn post(&self, path: &str, m: &MoneyMovement) -> Result<GatewayResponse, Unavailable> {
        let instrument = match &m.instrument {
            Instrument::Card { token, last4 } => json!({"type": "card", "token": token, "last4": last4}),
            Instrument::BankAccount { account_number, last4 } => {
                json!({"type": "bank_account", "account_number": account_number, "last4": last4})
            }
            Instrument::Pix { key } => json!({"type": "pix", "key": key}),
        };
        let body = json!({
            "idempotency_key": m.idempotency_key,
            "amount": m.amount.amount,
            "currency": m.amount.currency.to_string(),
            "instrument": instrument,
            "transaction": m.transaction,
            "description": m.description,
            "metadata": {"billy_scope": m.scope, "billy_transaction": m.transaction},
        });
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| Unavailable(format!("sandbox unreachable: {e}")))?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| Unavailable(format!("sandbox answered garbage: {e}")))?;
        let reference = answer["id"].as_str().map(str::to_owned);
        match status.as_u16() {
            200..=299 => Ok(GatewayResponse::Accepted {
                reference: reference.ok_or_else(|| Unavailable("no id in answer".into()))?,
            }),
            402 => Ok(GatewayResponse::Declined {
                reference,
                code: answer["failure_code"].as_str().unwrap_or("declined").to_owned(),
                message: "declined by the sandbox".into(),
            }),
            // 5xx, throttling and anything unexpected: not a decision.
            _ => Err(Unavailable(format!("sandbox answered {status}: {answer}"))),
        }
    }
}

#[async_trait]
impl PaymentGateway for SandboxGateway {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, _method: MethodType) -> bool {
        true
    }

    async fn charge(&self, request: &MoneyMovement) -> Result<GatewayResponse, Unavailable> {
        self.post("/v1/charges", request).await
    }

    async fn refund(&self, _charge_reference: &str, _request: &MoneyMovement) -> Result<GatewayResponse, Unavailable> {
        Err(Unavailable("the sandbox does not take refunds yet".into()))
    }

    async fn payout(&self, request: &MoneyMovement) -> Result<GatewayResponse, Unavailable> {
        self.post("/v1/payouts", request).await
    }

    async fn cancel(&self, _reference: &str, _idempotency_key: &str) -> Result<GatewayResponse, Unavailable> {
        Err(Unavailable("the sandbox does not void attempts yet".into()))
    }

    fn verify_webhook(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<GatewayEvent, WebhookRejection> {
        let header = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(SIGNATURE_HEADER))
            .map(|(_, v)| v.as_str())
            .ok_or(WebhookRejection::MissingSignature)?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
                Some(("v1", s)) => signatures.push(hex::decode(s).map_err(|_| WebhookRejection::MissingSignature)?),
                _ => {}
            }
        }
        let t = timestamp.ok_or(WebhookRejection::MissingSignature)?;
        if signatures.is_empty() {
            return Err(WebhookRejection::MissingSignature);
        }
        if (now.timestamp() - t).abs() > TOLERANCE_SECS {
            return Err(WebhookRejection::Stale);
        }
        let valid = signatures.iter().any(|sig| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.webhook_secret.as_bytes()) else { return false };
            mac.update(format!("{t}.").as_bytes());
            mac.update(body);
            // Constant-time comparison.
            mac.verify_slice(sig).is_ok()
        });
        if !valid {
            return Err(WebhookRejection::BadSignature);
        }
        parse_event(body)
    }
}

fn parse_event(body: &[u8]) -> Result<GatewayEvent, WebhookRejection> {
    let bad = |m: &str| WebhookRejection::Payload(m.to_owned());
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let kind = match v["type"].as_str().ok_or_else(|| bad("no type"))? {
        "charge.succeeded" => GatewayEventKind::ChargeSucceeded,
        "charge.failed" => GatewayEventKind::ChargeFailed,
        "charge.dispute.created" => GatewayEventKind::DisputeOpened,
        "charge.dispute.won" => GatewayEventKind::DisputeWon,
        "charge.dispute.lost" => GatewayEventKind::DisputeLost,
        "refund.succeeded" => GatewayEventKind::RefundSucceeded,
        "refund.failed" => GatewayEventKind::RefundFailed,
        "payout.paid" => GatewayEventKind::PayoutPaid,
        "payout.failed" => GatewayEventKind::PayoutFailed,
        other => return Err(bad(&format!("unknown event type {other}"))),
    };
    let object = &v["data"]["object"];
    Ok(GatewayEvent {
        gateway: NAME.to_owned(),
        id: v["id"].as_str().ok_or_else(|| bad("no id"))?.to_owned(),
        kind,
        reference: object["id"].as_str().ok_or_else(|| bad("no object id"))?.to_owned(),
        transaction: object["metadata"]["billy_transaction"].as_str().map(str::to_owned),
        scope: object["metadata"]["billy_scope"].as_str().map(str::to_owned),
        amount: object["amount"].as_i64(),
        failure_code: object["failure_code"].as_str().map(str::to_owned),
        occurred_at: v["created"]
            .as_str()
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| bad("no created time"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, t: i64, body: &str) -> Vec<(String, String)> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        vec![("Sandbox-Signature".into(), format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes())))]
    }

    const BODY: &str = r#"{"id":"evt_1","type":"charge.failed","created":"2026-01-01T00:00:00.000001Z","data":{"object":{"id":"ch_1","transaction":"txn_1","amount":1000,"currency":"usd","failure_code":"card_declined"}}}"#;

    #[test]
    fn a_correctly_signed_fresh_webhook_is_parsed() {
        let gw = SandboxGateway::new("http://127.0.0.1:1", "k", "whsec");
        let now = Utc::now();
        let event = gw.verify_webhook(&signed("whsec", now.timestamp(), BODY), BODY.as_bytes(), now).unwrap();
        assert_eq!(
            (event.id.as_str(), event.kind, event.reference.as_str()),
            ("evt_1", GatewayEventKind::ChargeFailed, "ch_1")
        );
        assert_eq!(event.failure_code.as_deref(), Some("card_declined"));
    }

    #[test]
    fn forged_stale_and_unsigned_webhooks_are_rejected() {
        let gw = SandboxGateway::new("http://127.0.0.1:1", "k", "whsec");
        let now = Utc::now();
        let t = now.timestamp();
        assert_eq!(
            gw.verify_webhook(&signed("other", t, BODY), BODY.as_bytes(), now),
            Err(WebhookRejection::BadSignature)
        );
        let tampered = BODY.replace("card_declined", "approved!!!!!");
        assert_eq!(
            gw.verify_webhook(&signed("whsec", t, BODY), tampered.as_bytes(), now),
            Err(WebhookRejection::BadSignature)
        );
        assert_eq!(
            gw.verify_webhook(&signed("whsec", t - 301, BODY), BODY.as_bytes(), now),
            Err(WebhookRejection::Stale)
        );
        assert_eq!(gw.verify_webhook(&[], BODY.as_bytes(), now), Err(WebhookRejection::MissingSignature));
    }
}
