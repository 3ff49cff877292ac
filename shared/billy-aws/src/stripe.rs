//! Stripe: Billy's `PaymentGateway` port over Stripe's API (PaymentIntents confirmed off session,
//! Refunds, cancellation, look-up by Billy's transaction id in the metadata) and Stripe's
//! webhooks, verified by `Stripe-Signature` on the raw body (any `v1` of several, 300 s either
//! way). Every POST carries an `Idempotency-Key` derived from the Billy transaction, though Billy's
//! own guard against a double charge does not rely on it (test peers ignore it).

use crate::sandbox::{status_error, transport_error, verify_signature};
use async_trait::async_trait;
use billy_core::gateway::{
    GatewayError, GatewayEvent, GatewayEventKind, GatewayResponse, LookupResult, MoneyMovement, PaymentGateway,
    WebhookRejection,
};
use billy_core::payment_method::{MethodDetails, MethodType, SensitiveNumber, Vaulted};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

pub const NAME: &str = "stripe";
pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// Stripe's own API; a deployment may point elsewhere (a test peer) with `STRIPE_API_BASE`.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

#[derive(Debug, Clone)]
pub struct StripeGateway {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    /// Webhook secrets accepted (the current one, and the previous one during a rotation).
    webhook_secrets: Vec<String>,
}

impl StripeGateway {
    pub fn new(base_url: &str, api_key: &str, webhook_secrets: Vec<String>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self { http, base_url: base_url.trim_end_matches('/').to_owned(), api_key: api_key.to_owned(), webhook_secrets }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, Value), GatewayError> {
        let response = request.bearer_auth(&self.api_key).send().await.map_err(|e| transport_error(NAME, &e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| transport_error(NAME, &e))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(answer) => Ok((status, answer)),
            Err(_) => Err(status_error(NAME, status, &text)),
        }
    }

    async fn post(
        &self,
        path: &str,
        key: &str,
        form: &[(String, String)],
    ) -> Result<(StatusCode, Value), GatewayError> {
        let request = self.http.post(format!("{}{path}", self.base_url)).header("Idempotency-Key", key).form(form);
        self.send(request).await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<(StatusCode, Value), GatewayError> {
        self.send(self.http.get(format!("{}{path}", self.base_url)).query(query)).await
    }

    /// Stripe's decline code of a failed answer: the card's own reason first.
    fn decline_code(answer: &Value) -> String {
        let error = if answer["error"].is_object() { &answer["error"] } else { &answer["last_payment_error"] };
        error["decline_code"].as_str().or_else(|| error["code"].as_str()).unwrap_or("card_declined").to_owned()
    }

    /// Finds Billy's movement among objects listed at `path` (newest first), by metadata.
    async fn find_listed(&self, path: &str, transaction: &str) -> Result<Option<Value>, GatewayError> {
        let mut after: Option<String> = None;
        // A bounded scan: a look-up runs minutes after the attempt, which is recent.
        for _ in 0..20 {
            let mut query = vec![("limit", "100")];
            if let Some(a) = after.as_deref() {
                query.push(("starting_after", a));
            }
            let (status, page) = self.get(path, &query).await?;
            if !status.is_success() {
                return Err(status_error(NAME, status, &page.to_string()));
            }
            let data = page["data"].as_array().cloned().unwrap_or_default();
            if let Some(found) = data.iter().find(|o| o["metadata"]["billy_transaction"] == transaction) {
                return Ok(Some(found.clone()));
            }
            if page["has_more"] != true {
                return Ok(None);
            }
            after = data.last().and_then(|o| o["id"].as_str()).map(str::to_owned);
        }
        Ok(None)
    }
}

fn metadata(m: &MoneyMovement) -> [(String, String); 2] {
    [
        ("metadata[billy_transaction]".to_owned(), m.transaction.clone()),
        ("metadata[billy_scope]".to_owned(), m.scope.clone()),
    ]
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, method: MethodType) -> bool {
        matches!(method, MethodType::Card | MethodType::BankAccount)
    }

