//! Real gateways: the debit journey through Stripe (localstripe) and Adyen (the project's fake),
//! each tenant's own gateway account with its own webhook address, forged webhooks, routing and
//! failover, and a search for the accounts' secrets everywhere Billy writes.

use super::{World, s};
use billy_e2e::peers::{AdyenFake, LocalStripe, stripe_signature};
use billy_e2e::{TestStack, error_code};
use billy_local::testing::{DelayProxy, StackOptions};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A stack whose Stripe and Adyen are the given test peers (and calls time out after `timeout`).
async fn stack_with(stripe: Option<String>, adyen: Option<String>, timeout: Option<Duration>) -> TestStack {
    let mut parameters = BTreeMap::new();
    parameters.extend(stripe.map(|u| ("StripeApiBase".to_owned(), u)));
    parameters.extend(adyen.map(|u| ("AdyenApiBase".to_owned(), u)));
    parameters.extend(timeout.map(|t| ("GatewayTimeoutMs".to_owned(), t.as_millis().to_string())));
    TestStack::start_custom(StackOptions { parameters, ..StackOptions::default() }).await
}

impl World {
    /// Connects the tenant's own account at `gateway`; the account as answered.
    async fn connect(&self, gateway: &str, body: &Value) -> Value {
        let (status, account) = self
            .api
            .raw(Method::PUT, &format!("/gateway_accounts/{gateway}"), Some(&self.key), Some(&body.to_string()))
            .await;
        assert_eq!(status, StatusCode::OK, "{account}");
        account
    }

    /// The full address of an account's webhooks on this stack.
    fn webhook_url(&self, account: &Value) -> String {
        format!("{}{}", self.stack.url, s(&account["webhook_url"]))
    }

