//! The sandbox gateway adapter: Billy's `PaymentGateway` port over the sandbox's HTTP API (which
//! vaults test numbers and charges its own tokens), and verification of its signed webhooks.
//!
//! Failures are sorted the way every adapter must sort them: a refused connection or a 4xx answer
//! (the sandbox processed nothing) is *not sent*; a timeout after sending, a 5xx or an unreadable
//! answer is *outcome unknown*.

use async_trait::async_trait;
use billy_core::gateway::{
    GatewayError, GatewayEvent, GatewayEventKind, GatewayResponse, LookupResult, MoneyMovement, PaymentGateway,
    WebhookRejection,
};
use billy_core::payment_method::{MethodDetails, MethodType, SensitiveNumber, Vaulted};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;

pub const NAME: &str = "sandbox";
pub const SIGNATURE_HEADER: &str = "sandbox-signature";
/// Signatures older (or newer) than this are refused, so a captured webhook cannot be replayed.
pub const TOLERANCE_SECS: i64 = 300;
/// A call that takes longer than this has an unknown outcome (it may have been processed).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SandboxGateway {
    http: reqwest::Client,
    name: String,
    base_url: String,
    api_key: String,
    webhook_secret: String,
}

/// Sorts a transport error: nothing left this process (connection refused, DNS) or it may have
/// arrived (a timeout once connected, a broken answer).
pub fn transport_error(gateway: &str, e: &reqwest::Error) -> GatewayError {
    if e.is_connect() || e.is_builder() {
        GatewayError::NotSent(format!("{gateway} unreachable: {e}"))
    } else {
        GatewayError::Unknown(format!("{gateway} did not answer in time: {e}"))
    }
}

/// Sorts an HTTP status that is not an answer the caller understood: a 4xx is a documented
/// refusal before processing (not sent), a 5xx or anything else may have been processed.
pub fn status_error(gateway: &str, status: StatusCode, body: &str) -> GatewayError {
    let shown: String = body.chars().take(300).collect();
    if status.is_client_error() {
        GatewayError::NotSent(format!("{gateway} refused the request ({status}): {shown}"))
    } else {
        GatewayError::Unknown(format!("{gateway} answered {status}: {shown}"))
    }
}

impl SandboxGateway {
    pub fn new(base_url: &str, api_key: &str, webhook_secret: &str) -> Self {
        Self::named(NAME, base_url, api_key, webhook_secret, DEFAULT_TIMEOUT)
    }

    /// A sandbox under another name (tests run two, to show failover) and timeout.
    pub fn named(name: &str, base_url: &str, api_key: &str, webhook_secret: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            http,
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
        }
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, Value), GatewayError> {
        let response = request.bearer_auth(&self.api_key).send().await.map_err(|e| transport_error(&self.name, &e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| transport_error(&self.name, &e))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(answer) => Ok((status, answer)),
            Err(_) => Err(status_error(&self.name, status, &text)),
        }
    }

    async fn movement(&self, path: &str, m: &MoneyMovement) -> Result<GatewayResponse, GatewayError> {
        let body = json!({
            "idempotency_key": m.idempotency_key,
            "amount": m.amount.amount,
            "currency": m.amount.currency.to_string(),
            "payment_method": {"type": m.method_type.as_str(), "token": m.token},
            "transaction": m.transaction,
            "description": m.description,
            "metadata": {"billy_scope": m.scope, "billy_transaction": m.transaction},
        });
        let (status, answer) = self.call(self.http.post(format!("{}{path}", self.base_url)).json(&body)).await?;
        let reference = answer["id"].as_str().map(str::to_owned);
        match status.as_u16() {
            200..=299 => Ok(GatewayResponse::Accepted {
                reference: reference
                    .ok_or_else(|| GatewayError::Unknown(format!("{} accepted without an id", self.name)))?,
            }),
            402 => Ok(GatewayResponse::Declined {
                reference,
                code: answer["failure_code"].as_str().unwrap_or("declined").to_owned(),
                message: "declined by the sandbox".into(),
            }),
            _ => Err(status_error(&self.name, status, &answer.to_string())),
        }
    }
}

fn details(answer: &Value) -> MethodDetails {
    MethodDetails {
        brand: answer["brand"].as_str().map(str::to_owned),
        last4: answer["last4"].as_str().unwrap_or_default().to_owned(),
        exp_month: answer["exp_month"].as_u64().and_then(|m| u8::try_from(m).ok()),
        exp_year: answer["exp_year"].as_u64().and_then(|y| u16::try_from(y).ok()),
        fingerprint: answer["fingerprint"].as_str().map(str::to_owned),
    }
}

#[async_trait]
impl PaymentGateway for SandboxGateway {
    fn name(&self) -> &str {
        &self.name
    }

    fn supports(&self, _method: MethodType) -> bool {
        true
    }

    async fn charge(&self, request: &MoneyMovement) -> Result<GatewayResponse, GatewayError> {
        self.movement("/v1/charges", request).await
    }