    async fn charge(&self, m: &MoneyMovement) -> Result<GatewayResponse, GatewayError> {
        let mut form = vec![
            ("amount".to_owned(), m.amount.amount.to_string()),
            ("currency".to_owned(), m.amount.currency.to_string()),
            ("payment_method".to_owned(), m.token.clone()),
            ("confirm".to_owned(), "true".to_owned()),
            ("off_session".to_owned(), "true".to_owned()),
        ];
        form.extend(m.customer.clone().map(|c| ("customer".to_owned(), c)));
        form.extend(metadata(m));
        let (status, answer) = self.post("/v1/payment_intents", &m.idempotency_key, &form).await?;
        let reference = answer["id"].as_str().map(str::to_owned);
        match (status.as_u16(), answer["status"].as_str()) {
            (402, _) => Ok(GatewayResponse::Declined {
                reference: answer["error"]["payment_intent"]["id"].as_str().map(str::to_owned),
                code: Self::decline_code(&answer),
                message: answer["error"]["message"].as_str().unwrap_or_default().to_owned(),
            }),
            (200, Some("requires_payment_method")) => {
                Ok(GatewayResponse::Declined { reference, code: Self::decline_code(&answer), message: String::new() })
            }
            // Off session, a card that asks for 3-D Secure cannot be charged.
            (200, Some("requires_action")) => Ok(GatewayResponse::Declined {
                reference,
                code: "authentication_required".into(),
                message: String::new(),
            }),
            (200, _) => Ok(GatewayResponse::Accepted {
                reference: reference.ok_or_else(|| GatewayError::Unknown("stripe answered without an id".into()))?,
            }),
            _ => Err(status_error(NAME, status, &answer.to_string())),
        }
    }

