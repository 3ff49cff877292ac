//! Adyen: Billy's `PaymentGateway` port over Adyen's Checkout API (payments with stored payment
//! methods, `ContAuth` / `Subscription`; refunds and cancels on a payment's pspReference, each with
//! an `Idempotency-Key`) and Adyen's notification webhooks, where every item's HMAC is checked
//! (not only the first, as Adyen's own library does) before any is accepted. Pix goes through
//! Adyen in BRL.

use crate::sandbox::{status_error, transport_error};
use async_trait::async_trait;
use base64::Engine as _;
use billy_core::gateway::{
    GatewayError, GatewayEvent, GatewayEventKind, GatewayResponse, LookupResult, MoneyMovement, PaymentGateway,
    WebhookRejection,
};
use billy_core::payment_method::{MethodDetails, MethodType, SensitiveNumber, Vaulted};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;

pub const NAME: &str = "adyen";
/// Adyen's test Checkout API; live accounts have their own prefix (`ADYEN_API_BASE`).
pub const DEFAULT_API_BASE: &str = "https://checkout-test.adyen.com/v72";
/// Adyen retries a notification for days; older (or far-future) ones are refused as replays.
const MAX_AGE_DAYS: i64 = 30;
const MAX_AHEAD_MINUTES: i64 = 60;

#[derive(Debug, Clone)]
pub struct AdyenGateway {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    merchant_account: String,
    /// The notification HMAC key, hex-decoded.
    hmac_key: Vec<u8>,
}

/// The HMAC of one notification item: HMAC-SHA256(key, pspReference:originalReference:
/// merchantAccountCode:merchantReference:value:currency:eventCode:success), missing fields empty.
fn item_mac(item: &Value, key: &[u8]) -> Option<Hmac<Sha256>> {
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let signed = [
        text(&item["pspReference"]),
        text(&item["originalReference"]),
        text(&item["merchantAccountCode"]),
        text(&item["merchantReference"]),
        text(&item["amount"]["value"]),
        text(&item["amount"]["currency"]),
        text(&item["eventCode"]),
        text(&item["success"]),
    ]
    .join(":");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(signed.as_bytes());
    Some(mac)
}

/// An item's signature as Adyen puts it in `additionalData.hmacSignature` (base64).
pub fn item_signature(item: &Value, key: &[u8]) -> Option<String> {
    Some(base64::engine::general_purpose::STANDARD.encode(item_mac(item, key)?.finalize().into_bytes()))
}