    async fn refund(&self, charge_reference: &str, m: &MoneyMovement) -> Result<GatewayResponse, GatewayError> {
        let body = json!({
            "idempotency_key": m.idempotency_key,
            "charge": charge_reference,
            "amount": m.amount.amount,
            "transaction": m.transaction,
            "metadata": {"billy_scope": m.scope, "billy_transaction": m.transaction},
        });
        let (status, answer) = self.call(self.http.post(format!("{}/v1/refunds", self.base_url)).json(&body)).await?;
        match status.as_u16() {
            200..=299 => Ok(GatewayResponse::Accepted {
                reference: answer["id"]
                    .as_str()
                    .ok_or_else(|| GatewayError::Unknown(format!("{} accepted without an id", self.name)))?
                    .to_owned(),
            }),
            // The sandbox refuses a refund it can never make (over the amount charged, say).
            400 => Ok(GatewayResponse::Declined {
                reference: None,
                code: answer["error"]["code"].as_str().unwrap_or("refund_refused").to_owned(),
                message: answer["error"]["message"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => Err(status_error(&self.name, status, &answer.to_string())),
        }
    }

    async fn payout(&self, request: &MoneyMovement) -> Result<GatewayResponse, GatewayError> {
        self.movement("/v1/payouts", request).await
    }

    async fn cancel(&self, reference: &str, _idempotency_key: &str) -> Result<GatewayResponse, GatewayError> {
        let url = format!("{}/v1/charges/{}/cancel", self.base_url, urlencode(reference));
        let (status, answer) = self.call(self.http.post(url)).await?;
        match status.as_u16() {
            200..=299 => Ok(GatewayResponse::Accepted { reference: reference.to_owned() }),
            409 => Ok(GatewayResponse::Declined {
                reference: Some(reference.to_owned()),
                code: answer["error"]["code"].as_str().unwrap_or("void_refused").to_owned(),
                message: answer["error"]["message"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => Err(status_error(&self.name, status, &answer.to_string())),
        }
    }

    fn opens_disputes(&self) -> bool {
        true
    }

    /// Every event carries the movement's object, metadata included (disputes carry the charge).
    fn echoes_billy_ids(&self) -> bool {
        true
    }

    async fn open_dispute(&self, charge_reference: &str, reason: &str) -> Result<(), GatewayError> {
        let body = json!({"charge": charge_reference, "reason": reason});
        let (status, answer) = self.call(self.http.post(format!("{}/v1/disputes", self.base_url)).json(&body)).await?;
        if status.is_success() { Ok(()) } else { Err(status_error(&self.name, status, &answer.to_string())) }
    }

    async fn lookup(&self, transaction: &str, _idempotency_key: &str) -> Result<LookupResult, GatewayError> {
        let url = format!("{}/v1/movements", self.base_url);
        let (status, answer) = self.call(self.http.get(url).query(&[("transaction", transaction)])).await?;
        let reference = answer["id"].as_str().unwrap_or_default().to_owned();
        match (status.as_u16(), answer["status"].as_str()) {
            (404, _) => Ok(LookupResult::NotFound),
            (200, Some("pending")) => Ok(LookupResult::Pending { reference }),
            (200, Some("succeeded" | "paid")) => Ok(LookupResult::Succeeded { reference }),
            (200, Some("failed")) => Ok(LookupResult::Failed {
                reference,
                code: answer["failure_code"].as_str().unwrap_or("failed").to_owned(),
            }),
            _ => Err(status_error(&self.name, status, &answer.to_string())),
        }
    }

    async fn vault(&self, kind: MethodType, number: &SensitiveNumber) -> Result<Vaulted, GatewayError> {
        let body = json!({"type": kind.as_str(), "number": number.expose()});
        let (status, answer) = self.call(self.http.post(format!("{}/v1/tokens", self.base_url)).json(&body)).await?;
        if !status.is_success() {
            return Err(status_error(&self.name, status, &answer.to_string()));
        }
        let token = answer["id"].as_str().ok_or_else(|| GatewayError::Unknown("vaulted without a token".into()))?;
        Ok(Vaulted { token: token.to_owned(), details: details(&answer) })
    }

    async fn describe(
        &self,
        kind: MethodType,
        token: &str,
        _customer: Option<&str>,
    ) -> Result<Option<MethodDetails>, GatewayError> {
        let url = format!("{}/v1/tokens/{}", self.base_url, urlencode(token));
        let (status, answer) = self.call(self.http.get(url)).await?;
        match status.as_u16() {
            200 if answer["type"].as_str() == Some(kind.as_str()) => Ok(Some(details(&answer))),
            200 | 404 => Ok(None),
            _ => Err(status_error(&self.name, status, &answer.to_string())),
        }
    }

    fn verify_webhook(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Vec<GatewayEvent>, WebhookRejection> {
        let header = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(SIGNATURE_HEADER))
            .map(|(_, v)| v.as_str())
            .ok_or(WebhookRejection::MissingSignature)?;
        verify_signature(header, body, self.webhook_secret.as_bytes(), now)?;
        parse_event(&self.name, body).map(|e| vec![e])
    }
}

/// Percent-encodes a path segment (tokens are printable ASCII, but may hold `/` or `?`).
fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Verifies a `t=<unix>,v1=<hex>[,v1=...]` header (the sandbox's and Stripe's scheme): HMAC-SHA256
/// of `"<t>.<body>"` with `secret`, any `v1` may match (secret rotation), compared in constant
/// time; a timestamp more than the tolerance away from `now`, in the past or the future, is refused.
pub fn verify_signature(header: &str, body: &[u8], secret: &[u8], now: DateTime<Utc>) -> Result<(), WebhookRejection> {
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
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    });
    if valid { Ok(()) } else { Err(WebhookRejection::BadSignature) }
}

fn parse_event(gateway: &str, body: &[u8]) -> Result<GatewayEvent, WebhookRejection> {
    let bad = |m: &str| WebhookRejection::Payload(m.to_owned());
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let kind = match v["type"].as_str().ok_or_else(|| bad("no type"))? {
        "charge.succeeded" => GatewayEventKind::ChargeSucceeded,
        "charge.failed" => GatewayEventKind::ChargeFailed,
        "charge.canceled" => GatewayEventKind::ChargeCanceled,
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
        gateway: gateway.to_owned(),
        id: v["id"].as_str().ok_or_else(|| bad("no id"))?.to_owned(),
        kind,
        reference: object["id"].as_str().ok_or_else(|| bad("no object id"))?.to_owned(),
        transaction: object["metadata"]["billy_transaction"].as_str().map(str::to_owned),
        scope: object["metadata"]["billy_scope"].as_str().map(str::to_owned),
        amount: object["amount"].as_i64(),
        failure_code: object["failure_code"].as_str().map(str::to_owned),
        account_scope: None,
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
        let events = gw.verify_webhook(&signed("whsec", now.timestamp(), BODY), BODY.as_bytes(), now).unwrap();
        let event = &events[0];
        assert_eq!(
            (event.id.as_str(), event.kind, event.reference.as_str()),
            ("evt_1", GatewayEventKind::ChargeFailed, "ch_1")
        );
        assert_eq!(event.failure_code.as_deref(), Some("card_declined"));
    }

    #[test]
    fn forged_stale_future_and_unsigned_webhooks_are_rejected() {
        let gw = SandboxGateway::new("http://127.0.0.1:1", "k", "whsec");
        let now = Utc::now();
        let t = now.timestamp();
        let verify = |headers: &[(String, String)], body: &str| gw.verify_webhook(headers, body.as_bytes(), now);
        assert_eq!(verify(&signed("other", t, BODY), BODY), Err(WebhookRejection::BadSignature));
        let tampered = BODY.replace("card_declined", "approved!!!!!");
        assert_eq!(verify(&signed("whsec", t, BODY), &tampered), Err(WebhookRejection::BadSignature));
        assert_eq!(verify(&signed("whsec", t - 301, BODY), BODY), Err(WebhookRejection::Stale));
        assert_eq!(verify(&signed("whsec", t + 301, BODY), BODY), Err(WebhookRejection::Stale));
        assert_eq!(verify(&[], BODY), Err(WebhookRejection::MissingSignature));
    }

    #[test]
    fn a_rotated_secret_verifies_when_any_signature_matches() {
        let now = Utc::now();
        let t = now.timestamp();
        let old = &signed("old", t, BODY)[0].1;
        let new = &signed("new", t, BODY)[0].1;
        let both = format!("{old},v1={}", new.rsplit("v1=").next().unwrap());
        assert_eq!(verify_signature(&both, BODY.as_bytes(), b"new", now), Ok(()));
        assert_eq!(verify_signature(&both, BODY.as_bytes(), b"old", now), Ok(()));
        assert_eq!(verify_signature(&both, BODY.as_bytes(), b"other", now), Err(WebhookRejection::BadSignature));
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent_and_nothing_else_is_assumed() {
        // A port nothing listens on (bound, then dropped).
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let gw = SandboxGateway::new(&format!("http://{addr}"), "k", "whsec");
        let m = MoneyMovement {
            idempotency_key: "k1".into(),
            amount: billy_core::money::Money::new(100, billy_core::money::Currency::parse("usd", "c").unwrap()),
            method_type: MethodType::Card,
            token: "tok_1".into(),
            transaction: "txn_1".into(),
            scope: "s".into(),
            description: "d".into(),
            customer: None,
        };
        assert!(matches!(gw.charge(&m).await, Err(GatewayError::NotSent(_))));
    }

    #[test]
    fn statuses_sort_into_not_sent_and_unknown() {
        assert!(matches!(status_error("g", StatusCode::BAD_REQUEST, ""), GatewayError::NotSent(_)));
        assert!(matches!(status_error("g", StatusCode::TOO_MANY_REQUESTS, ""), GatewayError::NotSent(_)));
        assert!(matches!(status_error("g", StatusCode::INTERNAL_SERVER_ERROR, ""), GatewayError::Unknown(_)));
        assert!(matches!(status_error("g", StatusCode::BAD_GATEWAY, ""), GatewayError::Unknown(_)));
    }
}