    async fn refund(&self, charge_reference: &str, m: &MoneyMovement) -> Result<GatewayResponse, GatewayError> {
        let mut form = vec![
            ("payment_intent".to_owned(), charge_reference.to_owned()),
            ("amount".to_owned(), m.amount.amount.to_string()),
        ];
        form.extend(metadata(m));
        let (status, answer) = self.post("/v1/refunds", &m.idempotency_key, &form).await?;
        match status.as_u16() {
            200 => Ok(GatewayResponse::Accepted {
                reference: answer["id"]
                    .as_str()
                    .ok_or_else(|| GatewayError::Unknown("stripe refunded without an id".into()))?
                    .to_owned(),
            }),
            400 | 402 => Ok(GatewayResponse::Declined {
                reference: None,
                code: answer["error"]["code"].as_str().unwrap_or("refund_refused").to_owned(),
                message: answer["error"]["message"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => Err(status_error(NAME, status, &answer.to_string())),
        }
    }

    async fn payout(&self, _m: &MoneyMovement) -> Result<GatewayResponse, GatewayError> {
        Err(GatewayError::NotSent("payouts to customers go through Stripe Connect, which Billy does not use".into()))
    }

    async fn cancel(&self, reference: &str, idempotency_key: &str) -> Result<GatewayResponse, GatewayError> {
        let (status, answer) =
            self.post(&format!("/v1/payment_intents/{reference}/cancel"), idempotency_key, &[]).await?;
        if status.is_success() {
            return Ok(GatewayResponse::Accepted { reference: reference.to_owned() });
        }
        if status != StatusCode::BAD_REQUEST {
            return Err(status_error(NAME, status, &answer.to_string()));
        }
        // Stripe refuses to cancel an intent in a final state: say which.
        let (_, intent) = self.get(&format!("/v1/payment_intents/{reference}"), &[]).await?;
        let code = if intent["status"] == "succeeded" { "charge_already_succeeded" } else { "void_refused" };
        Ok(GatewayResponse::Declined {
            reference: Some(reference.to_owned()),
            code: code.into(),
            message: String::new(),
        })
    }

    async fn lookup(&self, transaction: &str, _idempotency_key: &str) -> Result<LookupResult, GatewayError> {
        let query = format!("metadata['billy_transaction']:'{transaction}'");
        let (status, found) = self.get("/v1/payment_intents/search", &[("query", &query)]).await?;
        let intent = match status.as_u16() {
            200 => found["data"].as_array().and_then(|d| d.first()).cloned(),
            // A Stripe without search (a test peer): the recent list instead.
            404 => self.find_listed("/v1/payment_intents", transaction).await?,
            _ => return Err(status_error(NAME, status, &found.to_string())),
        };
        let found = match intent {
            Some(intent) => intent,
            None => match self.find_listed("/v1/refunds", transaction).await? {
                Some(refund) => refund,
                None => return Ok(LookupResult::NotFound),
            },
        };
        let reference = found["id"].as_str().unwrap_or_default().to_owned();
        Ok(match found["status"].as_str() {
            Some("succeeded") => LookupResult::Succeeded { reference },
            Some("requires_payment_method" | "failed" | "canceled") => {
                LookupResult::Failed { code: Self::decline_code(&found), reference }
            }
            _ => LookupResult::Pending { reference },
        })
    }

    async fn vault(&self, _kind: MethodType, _number: &SensitiveNumber) -> Result<Vaulted, GatewayError> {
        Err(GatewayError::NotSent("Stripe takes card numbers on the client only (Stripe.js)".into()))
    }

    async fn describe(
        &self,
        kind: MethodType,
        token: &str,
        customer: Option<&str>,
    ) -> Result<Option<MethodDetails>, GatewayError> {
        if !token.starts_with("pm_") || token.contains('/') {
            return Ok(None);
        }
        let (status, pm) = self.get(&format!("/v1/payment_methods/{token}"), &[]).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error(NAME, status, &pm.to_string()));
        }
        let wanted = match kind {
            MethodType::Card => "card",
            MethodType::BankAccount => "us_bank_account",
            MethodType::Pix => "pix",
        };
        let owner_matches = customer.is_none_or(|c| pm["customer"].as_str().is_none_or(|owner| owner == c));
        if pm["type"] != wanted || !owner_matches {
            return Ok(None);
        }
        let details = &pm[wanted];
        Ok(Some(MethodDetails {
            brand: details["brand"].as_str().or_else(|| details["bank_name"].as_str()).map(str::to_owned),
            last4: details["last4"].as_str().unwrap_or_default().to_owned(),
            exp_month: details["exp_month"].as_u64().and_then(|m| u8::try_from(m).ok()),
            exp_year: details["exp_year"].as_u64().and_then(|y| u16::try_from(y).ok()),
            fingerprint: details["fingerprint"].as_str().map(str::to_owned),
        }))
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
        let mut outcome = Err(WebhookRejection::BadSignature);
        for secret in &self.webhook_secrets {
            outcome = verify_signature(header, body, secret.as_bytes(), now);
            if !matches!(outcome, Err(WebhookRejection::BadSignature)) {
                break;
            }
        }
        outcome?;
        parse_event(body)
    }
}

/// Stripe's event, in Billy's terms: intents settle charges, refunds settle refunds, disputes move
/// invoices; every other event type Stripe sends is acknowledged and ignored.
pub fn parse_event(body: &[u8]) -> Result<Vec<GatewayEvent>, WebhookRejection> {
    let bad = |m: &str| WebhookRejection::Payload(m.to_owned());
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let id = v["id"].as_str().ok_or_else(|| bad("no id"))?;
    let kind = v["type"].as_str().ok_or_else(|| bad("no type"))?;
    let created =
        v["created"].as_i64().and_then(|t| DateTime::from_timestamp(t, 0)).ok_or_else(|| bad("no created time"))?;
    let object = &v["data"]["object"];
    let event = |event_id: String, kind: GatewayEventKind, object: &Value, reference: &str, failure: Option<String>| {
        GatewayEvent {
            gateway: NAME.to_owned(),
            id: event_id,
            kind,
            reference: reference.to_owned(),
            transaction: object["metadata"]["billy_transaction"].as_str().map(str::to_owned),
            scope: object["metadata"]["billy_scope"].as_str().map(str::to_owned),
            amount: object["amount"].as_i64(),
            failure_code: failure,
            account_scope: None,
            occurred_at: created,
        }
    };
    let own_id = object["id"].as_str().unwrap_or_default();
    let refund_kind = |status: Option<&str>| match status {
        Some("succeeded") => Some(GatewayEventKind::RefundSucceeded),
        Some("failed" | "canceled") => Some(GatewayEventKind::RefundFailed),
        _ => None,
    };
    Ok(match kind {
        "payment_intent.succeeded" => vec![event(id.into(), GatewayEventKind::ChargeSucceeded, object, own_id, None)],
        "payment_intent.payment_failed" => vec![event(
            id.into(),
            GatewayEventKind::ChargeFailed,
            object,
            own_id,
            Some(StripeGateway::decline_code(object)),
        )],
        "payment_intent.canceled" => vec![event(id.into(), GatewayEventKind::ChargeCanceled, object, own_id, None)],
        "refund.created" | "refund.updated" => refund_kind(object["status"].as_str())
            .map(|k| event(id.into(), k, object, own_id, object["failure_reason"].as_str().map(str::to_owned)))
            .into_iter()
            .collect(),
        // A charge lists its refunds: one event per settled refund.
        "charge.refunded" => object["refunds"]["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|refund| {
                let k = refund_kind(refund["status"].as_str())?;
                let refund_id = refund["id"].as_str()?;
                Some(event(
                    format!("{id}:{refund_id}"),
                    k,
                    refund,
                    refund_id,
                    refund["failure_reason"].as_str().map(str::to_owned),
                ))
            })
            .collect(),
        "charge.dispute.created" | "charge.dispute.closed" => {
            let disputed =
                object["payment_intent"].as_str().ok_or_else(|| bad("a dispute without its payment intent"))?;
            let outcome = match (kind, object["status"].as_str()) {
                ("charge.dispute.created", _) => Some(GatewayEventKind::DisputeOpened),
                (_, Some("won")) => Some(GatewayEventKind::DisputeWon),
                (_, Some("lost")) => Some(GatewayEventKind::DisputeLost),
                _ => None,
            };
            outcome
                .map(|k| event(id.into(), k, object, disputed, object["reason"].as_str().map(str::to_owned)))
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secrets: &[&str], t: i64, body: &str) -> Vec<(String, String)> {
        use hmac::{Hmac, Mac};
        let v1: Vec<String> = secrets
            .iter()
            .map(|s| {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(s.as_bytes()).unwrap();
                mac.update(format!("{t}.{body}").as_bytes());
                format!("v1={}", hex::encode(mac.finalize().into_bytes()))
            })
            .collect();
        vec![("Stripe-Signature".into(), format!("t={t},{}", v1.join(",")))]
    }

    fn gateway(secret: &str) -> StripeGateway {
        StripeGateway::new("http://127.0.0.1:1", "sk_test_x", vec![secret.into()], Duration::from_secs(1))
    }

    #[test]
    fn intents_refunds_and_disputes_map_to_billys_events_and_others_are_ignored() {
        let now = Utc::now();
        let t = now.timestamp();
        let paid = format!(
            r#"{{"id":"evt_1","type":"payment_intent.succeeded","created":{t},"data":{{"object":{{"id":"pi_1","amount":1000,"metadata":{{"billy_transaction":"txn_1","billy_scope":"s"}}}}}}}}"#
        );
        let events = gateway("whsec_a").verify_webhook(&signed(&["whsec_a"], t, &paid), paid.as_bytes(), now).unwrap();
        assert_eq!(
            (events[0].kind, events[0].reference.as_str(), events[0].transaction.as_deref()),
            (GatewayEventKind::ChargeSucceeded, "pi_1", Some("txn_1"))
        );
        let refunded = format!(
            r#"{{"id":"evt_2","type":"charge.refunded","created":{t},"data":{{"object":{{"id":"ch_1","refunds":{{"data":[{{"id":"re_1","status":"succeeded","amount":300,"metadata":{{"billy_transaction":"txn_2"}}}},{{"id":"re_2","status":"pending"}}]}}}}}}}}"#
        );
        let events = parse_event(refunded.as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].kind, events[0].reference.as_str(), events[0].amount),
            (GatewayEventKind::RefundSucceeded, "re_1", Some(300))
        );
        let lost = format!(
            r#"{{"id":"evt_3","type":"charge.dispute.closed","created":{t},"data":{{"object":{{"id":"dp_1","status":"lost","payment_intent":"pi_1","reason":"fraudulent"}}}}}}"#
        );
        assert_eq!(parse_event(lost.as_bytes()).unwrap()[0].kind, GatewayEventKind::DisputeLost);
        let other =
            format!(r#"{{"id":"evt_4","type":"customer.created","created":{t},"data":{{"object":{{"id":"cus_1"}}}}}}"#);
        assert!(parse_event(other.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn forged_stale_future_and_wrongly_signed_webhooks_are_refused_and_a_rotation_verifies() {
        let now = Utc::now();
        let t = now.timestamp();
        let body = format!(
            r#"{{"id":"evt_1","type":"payment_intent.succeeded","created":{t},"data":{{"object":{{"id":"pi_1"}}}}}}"#
        );
        let gw = gateway("whsec_new");
        let verify = |h: Vec<(String, String)>, b: &str| gw.verify_webhook(&h, b.as_bytes(), now).map(|_| ());
        assert_eq!(verify(signed(&["whsec_other"], t, &body), &body), Err(WebhookRejection::BadSignature));
        assert_eq!(verify(signed(&["whsec_new"], t - 301, &body), &body), Err(WebhookRejection::Stale));
        assert_eq!(verify(signed(&["whsec_new"], t + 301, &body), &body), Err(WebhookRejection::Stale));
        assert_eq!(
            verify(signed(&["whsec_new"], t, &body), &body.replace("pi_1", "pi_2")),
            Err(WebhookRejection::BadSignature)
        );
        assert_eq!(
            verify(vec![("Stripe-Signature".into(), format!("t={t},v0=ab"))], &body),
            Err(WebhookRejection::MissingSignature)
        );
        // during a rotation Stripe signs with both secrets: either verifies
        assert_eq!(verify(signed(&["whsec_old", "whsec_new"], t, &body), &body), Ok(()));
        let rotating = StripeGateway::new(
            "http://127.0.0.1:1",
            "k",
            vec!["whsec_new".into(), "whsec_old".into()],
            Duration::from_secs(1),
        );
        assert!(rotating.verify_webhook(&signed(&["whsec_old"], t, &body), body.as_bytes(), now).is_ok());
    }
}