    /// Registers a tokenised method and makes it the customer's default; its id.
    async fn add_token(&self, kind: &str, tokens: Value) -> String {
        let (status, pm) = self
            .api
            .post(
                &format!("/customers/{}/payment_methods", self.customer),
                &self.key,
                &json!({"type": kind, "tokens": tokens}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{pm}");
        let id = s(&pm["id"]);
        let (status, _) = self
            .api
            .post(&format!("/customers/{}/payment_methods/{id}/default", self.customer), &self.key, &json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);
        id
    }

    async fn set_routes(&self, routes: &Value) -> (StatusCode, Value) {
        self.api.raw(Method::PUT, "/gateway_routes", Some(&self.key), Some(&routes.to_string())).await
    }

    /// A one-off invoice in `currency`, finalized (the charge follows); its id.
    async fn one_off_in(&self, amount: i64, currency: &str) -> String {
        let body = json!({"customer": self.customer, "currency": currency, "items": [{"description": "Seat", "unit_amount": amount}]});
        let (status, draft) = self.api.post("/invoices", &self.key, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{draft}");
        let id = s(&draft["id"]);
        let (status, inv) = self.api.post(&format!("/invoices/{id}/charge"), &self.key, &json!({})).await;
        assert_eq!(status, StatusCode::OK, "{inv}");
        id
    }

    /// Posts a webhook body to an address of this stack; the status and the answer's text.
    async fn post_webhook(&self, url: &str, headers: &[(&str, String)], body: &str) -> (StatusCode, String) {
        let mut request =
            reqwest::Client::new().post(url).header("content-type", "application/json").body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let answer = request.send().await.unwrap();
        (answer.status(), answer.text().await.unwrap())
    }
}

// ---------------------------------------------------------------------------------------------
// Stripe

/// A tenant connected to its own Stripe account (localstripe), whose webhooks localstripe sends
/// to the account's address.
struct StripeWorld {
    w: World,
    stripe: LocalStripe,
    account: Value,
    secret: String,
}

impl StripeWorld {
    async fn start(frozen_time: &str) -> Self {
        let stripe = LocalStripe::start().await;
        Self::start_at(stripe, frozen_time, None, None).await
    }

    async fn start_at(stripe: LocalStripe, frozen_time: &str, api_base: Option<String>, adyen: Option<String>) -> Self {
        Self::start_timed(stripe, frozen_time, api_base, adyen, Duration::from_millis(1500)).await
    }

    /// With Stripe at `api_base` (a proxy, say) and calls timing out after `timeout`.
    async fn start_timed(
        stripe: LocalStripe,
        frozen_time: &str,
        api_base: Option<String>,
        adyen: Option<String>,
        timeout: Duration,
    ) -> Self {
        let api_base = api_base.unwrap_or_else(|| stripe.url());
        let w = World::bare(stack_with(Some(api_base), adyen, Some(timeout)).await, frozen_time).await;
        let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let account = w.connect("stripe", &json!({"api_key": stripe.api_key, "webhook_secret": secret})).await;
        stripe.send_webhooks_to(&w.webhook_url(&account), &secret).await;
        Self { w, stripe, account, secret }
    }

    /// A card at Stripe, attached to a Stripe customer, registered with Billy as the default.
    async fn card(&self, number: &str) -> String {
        let (customer, pm) = self.stripe.customer_with_card(number).await;
        self.w.add_token("card", json!([{"gateway": "stripe", "token": pm, "customer": customer}])).await
    }

    /// Posts a Stripe event (shaped as Stripe's API reference shows it) to the account's address,
    /// signed by the official library with `secret` at unix time `t`.
    async fn send_event(&self, kind: &str, object: Value, secret: &str, t: i64) -> (StatusCode, String) {
        let body = json!({
            "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
            "object": "event",
            "api_version": "2024-06-20",
            "created": t,
            "livemode": false,
            "type": kind,
            "data": {"object": object},
        })
        .to_string();
        let signature = stripe_signature(&body, secret, t).await;
        self.w.post_webhook(&self.w.webhook_url(&self.account), &[("Stripe-Signature", signature)], &body).await
    }

    /// The refund localstripe made for one of Billy's refund transactions, as a `charge.refunded`
    /// event would carry it.
    async fn refunded_charge(&self, intent: &str) -> Value {
        let listed = reqwest::Client::new()
            .get(format!("{}/v1/refunds?limit=100", self.stripe.url()))
            .bearer_auth(&self.stripe.api_key)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let refunds: Vec<Value> =
            listed["data"].as_array().unwrap().iter().filter(|r| r["payment_intent"] == intent).cloned().collect();
        assert!(!refunds.is_empty(), "localstripe holds the refund of {intent}: {listed}");
        let refunded: i64 = refunds.iter().map(|r| r["amount"].as_i64().unwrap()).sum();
        json!({
            "id": format!("ch_{}", uuid::Uuid::new_v4().simple()),
            "object": "charge",
            "payment_intent": intent,
            "amount_refunded": refunded,
            "refunded": false,
            "refunds": {"object": "list", "data": refunds, "has_more": false},
        })
    }
}

#[tokio::test]
async fn the_debit_journey_through_stripe_pays_declines_with_dunning_and_refunds_each_step_by_verified_webhook() {
    let g = StripeWorld::start("2026-01-15T00:00:00Z").await;
    let w = &g.w;
    // the account shows which secrets are set, and its own webhook address, never a secret
    assert_eq!(g.account["secrets_set"], json!(["api_key", "webhook_secret"]));
    assert_eq!(s(&g.account["webhook_url"]), format!("/v1/webhooks/stripe/{}", s(&g.account["id"])));
    // GIVEN a card at Stripe and a 10.00 monthly plan
    g.card("4242424242424242").await;
    let plan = w.plan(1000).await;
    let sub = w.subscribe(&plan).await;
    // WHEN a month passes THEN both invoices are paid, each by Stripe's signed webhook
    w.advance("2026-02-16T00:00:00Z").await;
    let mut invoices = Vec::new();
    for inv in w.invoices(&sub).await {
        invoices.push(w.invoice_becomes(&s(&inv["id"]), "paid").await);
    }
    assert_eq!(invoices.len(), 2);
    let intents = g.stripe.intents().await;
    assert_eq!(intents.len(), 2, "one payment intent per invoice");
    for inv in &invoices {
        let txn = &w.transactions_of(&s(&inv["id"])).await[0];
        assert_eq!((txn["gateway"].as_str(), txn["status"].as_str()), (Some("stripe"), Some("succeeded")), "{txn}");
        let intent = intents.iter().find(|i| i["id"] == txn["gateway_reference"]).expect("the intent Billy names");
        assert_eq!(intent["metadata"]["billy_transaction"], txn["id"]);
        assert_eq!((intent["amount"].as_i64(), intent["status"].as_str()), (Some(1000), Some("succeeded")));
    }
    // WHEN 4.00 of the latest is refunded THEN it is pending until Stripe's charge.refunded says so
    let first = s(&invoices[1]["id"]);
    let (status, asked) = w.patch_invoice(&first, &json!({"action": "refund", "amount": 400})).await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    let intent = s(&w.transactions_of(&first).await[0]["gateway_reference"]);
    assert_eq!(w.invoice(&first).await["amount_refund_pending"], 400);
    let charge = g.refunded_charge(&intent).await;
    let (status, _) = g.send_event("charge.refunded", charge, &g.secret, chrono::Utc::now().timestamp()).await;
    assert_eq!(status, StatusCode::OK);
    let inv = w.invoice_becomes(&first, "partially_refunded").await;
    assert_eq!((inv["amount_refunded"].as_i64(), inv["amount_refund_pending"].as_i64()), (Some(400), Some(0)));
    // WHEN the customer's card starts declining THEN the next invoice fails and dunning retries it
    g.card("4000000000000341").await;
    w.advance("2026-03-16T00:00:00Z").await;
    let inv = w.invoices(&sub).await.pop().unwrap();
    assert_eq!(
        (inv["status"].as_str(), inv["failure_reason"].as_str()),
        (Some("charged_with_error"), Some("card_declined")),
        "{inv}"
    );
    for day in ["2026-03-19", "2026-03-26", "2026-04-06"] {
        w.advance(&format!("{day}T00:00:00Z")).await;
    }
    let inv = w.invoice(&s(&inv["id"])).await;
    assert_eq!((inv["status"].as_str(), inv["attempt_count"].as_i64()), (Some("failed"), Some(4)), "{inv}");
    assert_eq!(w.subscription(&sub).await["status"], "past_due");
    assert_eq!(g.stripe.intents().await.len(), 6, "one intent per attempt, never a second for the same one");
    // AND a dispute Stripe opens then closes lost ends the first invoice charged back
    let second = s(&invoices[0]["id"]);
    let intent = s(&w.transactions_of(&second).await[0]["gateway_reference"]);
    let dispute = |status: &str| {
        json!({"id": "dp_1", "object": "dispute", "amount": 1000, "currency": "usd", "payment_intent": intent,
               "charge": "ch_1", "reason": "fraudulent", "status": status})
    };
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        g.send_event("charge.dispute.created", dispute("needs_response"), &g.secret, now).await.0,
        StatusCode::OK
    );
    w.invoice_becomes(&second, "in_protest").await;
    assert_eq!(g.send_event("charge.dispute.closed", dispute("lost"), &g.secret, now + 1).await.0, StatusCode::OK);
    w.invoice_becomes(&second, "chargeback").await;
    g.w.stack.stop().await;
    g.stripe.stop().await;
}

#[tokio::test]
async fn forged_stale_future_and_wrongly_signed_stripe_webhooks_are_refused_and_a_rotated_secret_verifies() {
    let g = StripeWorld::start("2026-01-15T00:00:00Z").await;
    let w = &g.w;
    g.card("4242424242424242").await;
    let id = w.one_off_in(1200, "usd").await;
    w.invoice_becomes(&id, "paid").await;
    let intent = s(&w.transactions_of(&id).await[0]["gateway_reference"]);
    let dispute = json!({"id": "dp_2", "object": "dispute", "amount": 1200, "payment_intent": intent, "reason": "fraudulent", "status": "needs_response"});
    let now = chrono::Utc::now().timestamp();
    let before = billy_e2e::item_count(&w.stack, &w.stack.tables().main).await;
    // WHEN the same event comes forged, stale, from the far future, or signed with another secret
    let other = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    for (secret, t, why) in [
        (g.secret.as_str(), now - 600, "stale"),
        (g.secret.as_str(), now + 600, "far future"),
        (other.as_str(), now, "wrong secret"),
    ] {
        let (status, answer) = g.send_event("charge.dispute.created", dispute.clone(), secret, t).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {answer}");
    }
    let body =
        json!({"id": "evt_forged", "type": "charge.dispute.created", "created": now, "data": {"object": dispute}})
            .to_string();
    let (status, _) = w
        .post_webhook(
            &w.webhook_url(&g.account),
            &[("Stripe-Signature", format!("t={now},v1={}", "ab".repeat(32)))],
            &body,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "forged");
    let (status, _) = w.post_webhook(&w.webhook_url(&g.account), &[], &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unsigned");
    // (the deployment's shared address does not take a tenant's Stripe events either)
    let signature = stripe_signature(&body, &g.secret, now).await;
    let (status, _) =
        w.post_webhook(&format!("{}/v1/webhooks/stripe", w.stack.url), &[("Stripe-Signature", signature)], &body).await;
    assert!(status.is_client_error(), "{status}");
    // THEN nothing was stored and the invoice is still paid
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(billy_e2e::item_count(&w.stack, &w.stack.tables().main).await, before);
    assert_eq!(w.invoice(&id).await["status"], "paid");
    // WHEN the tenant rotates its secret, keeping the old one for the changeover, and Stripe signs
    // with both (two v1 values)
    let rotated = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let account = w
        .connect(
            "stripe",
            &json!({"api_key": g.stripe.api_key, "webhook_secret": rotated, "previous_webhook_secret": g.secret}),
        )
        .await;
    assert_eq!(account["id"], g.account["id"], "the same account, its credentials replaced");
    let body = json!({"id": "evt_rotated", "object": "event", "type": "charge.dispute.created", "created": now, "data": {"object": dispute}}).to_string();
    let old = stripe_signature(&body, &g.secret, now).await;
    let new = stripe_signature(&body, &rotated, now).await;
    let both = format!("{old},{}", new.split(',').nth(1).unwrap());
    let (status, answer) = w.post_webhook(&w.webhook_url(&account), &[("Stripe-Signature", both)], &body).await;
    // THEN it verifies and is applied
    assert_eq!(status, StatusCode::OK, "{answer}");
    w.invoice_becomes(&id, "in_protest").await;
    g.w.stack.stop().await;
    g.stripe.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Adyen

/// A tenant connected to its own Adyen merchant account (the fake), which notifies the account's
/// address.
struct AdyenWorld {
    w: World,
    adyen: AdyenFake,
    account: Value,
}

impl AdyenWorld {
    async fn start(frozen_time: &str) -> Self {
        let adyen = AdyenFake::start().await;
        let w = World::bare(stack_with(None, Some(adyen.api_base()), None).await, frozen_time).await;
        let account = w
            .connect(
                "adyen",
                &json!({"api_key": adyen.api_key, "hmac_key": adyen.hmac_key, "merchant_account": adyen.merchant}),
            )
            .await;
        adyen.notify(&w.webhook_url(&account), false).await;
        Self { w, adyen, account }
    }

    /// A stored method at Adyen (its shopper is Billy's customer), registered as the default.
    async fn method(&self, kind: &str, last4: &str, outcome: &str) -> String {
        let token = self.adyen.stored_method(&self.w.customer, kind, last4, outcome).await;
        let billy_kind = if kind == "pix" { "pix" } else { "card" };
        self.w.add_token(billy_kind, json!([{"gateway": "adyen", "token": token, "customer": self.w.customer}])).await
    }

    /// Posts a notification body to the account's address.
    async fn post(&self, body: &Value) -> (StatusCode, String) {
        self.w.post_webhook(&self.w.webhook_url(&self.account), &[], &body.to_string()).await
    }
}

/// One notification item signed as Adyen signs (the fake's scheme is checked against Adyen's own
/// library by `make test`; Billy's against Adyen's known answer in its unit tests).
fn adyen_item(key_hex: &str, fields: Value) -> Value {
    let mut item = fields;
    let signature = billy_aws::adyen::item_signature(&item, &hex_decode(key_hex)).unwrap();
    item["additionalData"] = json!({"hmacSignature": signature});
    json!({"NotificationRequestItem": item})
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

#[tokio::test]
async fn the_debit_journey_through_adyen_pays_declines_with_dunning_and_refunds_each_step_by_verified_notification() {
    let g = AdyenWorld::start("2026-01-15T00:00:00Z").await;
    let w = &g.w;
    assert_eq!(g.account["merchant_account"], g.adyen.merchant);
    assert_eq!(g.account["secrets_set"], json!(["api_key", "hmac_key"]));
    // GIVEN a stored card at Adyen and a 10.00 monthly plan
    g.method("scheme", "1111", "authorised").await;
    let plan = w.plan(1000).await;
    let sub = w.subscribe(&plan).await;
    // WHEN a month passes THEN both invoices are paid, each by a signed AUTHORISATION
    w.advance("2026-02-16T00:00:00Z").await;
    let mut invoices = Vec::new();
    for inv in w.invoices(&sub).await {
        invoices.push(w.invoice_becomes(&s(&inv["id"]), "paid").await);
    }
    assert_eq!(invoices.len(), 2);
    let state = g.adyen.state().await;
    let payments = state["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 2, "one payment per invoice");
    for inv in &invoices {
        let txn = &w.transactions_of(&s(&inv["id"])).await[0];
        assert_eq!((txn["gateway"].as_str(), txn["status"].as_str()), (Some("adyen"), Some("succeeded")), "{txn}");
        let payment = payments.iter().find(|p| p["pspReference"] == txn["gateway_reference"]).unwrap();
        assert_eq!(payment["merchantReference"], txn["id"]);
        assert_eq!(payment["shopperReference"].as_str(), Some(w.customer.as_str()));
    }
    // WHEN 3.00 of the latest is refunded THEN Adyen's REFUND notification settles it
    let first = s(&invoices[1]["id"]);
    let (status, asked) = w.patch_invoice(&first, &json!({"action": "refund", "amount": 300})).await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    let inv = w.invoice_becomes(&first, "partially_refunded").await;
    assert_eq!(inv["amount_refunded"], 300);
    let refunds = g.adyen.state().await["modifications"].clone();
    assert_eq!(refunds.as_array().unwrap().len(), 1);
    assert_eq!(refunds[0]["amount"]["value"], 300);
    // WHEN the shopper's new card is refused for lack of funds THEN dunning retries it to the end
    g.method("scheme", "0002", "insufficient_funds").await;
    w.advance("2026-03-16T00:00:00Z").await;
    let inv = w.invoices(&sub).await.pop().unwrap();
    assert_eq!(
        (inv["status"].as_str(), inv["failure_reason"].as_str()),
        (Some("charged_with_error"), Some("insufficient_funds")),
        "{inv}"
    );
    for day in ["2026-03-19", "2026-03-26", "2026-04-06"] {
        w.advance(&format!("{day}T00:00:00Z")).await;
    }
    let inv = w.invoice(&s(&inv["id"])).await;
    assert_eq!((inv["status"].as_str(), inv["attempt_count"].as_i64()), (Some("failed"), Some(4)), "{inv}");
    assert_eq!(w.subscription(&sub).await["status"], "past_due");
    assert_eq!(g.adyen.state().await["payments"].as_array().unwrap().len(), 6);
    // AND a CHARGEBACK (no dispute announced first) on the first ends it charged back
    let second = s(&invoices[0]["id"]);
    g.adyen.chargeback(&s(&w.transactions_of(&second).await[0]["gateway_reference"])).await;
    w.invoice_becomes(&second, "chargeback").await;
    g.w.stack.stop().await;
    g.adyen.stop().await;
}

#[tokio::test]
async fn forged_stale_future_and_wrongly_signed_adyen_notifications_are_refused_whole() {
    let g = AdyenWorld::start("2026-01-15T00:00:00Z").await;
    let w = &g.w;
    g.method("scheme", "1111", "authorised").await;
    let id = w.one_off_in(1500, "eur").await;
    w.invoice_becomes(&id, "paid").await;
    let psp = s(&w.transactions_of(&id).await[0]["gateway_reference"]);
    let chargeback = |date: chrono::DateTime<chrono::Utc>| {
        json!({"pspReference": "CB1", "originalReference": psp, "merchantAccountCode": g.adyen.merchant,
               "merchantReference": "x", "amount": {"value": 1500, "currency": "EUR"}, "eventCode": "CHARGEBACK",
               "success": "true", "eventDate": date.to_rfc3339()})
    };
    let now = chrono::Utc::now();
    let body = |items: Vec<Value>| json!({"live": "false", "notificationItems": items});
    let before = billy_e2e::item_count(&w.stack, &w.stack.tables().main).await;
    let other_key = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF";
    let mut forged = adyen_item(&g.adyen.hmac_key, chargeback(now));
    forged["NotificationRequestItem"]["amount"]["value"] = json!(15);
    let cases = [
        ("wrong key", body(vec![adyen_item(other_key, chargeback(now))])),
        ("stale", body(vec![adyen_item(&g.adyen.hmac_key, chargeback(now - chrono::Duration::days(31)))])),
        ("far future", body(vec![adyen_item(&g.adyen.hmac_key, chargeback(now + chrono::Duration::hours(2)))])),
        ("forged amount", body(vec![forged])),
        // a good first item does not carry a forged second one
        (
            "second item forged",
            body(vec![adyen_item(&g.adyen.hmac_key, chargeback(now)), adyen_item(other_key, chargeback(now))]),
        ),
        ("unsigned", body(vec![json!({"NotificationRequestItem": chargeback(now)})])),
    ];
    for (why, b) in cases {
        let (status, answer) = g.post(&b).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {answer}");
        assert_ne!(answer, "[accepted]");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(billy_e2e::item_count(&w.stack, &w.stack.tables().main).await, before);
    assert_eq!(w.invoice(&id).await["status"], "paid");
    // WHEN the same notification comes properly signed THEN it is accepted as Adyen expects
    let (status, answer) = g.post(&body(vec![adyen_item(&g.adyen.hmac_key, chargeback(now))])).await;
    assert_eq!((status, answer.as_str()), (StatusCode::OK, "[accepted]"));
    w.invoice_becomes(&id, "chargeback").await;
    g.w.stack.stop().await;
    g.adyen.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Routing and failover

/// A tenant with both its Stripe and its Adyen accounts, and a card vaulted at both.
async fn both(stripe: LocalStripe, api_base: Option<String>, timeout: Duration) -> (StripeWorld, AdyenFake) {
    let adyen = AdyenFake::start().await;
    let g = StripeWorld::start_timed(stripe, "2026-01-15T00:00:00Z", api_base, Some(adyen.api_base()), timeout).await;
    let account =
        g.w.connect(
            "adyen",
            &json!({"api_key": adyen.api_key, "hmac_key": adyen.hmac_key, "merchant_account": adyen.merchant}),
        )
        .await;
    adyen.notify(&g.w.webhook_url(&account), false).await;
    let (customer, pm) = g.stripe.customer_with_card("4242424242424242").await;
    let stored = adyen.stored_method(&g.w.customer, "scheme", "4242", "authorised").await;
    g.w.add_token(
        "card",
        json!([{"gateway": "stripe", "token": pm, "customer": customer}, {"gateway": "adyen", "token": stored, "customer": g.w.customer}]),
    )
    .await;
    let (status, settings) =
        g.w.set_routes(&json!({"rules": [{"method_type": "card", "gateways": ["stripe", "adyen"]}]})).await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    (g, adyen)
}

#[tokio::test]
async fn routes_send_brl_pix_to_adyen_and_bad_routes_are_refused() {
    let adyen = AdyenFake::start().await;
    let stripe = LocalStripe::start().await;
    let g = StripeWorld::start_at(stripe, "2026-01-15T00:00:00Z", None, Some(adyen.api_base())).await;
    let w = &g.w;
    let account = w
        .connect(
            "adyen",
            &json!({"api_key": adyen.api_key, "hmac_key": adyen.hmac_key, "merchant_account": adyen.merchant}),
        )
        .await;
    adyen.notify(&w.webhook_url(&account), false).await;
    // bad routes: a clear 400 each, nothing changed
    for (routes, code) in [
        (json!({"rules": []}), "routes_invalid"),
        (json!({"rules": [{"method_type": "card", "gateways": ["paypal"]}]}), "gateway_unknown"),
        (
            json!({"rules": [{"method_type": "card", "gateways": ["stripe"], "amount_min": 10, "amount_max": 5}]}),
            "routes_invalid",
        ),
        (
            json!({"rules": [{"method_type": "card", "gateways": ["stripe"]}], "fees": {"stripe": {"percent": "-1"}}}),
            "routes_invalid",
        ),
        (json!({"rules": [{"method_type": "card", "gateways": ["stripe"], "colour": "red"}]}), "parameter_invalid"),
    ] {
        let (status, err) = w.set_routes(&routes).await;
        assert_eq!((status, error_code(&err)), (StatusCode::BAD_REQUEST, code.to_owned()), "{routes}");
    }
    assert!(w.api.get("/settings", &w.key).await.1["gateway_routes"].is_null());
    // GIVEN pix in BRL goes to Adyen, cards to the cheapest of the two
    let routes = json!({
        "rules": [
            {"method_type": "pix", "currency": "brl", "gateways": ["adyen"]},
            {"method_type": "card", "gateways": ["stripe", "adyen"], "strategy": "cheapest"},
        ],
        "fees": {"stripe": {"fixed": 30, "percent": "2.9"}, "adyen": {"fixed": 10, "percent": "1.5"}},
    });
    let (status, settings) = w.set_routes(&routes).await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["gateway_routes"]["rules"][0]["gateways"], json!(["adyen"]));
    // WHEN a BRL invoice is paid with pix THEN Adyen takes it
    let token = adyen.stored_method(&w.customer, "pix", "", "authorised").await;
    w.add_token("pix", json!([{"gateway": "adyen", "token": token, "customer": w.customer}])).await;
    let id = w.one_off_in(5000, "brl").await;
    w.invoice_becomes(&id, "paid").await;
    let txn = &w.transactions_of(&id).await[0];
    assert_eq!(txn["gateway"], "adyen");
    let state = adyen.state().await;
    assert_eq!(state["payments"][0]["amount"], json!({"value": 5000, "currency": "BRL"}));
    // AND a card held at both goes to the cheaper (Adyen) at once; a changed rule applies next
    let (customer, pm) = g.stripe.customer_with_card("4242424242424242").await;
    let stored = adyen.stored_method(&w.customer, "scheme", "4242", "authorised").await;
    w.add_token("card", json!([{"gateway": "stripe", "token": pm, "customer": customer}, {"gateway": "adyen", "token": stored, "customer": w.customer}]))
        .await;
    let id = w.one_off_in(2000, "usd").await;
    w.invoice_becomes(&id, "paid").await;
    assert_eq!(w.transactions_of(&id).await[0]["gateway"], "adyen");
    let (status, _) = w.set_routes(&json!({"rules": [{"method_type": "card", "gateways": ["stripe", "adyen"]}]})).await;
    assert_eq!(status, StatusCode::OK);
    let id = w.one_off_in(2000, "usd").await;
    w.invoice_becomes(&id, "paid").await;
    assert_eq!(w.transactions_of(&id).await[0]["gateway"], "stripe");
    g.w.stack.stop().await;
    g.stripe.stop().await;
    adyen.stop().await;
}

#[tokio::test]
async fn with_stripe_stopped_a_card_held_at_both_fails_over_to_adyen_once() {
    let (mut g, adyen) = both(LocalStripe::start().await, None, Duration::from_millis(1500)).await;
    let w = &g.w;
    // WHEN Stripe is down (its port refuses connections) and an invoice is charged
    g.stripe.kill().await;
    let id = w.one_off_in(1800, "usd").await;
    // THEN Adyen takes it, once, and its notification settles it
    w.invoice_becomes(&id, "paid").await;
    let txns = w.transactions_of(&id).await;
    assert_eq!(txns.len(), 1, "one transaction, moved to the gateway that took it");
    assert_eq!((txns[0]["gateway"].as_str(), txns[0]["status"].as_str()), (Some("adyen"), Some("succeeded")));
    let payments = adyen.state().await["payments"].as_array().unwrap().len();
    assert_eq!(payments, 1);
    assert!(billy_lambda::telemetry::captured().contains(&format!("transaction={}", s(&txns[0]["id"]))));
    // AND the charge message delivered again sends nothing anywhere
    w.queues_drained(&["ChargeQueue", "WebhookQueue"]).await;
    assert_eq!(adyen.state().await["payments"].as_array().unwrap().len(), 1);
    adyen.stop().await;
    g.w.stack.stop().await;
    g.stripe.stop().await;
}

#[tokio::test]
async fn with_stripe_answering_after_the_timeout_nothing_fails_over_and_stripes_webhook_settles_it() {
    let stripe = LocalStripe::start().await;
    // a delay proxy in front of localstripe, passing everything at once until told otherwise
    let proxy = DelayProxy::start(stripe.addr(), Duration::ZERO).await.unwrap();
    // (a timeout well before localstripe's webhook, which it sends about 1 s after the charge)
    let (g, adyen) = both(stripe, Some(proxy.url()), Duration::from_millis(500)).await;
    let w = &g.w;
    // WHEN Stripe's answers start coming after Billy's 0.5 s timeout
    proxy.set_delay(Duration::from_secs(4));
    let id = w.one_off_in(1900, "usd").await;
    // THEN the attempt's outcome is unknown, and it is not sent to Adyen
    let deadline = Instant::now() + Duration::from_secs(30);
    let txn = loop {
        let txns = w.transactions_of(&id).await;
        if let Some(t) = txns.first().filter(|t| t["status"] != "pending" || !t["gateway_reference"].is_null()) {
            break t.clone();
        }
        assert!(Instant::now() < deadline, "the attempt never left pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // AND localstripe's webhook (sent straight to Billy) settles it paid, at Stripe
    w.invoice_becomes(&id, "paid").await;
    let txns = w.transactions_of(&id).await;
    assert_eq!(txns.len(), 1);
    assert_eq!(txns[0]["id"], txn["id"]);
    assert_eq!((txns[0]["gateway"].as_str(), txns[0]["status"].as_str()), (Some("stripe"), Some("succeeded")));
    let trail = w.trail(&s(&txn["id"])).await;
    assert!(trail.contains(&"transaction.outcome_unknown".to_owned()), "{trail:?}");
    assert_eq!(adyen.state().await["payments"].as_array().unwrap().len(), 0, "nothing went to Adyen");
    assert_eq!(g.stripe.intents().await.len(), 1, "one intent at Stripe");
    adyen.stop().await;
    drop(proxy);
    g.w.stack.stop().await;
    g.stripe.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn gateway_secrets_are_nowhere_in_the_tables_the_logs_or_any_response() {
    let adyen = AdyenFake::start().await;
    let stripe = LocalStripe::start().await;
    let g = StripeWorld::start_at(stripe, "2026-01-15T00:00:00Z", None, Some(adyen.api_base())).await;
    let w = &g.w;
    let adyen_account = w
        .connect(
            "adyen",
            &json!({"api_key": adyen.api_key, "hmac_key": adyen.hmac_key, "merchant_account": adyen.merchant}),
        )
        .await;
    adyen.notify(&w.webhook_url(&adyen_account), false).await;
    // (a rotation, so a previous secret is held too, and a charge that uses the credentials)
    let rotated = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let mut responses = vec![g.account.to_string(), adyen_account.to_string()];
    let again = w
        .connect(
            "stripe",
            &json!({"api_key": g.stripe.api_key, "webhook_secret": rotated, "previous_webhook_secret": g.secret}),
        )
        .await;
    responses.push(again.to_string());
    g.card("4242424242424242").await;
    let id = w.one_off_in(1100, "usd").await;
    w.invoice_becomes(&id, "paid").await;
    // a second tenant may not see the first one's accounts
    let (_, other_key, _) = w.api.tenant(&w.stack, "Other").await;
    let (status, others) = w.api.get("/gateway_accounts", &other_key).await;
    assert_eq!((status, others["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    // WHEN every answer about the accounts, every table item and every log line is read
    let accounts = [s(&g.account["id"]), s(&adyen_account["id"])];
    for path in [
        "/gateway_accounts".to_owned(),
        format!("/audit?entity={}", accounts[0]),
        format!("/audit?entity={}", accounts[1]),
        "/settings".to_owned(),
    ] {
        let (status, body) = w.api.get(&path, &w.key).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        responses.push(body.to_string());
    }
    let mut stored = billy_e2e::table_text(&w.stack.aws, &w.stack.tables().main).await;
    stored.extend(billy_e2e::table_text(&w.stack.aws, &w.stack.tables().audit).await);
    let logs = billy_lambda::telemetry::captured();
    // THEN no secret is in any of them
    let secrets = [
        g.stripe.api_key.as_str(),
        g.secret.as_str(),
        rotated.as_str(),
        adyen.api_key.as_str(),
        adyen.hmac_key.as_str(),
    ];
    for (what, text) in [("responses", responses.join("\n")), ("tables", stored.join("\n")), ("logs", logs.clone())] {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret is in the {what}");
            assert!(!text.to_lowercase().contains(&secret.to_lowercase()), "a secret is in the {what}, recased");
        }
    }
    // ... while the same reads find the accounts, so they read for real
    for account in &accounts {
        assert!(
            stored.iter().filter(|t| t.contains(account.as_str())).count() >= 2,
            "the account's item and its audit event"
        );
        assert!(responses.iter().any(|r| r.contains(account.as_str())));
    }
    assert!(logs.contains("invoked"));
    g.w.stack.stop().await;
    g.stripe.stop().await;
    adyen.stop().await;
}