impl AdyenGateway {
    pub fn new(base_url: &str, api_key: &str, merchant_account: &str, hmac_key_hex: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            merchant_account: merchant_account.to_owned(),
            hmac_key: hex::decode(hmac_key_hex).unwrap_or_default(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, Value), GatewayError> {
        let response =
            request.header("x-api-key", &self.api_key).send().await.map_err(|e| transport_error(NAME, &e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| transport_error(NAME, &e))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(answer) => Ok((status, answer)),
            Err(_) => Err(status_error(NAME, status, &text)),
        }
    }

    async fn post(&self, path: &str, key: &str, body: &Value) -> Result<(StatusCode, Value), GatewayError> {
        // Adyen takes idempotency keys of at most 64 characters.
        let key: String = key.chars().take(64).collect();
        self.send(self.http.post(format!("{}{path}", self.base_url)).header("Idempotency-Key", key).json(body)).await
    }

    fn amount(m: &MoneyMovement) -> Value {
        json!({"value": m.amount.amount, "currency": m.amount.currency.to_string().to_uppercase()})
    }

    fn metadata(m: &MoneyMovement) -> Value {
        json!({"billy_transaction": m.transaction, "billy_scope": m.scope})
    }

    /// A modification (refund, cancel) answers 201 `received`; the outcome comes by notification.
    fn modification(status: StatusCode, answer: &Value) -> Result<GatewayResponse, GatewayError> {
        match status.as_u16() {
            200 | 201 => Ok(GatewayResponse::Accepted {
                reference: answer["pspReference"]
                    .as_str()
                    .ok_or_else(|| GatewayError::Unknown("adyen answered without a pspReference".into()))?
                    .to_owned(),
            }),
            422 => Ok(GatewayResponse::Declined {
                reference: None,
                code: answer["errorCode"].as_str().map_or_else(|| "refused".to_owned(), |c| format!("adyen_{c}")),
                message: answer["message"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => Err(status_error(NAME, status, &answer.to_string())),
        }
    }
}

#[async_trait]
impl PaymentGateway for AdyenGateway {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, method: MethodType) -> bool {
        matches!(method, MethodType::Card | MethodType::Pix)
    }

    async fn charge(&self, m: &MoneyMovement) -> Result<GatewayResponse, GatewayError> {
        let method = match m.method_type {
            MethodType::Pix => json!({"type": "pix", "storedPaymentMethodId": m.token}),
            _ => json!({"type": "scheme", "storedPaymentMethodId": m.token}),
        };
        let body = json!({
            "amount": Self::amount(m),
            "merchantAccount": self.merchant_account,
            "reference": m.transaction,
            "paymentMethod": method,
            "shopperReference": m.customer,
            "shopperInteraction": "ContAuth",
            "recurringProcessingModel": "Subscription",
            "metadata": Self::metadata(m),
        });
        let (status, answer) = self.post("/payments", &m.idempotency_key, &body).await?;
        if !status.is_success() {
            return Err(status_error(NAME, status, &answer.to_string()));
        }
        let reference = answer["pspReference"].as_str().map(str::to_owned);
        match answer["resultCode"].as_str() {
            Some("Authorised" | "Pending" | "Received") => Ok(GatewayResponse::Accepted {
                reference: reference
                    .ok_or_else(|| GatewayError::Unknown("adyen accepted without a pspReference".into()))?,
            }),
            Some("Refused" | "Cancelled") => Ok(GatewayResponse::Declined {
                reference,
                code: answer["refusalReasonCode"]
                    .as_str()
                    .and_then(|c| c.parse::<u32>().ok())
                    .map_or("card_declined", refusal_code)
                    .to_owned(),
                message: answer["refusalReason"].as_str().unwrap_or_default().to_owned(),
            }),
            // `Error`: processing broke at Adyen's side; whether money moved is not known.
            other => Err(GatewayError::Unknown(format!("adyen resultCode {other:?}"))),
        }
    }

    async fn refund(&self, charge_reference: &str, m: &MoneyMovement) -> Result<GatewayResponse, GatewayError> {
        let body =
            json!({"amount": Self::amount(m), "merchantAccount": self.merchant_account, "reference": m.transaction});
        let (status, answer) =
            self.post(&format!("/payments/{charge_reference}/refunds"), &m.idempotency_key, &body).await?;
        Self::modification(status, &answer)
    }

    async fn payout(&self, _m: &MoneyMovement) -> Result<GatewayResponse, GatewayError> {
        Err(GatewayError::NotSent("payouts through Adyen need its Payouts API, which Billy does not use yet".into()))
    }

    async fn cancel(&self, reference: &str, idempotency_key: &str) -> Result<GatewayResponse, GatewayError> {
        let body = json!({"merchantAccount": self.merchant_account, "reference": idempotency_key});
        let (status, answer) = self.post(&format!("/payments/{reference}/cancels"), idempotency_key, &body).await?;
        match Self::modification(status, &answer)? {
            // The cancel is a modification of its own: the payment's reference stays what matters.
            GatewayResponse::Accepted { .. } => Ok(GatewayResponse::Accepted { reference: reference.to_owned() }),
            GatewayResponse::Declined { message, .. } => Ok(GatewayResponse::Declined {
                reference: Some(reference.to_owned()),
                code: "charge_already_succeeded".into(),
                message,
            }),
        }
    }

    async fn lookup(&self, _transaction: &str, _idempotency_key: &str) -> Result<LookupResult, GatewayError> {
        // Adyen's Checkout API has no look-up by merchant reference: its notification (retried by
        // Adyen for days) settles an unknown outcome.
        Err(GatewayError::NotSent("adyen has no look-up by reference; waiting for its notification".into()))
    }

    async fn vault(&self, _kind: MethodType, _number: &SensitiveNumber) -> Result<Vaulted, GatewayError> {
        Err(GatewayError::NotSent("Adyen takes card numbers on the client only (its drop-in)".into()))
    }

    async fn describe(
        &self,
        kind: MethodType,
        token: &str,
        customer: Option<&str>,
    ) -> Result<Option<MethodDetails>, GatewayError> {
        let Some(shopper) = customer else {
            return Err(GatewayError::NotSent("an Adyen token needs its shopper reference as `customer`".into()));
        };
        let url = format!("{}/storedPaymentMethods", self.base_url);
        let query = [("merchantAccount", self.merchant_account.as_str()), ("shopperReference", shopper)];
        let (status, answer) = self.send(self.http.get(url).query(&query)).await?;
        if !status.is_success() {
            return Err(status_error(NAME, status, &answer.to_string()));
        }
        let wanted = if kind == MethodType::Pix { "pix" } else { "scheme" };
        let found = answer["storedPaymentMethods"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["id"] == token && m["type"] == wanted);
        Ok(found.map(|m| MethodDetails {
            brand: m["brand"].as_str().map(str::to_owned),
            last4: m["lastFour"].as_str().unwrap_or_default().to_owned(),
            exp_month: m["expiryMonth"].as_str().and_then(|v| v.parse().ok()),
            exp_year: m["expiryYear"].as_str().and_then(|v| v.parse().ok()),
            fingerprint: None,
        }))
    }

    fn webhook_answer(&self) -> &'static str {
        "[accepted]"
    }

    fn verify_webhook(
        &self,
        _headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Vec<GatewayEvent>, WebhookRejection> {
        let bad = |m: &str| WebhookRejection::Payload(m.to_owned());
        let v: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
        let items =
            v["notificationItems"].as_array().filter(|i| !i.is_empty()).ok_or_else(|| bad("no notificationItems"))?;
        let mut events = Vec::new();
        // Every item is verified before any is taken: one forged item refuses the whole body.
        for wrapper in items {
            let item = &wrapper["NotificationRequestItem"];
            let given = item["additionalData"]["hmacSignature"].as_str().ok_or(WebhookRejection::MissingSignature)?;
            let given =
                base64::engine::general_purpose::STANDARD.decode(given).map_err(|_| WebhookRejection::BadSignature)?;
            // `verify_slice` compares in constant time.
            item_mac(item, &self.hmac_key)
                .ok_or(WebhookRejection::BadSignature)?
                .verify_slice(&given)
                .map_err(|_| WebhookRejection::BadSignature)?;
        }
        for wrapper in items {
            let item = &wrapper["NotificationRequestItem"];
            let occurred_at = item["eventDate"]
                .as_str()
                .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                .map(|d| d.with_timezone(&Utc))
                .ok_or_else(|| bad("no eventDate"))?;
            if occurred_at < now - ChronoDuration::days(MAX_AGE_DAYS)
                || occurred_at > now + ChronoDuration::minutes(MAX_AHEAD_MINUTES)
            {
                return Err(WebhookRejection::Stale);
            }
            events.extend(parse_item(item, occurred_at));
        }
        Ok(events)
    }
}

/// Adyen's refusal reason codes, in the words Billy's other gateways use.
fn refusal_code(code: u32) -> &'static str {
    match code {
        5 | 7 => "card_declined",
        6 => "expired_card",
        12 => "insufficient_funds",
        20 => "fraudulent",
        _ => "card_declined",
    }
}

fn parse_item(item: &Value, occurred_at: DateTime<Utc>) -> Option<GatewayEvent> {
    let success = item["success"] == "true";
    let psp = item["pspReference"].as_str().unwrap_or_default();
    let original = item["originalReference"].as_str().unwrap_or_default();
    let (kind, reference) = match (item["eventCode"].as_str()?, success) {
        ("AUTHORISATION", true) => (GatewayEventKind::ChargeSucceeded, psp),
        ("AUTHORISATION", false) => (GatewayEventKind::ChargeFailed, psp),
        ("REFUND", true) => (GatewayEventKind::RefundSucceeded, psp),
        ("REFUND" | "REFUND_FAILED", _) => (GatewayEventKind::RefundFailed, psp),
        ("CANCELLATION", true) => (GatewayEventKind::ChargeCanceled, original),
        ("NOTIFICATION_OF_CHARGEBACK", _) => (GatewayEventKind::DisputeOpened, original),
        ("CHARGEBACK", _) => (GatewayEventKind::DisputeLost, original),
        ("CHARGEBACK_REVERSED", _) => (GatewayEventKind::DisputeWon, original),
        _ => return None,
    };
    let extra = &item["additionalData"];
    let metadata = |key: &str| extra[format!("metadata.{key}")].as_str().map(str::to_owned);
    let failure = (!success).then(|| item["reason"].as_str().unwrap_or("refused").to_lowercase().replace(' ', "_"));
    Some(GatewayEvent {
        gateway: NAME.to_owned(),
        // Adyen's de-duplication key: one event per (pspReference, eventCode, success).
        id: format!(
            "{psp}:{}:{}",
            item["eventCode"].as_str().unwrap_or_default(),
            item["success"].as_str().unwrap_or_default()
        ),
        kind,
        reference: reference.to_owned(),
        transaction: item["merchantReference"]
            .as_str()
            .map(str::to_owned)
            .filter(|r| r.starts_with("txn_"))
            .or_else(|| metadata("billy_transaction")),
        scope: metadata("billy_scope"),
        amount: item["amount"]["value"].as_i64(),
        failure_code: failure,
        account_scope: None,
        occurred_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";

    #[test]
    fn the_signature_matches_adyens_own_known_answer() {
        // From the Adyen library's tests (and shared/GATEWAYS.md).
        let item = json!({
            "pspReference": "7914073381342284", "merchantAccountCode": "TestMerchant",
            "merchantReference": "TestPayment-1407325143704", "amount": {"value": 1130, "currency": "EUR"},
            "eventCode": "AUTHORISATION", "success": "true",
        });
        assert_eq!(
            item_signature(&item, &hex::decode(KEY).unwrap()).unwrap(),
            "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="
        );
    }

    fn body(items: &[Value]) -> String {
        json!({"live": "false", "notificationItems": items.iter().map(|i| json!({"NotificationRequestItem": i})).collect::<Vec<_>>()}).to_string()
    }

    fn signed(mut item: Value, key: &str) -> Value {
        let signature = item_signature(&item, &hex::decode(key).unwrap()).unwrap();
        item["additionalData"]["hmacSignature"] = json!(signature);
        item
    }

    fn item(code: &str, success: &str, at: DateTime<Utc>) -> Value {
        json!({"pspReference": "psp_2", "originalReference": "psp_1", "merchantAccountCode": "M", "merchantReference": "txn_1",
            "amount": {"value": 500, "currency": "BRL"}, "eventCode": code, "success": success,
            "eventDate": at.to_rfc3339(), "additionalData": {"metadata.billy_scope": "s"}})
    }

    #[test]
    fn every_item_must_be_signed_and_fresh() {
        let gw = AdyenGateway::new("http://127.0.0.1:1", "k", "M", KEY, Duration::from_secs(1));
        let now = Utc::now();
        let good = signed(item("REFUND", "true", now), KEY);
        let events = gw.verify_webhook(&[], body(std::slice::from_ref(&good)).as_bytes(), now).unwrap();
        assert_eq!(
            (events[0].kind, events[0].reference.as_str(), events[0].scope.as_deref()),
            (GatewayEventKind::RefundSucceeded, "psp_2", Some("s"))
        );
        // a second item signed with another key refuses the whole body (Adyen's library checks only the first)
        let other_key = "00".repeat(32);
        let forged = signed(item("AUTHORISATION", "true", now), &other_key);
        assert_eq!(
            gw.verify_webhook(&[], body(&[good.clone(), forged]).as_bytes(), now).map(|_| ()),
            Err(WebhookRejection::BadSignature)
        );
        let mut tampered = good.clone();
        tampered["amount"]["value"] = json!(5000);
        assert_eq!(
            gw.verify_webhook(&[], body(&[tampered]).as_bytes(), now).map(|_| ()),
            Err(WebhookRejection::BadSignature)
        );
        let old = signed(item("REFUND", "true", now - ChronoDuration::days(31)), KEY);
        assert_eq!(gw.verify_webhook(&[], body(&[old]).as_bytes(), now).map(|_| ()), Err(WebhookRejection::Stale));
        let ahead = signed(item("REFUND", "true", now + ChronoDuration::hours(2)), KEY);
        assert_eq!(gw.verify_webhook(&[], body(&[ahead]).as_bytes(), now).map(|_| ()), Err(WebhookRejection::Stale));
        let mut unsigned = item("REFUND", "true", now);
        unsigned["additionalData"] = json!({});
        assert_eq!(
            gw.verify_webhook(&[], body(&[unsigned]).as_bytes(), now).map(|_| ()),
            Err(WebhookRejection::MissingSignature)
        );
    }

    #[test]
    fn notifications_map_to_billys_events() {
        let now = Utc::now();
        let event =
            |code: &str, success: &str| parse_item(&item(code, success, now), now).map(|e| (e.kind, e.reference));
        assert_eq!(event("AUTHORISATION", "true"), Some((GatewayEventKind::ChargeSucceeded, "psp_2".into())));
        assert_eq!(event("AUTHORISATION", "false"), Some((GatewayEventKind::ChargeFailed, "psp_2".into())));
        assert_eq!(event("CANCELLATION", "true"), Some((GatewayEventKind::ChargeCanceled, "psp_1".into())));
        assert_eq!(event("CHARGEBACK", "true"), Some((GatewayEventKind::DisputeLost, "psp_1".into())));
        assert_eq!(event("REPORT_AVAILABLE", "true"), None);
    }
}
