//! Plans that change and prices that move: proration now, changes scheduled for the next period
//! (one at a time, withdrawable), customer credit (granted, bought, left by a downgrade) used
//! before charging, coupons, one-off items on the next invoice, and fixed-term subscriptions.

use super::{World, s};
use billy_e2e::error_code;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

impl World {
    async fn plan_of(&self, amount: i64, currency: &str) -> String {
        let body =
            json!({"name": format!("Plan {amount}"), "amount": amount, "currency": currency, "frequency": "monthly"});
        let (status, plan) = self.api.post("/plans", &self.key, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{plan}");
        s(&plan["id"])
    }

    async fn change(&self, sub: &Value, plan: &str, effective: &str) -> (StatusCode, Value) {
        let body = json!({"plan": plan, "effective": effective});
        self.api.post(&format!("/subscriptions/{}/change", s(&sub["id"])), &self.key, &body).await
    }

    async fn balance(&self) -> Value {
        let (status, balance) = self.api.get(&format!("/customers/{}/balance", self.customer), &self.key).await;
        assert_eq!(status, StatusCode::OK, "{balance}");
        balance
    }

    fn balance_in(balance: &Value, currency: &str) -> i64 {
        balance["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["currency"] == currency)
            .map_or(0, |b| b["amount"].as_i64().unwrap())
    }

    async fn coupon(&self, body: Value) -> String {
        let (status, coupon) = self.api.post("/coupons", &self.key, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{coupon}");
        s(&coupon["id"])
    }
}

#[tokio::test]
async fn an_upgrade_halfway_nets_plus_5_invoiced_at_once_and_a_downgrade_leaves_credit_used_by_the_next_invoice() {
    // GIVEN a 10.00 monthly plan from 1 April (April has 30 days)
    let w = World::new("2026-04-01T00:00:00Z", "4242424242424242").await;
    let (ten, twenty) = (w.plan_of(1000, "usd").await, w.plan_of(2000, "usd").await);
    let sub = w.subscribe(&ten).await;
    w.settled().await;
    // WHEN it moves to 20.00 exactly halfway through April
    w.advance("2026-04-16T00:00:00Z").await;
    let (status, changed) = w.change(&sub, &twenty, "now").await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    // THEN Stripe's example holds: credit −5.00, charge +10.00, one invoice of +5.00, charged at once
    assert_eq!(changed["plan"], twenty.as_str());
    let proration = &changed["proration_invoice"];
    let lines: Vec<(i64, String)> = proration["adjustments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["amount"].as_i64().unwrap(), s(&a["reason"])))
        .collect();
    assert_eq!(
        lines,
        vec![
            (1000, "remaining time on the new plan".to_owned()),
            (-500, "unused time on the previous plan".to_owned())
        ]
    );
    assert_eq!(proration["total"], 500);
    w.invoice_becomes(&s(&proration["id"]), "paid").await;
    assert!(w.trail(&s(&sub["id"])).await.contains(&"subscription.plan_changed".to_owned()));
    // AND May is billed at the new price
    w.advance("2026-05-02T00:00:00Z").await;
    let may = w.invoices(&sub).await.into_iter().find(|i| s(&i["period_start"]).starts_with("2026-05")).unwrap();
    assert_eq!(may["total"], 2000);
    // WHEN it moves back down halfway through May (31 days: 15.5 days left)
    w.advance("2026-05-16T12:00:00Z").await;
    let (status, changed) = w.change(&sub, &ten, "now").await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    // THEN no negative invoice: −10.00 + 5.00 = −5.00 becomes customer credit
    assert!(changed["proration_invoice"].is_null());
    assert_eq!(
        (changed["proration_credit"]["amount"].as_i64(), changed["proration_credit"]["kind"].as_str()),
        (Some(500), Some("proration"))
    );
    assert_eq!(World::balance_in(&w.balance().await, "usd"), 500);
    // AND June's 10.00 invoice uses it and charges the remainder
    let before = w.stack.sandbox.movements();
    w.advance("2026-06-02T00:00:00Z").await;
    let june = w.invoices(&sub).await.into_iter().find(|i| s(&i["period_start"]).starts_with("2026-06")).unwrap();
    assert_eq!((june["total"].as_i64(), june["adjustments"][0]["amount"].as_i64()), (Some(500), Some(-500)));
    let june = w.invoice_becomes(&s(&june["id"]), "paid").await;
    assert_eq!(june["amount_paid"], 500);
    assert_eq!(w.stack.sandbox.movements(), before + 1);
    let balance = w.balance().await;
    assert_eq!(World::balance_in(&balance, "usd"), 0);
    let kinds: Vec<(String, i64)> = balance["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (s(&m["kind"]), m["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("applied".to_owned(), -500), ("proration".to_owned(), 500)]);
    w.stack.stop().await;
}

#[tokio::test]
async fn a_scheduled_change_applies_at_the_boundary_a_second_is_refused_and_one_can_be_withdrawn() {
    let w = World::new("2026-04-01T00:00:00Z", "4242424242424242").await;
    let (ten, twenty, thirty) =
        (w.plan_of(1000, "usd").await, w.plan_of(2000, "usd").await, w.plan_of(3000, "usd").await);
    let euros = w.plan_of(1000, "eur").await;
    let sub = w.subscribe(&ten).await;
    w.settled().await;
    // WHEN a change is scheduled for the next period THEN it shows on the subscription
    let (status, scheduled) = w.change(&sub, &twenty, "next_period").await;
    assert_eq!(status, StatusCode::OK, "{scheduled}");
    assert_eq!(
        (scheduled["plan"].as_str(), scheduled["pending_change"]["plan"].as_str()),
        (Some(ten.as_str()), Some(twenty.as_str()))
    );
    assert_eq!(scheduled["pending_change"]["effective_at"], "2026-05-01T00:00:00Z");
    // AND a second one conflicts (409), a currency change or a payout plan is a 400, nothing changed
    let (status, err) = w.change(&sub, &thirty, "next_period").await;
    assert_eq!((status, error_code(&err)), (StatusCode::CONFLICT, "change_pending".to_owned()));
    let (status, err) = w.change(&sub, &euros, "now").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    let (status, payout) = w
        .api
        .post(
            "/plans",
            &w.key,
            &json!({"name": "Pay", "amount": 100, "currency": "usd", "frequency": "monthly", "kind": "fixed_payout"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let path = format!("/subscriptions/{}/change", s(&sub["id"]));
    let (status, _) = w.api.raw(Method::DELETE, &path, Some(&w.key), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = w.change(&sub, &euros, "next_period").await;
    assert_eq!((status, error_code(&err)), (StatusCode::BAD_REQUEST, "plan_incompatible".to_owned()));
    let (status, err) = w.change(&sub, &s(&payout["id"]), "next_period").await;
    assert_eq!((status, error_code(&err)), (StatusCode::BAD_REQUEST, "plan_incompatible".to_owned()));
    // WHEN withdrawn THEN nothing is pending, and withdrawing again is a 409
    assert!(w.subscription(&sub).await["pending_change"].is_null());
    let (status, err) = w.api.raw(Method::DELETE, &path, Some(&w.key), None).await;
    assert_eq!((status, error_code(&err)), (StatusCode::CONFLICT, "no_change_pending".to_owned()));
    // WHEN scheduled again and the period ends THEN May is billed on the new plan, journaled
    let (status, _) = w.change(&sub, &thirty, "next_period").await;
    assert_eq!(status, StatusCode::OK);
    w.advance("2026-05-02T00:00:00Z").await;
    let totals: Vec<i64> = w.invoices(&sub).await.iter().map(|i| i["total"].as_i64().unwrap()).collect();
    assert_eq!(totals, vec![1000, 3000]);
    let now = w.subscription(&sub).await;
    assert_eq!((now["plan"].as_str(), now["pending_change"].is_null()), (Some(thirty.as_str()), true));
    let trail = w.trail(&s(&sub["id"])).await;
    for action in ["subscription.change_scheduled", "subscription.change_withdrawn", "subscription.plan_changed"] {
        assert!(trail.contains(&action.to_owned()), "{action} in {trail:?}");
    }
    w.stack.stop().await;
}

#[tokio::test]
async fn credit_pays_an_invoice_it_covers_without_the_gateway_and_part_pays_one_it_does_not() {
    let w = World::new("2026-04-01T00:00:00Z", "4242424242424242").await;
    // WHEN 30.00 of credit is granted
    let (status, granted) = w
        .api
        .post(
            &format!("/customers/{}/credits", w.customer),
            &w.key,
            &json!({"amount": 3000, "currency": "usd", "reason": "welcome"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{granted}");
    // THEN a 12.00 invoice is paid from it with no gateway call
    let covered = w.one_off(1200, "Seat").await;
    let inv = w.invoice_becomes(&covered, "paid").await;
    assert_eq!((inv["total"].as_i64(), inv["adjustments"][0]["amount"].as_i64()), (Some(0), Some(-1200)));
    assert!(w.transactions_of(&covered).await.is_empty());
    assert_eq!(w.stack.sandbox.movements(), 0);
    // AND a 25.00 invoice uses the 18.00 left and charges 7.00
    let part = w.one_off(2500, "Seat").await;
    let inv = w.invoice_becomes(&part, "paid").await;
    assert_eq!(inv["total"], 700);
    assert_eq!(w.transactions_of(&part).await[0]["amount"], 700);
    assert_eq!(w.stack.sandbox.movements(), 1);
    // WHEN 10.00 of credit is sold THEN it counts once its invoice is paid
    let (status, sold) = w
        .api
        .post(
            &format!("/customers/{}/credits", w.customer),
            &w.key,
            &json!({"amount": 1000, "currency": "usd", "sell": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sold}");
    w.invoice_becomes(&s(&sold["id"]), "paid").await;
    let balance = w.balance().await;
    assert_eq!(World::balance_in(&balance, "usd"), 1000);
    let kinds: Vec<(String, i64)> = balance["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (s(&m["kind"]), m["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("purchased".into(), 1000),
            ("applied".into(), -1800),
            ("applied".into(), -1200),
            ("granted".into(), 3000)
        ]
    );
    // AND bad grants are refused
    for bad in [
        json!({"amount": 0, "currency": "usd"}),
        json!({"amount": 100, "currency": "xx"}),
        json!({"amount": -5, "currency": "usd"}),
    ] {
        let (status, _) = w.api.post(&format!("/customers/{}/credits", w.customer), &w.key, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    w.stack.stop().await;
}

#[tokio::test]
async fn coupons_discount_the_invoices_they_count_before_credit_and_only_in_their_currency() {
    let w = World::new("2026-04-01T00:00:00Z", "4242424242424242").await;
    // GIVEN 25% off for 2 invoices on a 10.00 monthly subscription
    let quarter = w
        .coupon(json!({"name": "Spring", "percent_off": "25", "duration": "repeating", "duration_in_periods": 2}))
        .await;
    let plan = w.plan_of(1000, "usd").await;
    let (status, sub) =
        w.api.post("/subscriptions", &w.key, &json!({"customer": w.customer, "plan": plan, "coupon": quarter})).await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    // WHEN three periods are billed THEN the first two are discounted, the third is not
    w.advance("2026-06-02T00:00:00Z").await;
    let totals: Vec<i64> = w.invoices(&sub).await.iter().map(|i| i["total"].as_i64().unwrap()).collect();
    assert_eq!(totals, vec![750, 750, 1000]);
    let discounted = &w.invoices(&sub).await[0]["adjustments"][0];
    assert_eq!((discounted["kind"].as_str(), s(&discounted["reason"]).contains("25% off")), (Some("discount"), true));
    assert_eq!(w.subscription(&sub).await["discount"]["active"], false);
    // WHEN a new coupon is put on the running subscription THEN only its next invoice is discounted
    let loyal = w.coupon(json!({"name": "Loyal", "percent_off": "10", "duration": "once"})).await;
    let path = format!("/subscriptions/{}/discount", s(&sub["id"]));
    let (status, changed) = w.api.post(&path, &w.key, &json!({"coupon": loyal})).await;
    assert_eq!((status, changed["discount"]["active"].as_bool()), (StatusCode::OK, Some(true)), "{changed}");
    w.advance("2026-08-02T00:00:00Z").await;
    let totals: Vec<i64> = w.invoices(&sub).await.iter().map(|i| i["total"].as_i64().unwrap()).collect();
    assert_eq!(totals, vec![750, 750, 1000, 900, 1000]);
    // AND an amount off in USD cannot discount a EUR invoice
    let five = w.coupon(json!({"name": "Five", "amount_off": 500, "currency": "usd", "duration": "once"})).await;
    let (status, err) = w
        .api
        .post("/invoices", &w.key, &json!({"customer": w.customer, "currency": "eur", "coupon": five, "items": [{"description": "x", "unit_amount": 100}]}))
        .await;
    assert_eq!((status, error_code(&err)), (StatusCode::BAD_REQUEST, "coupon_currency_mismatch".to_owned()));
    // AND a discount comes off before credit: 50% of 10.00, then 5.00 of credit, nothing charged
    let half = w.coupon(json!({"name": "Half", "percent_off": 50, "duration": "once"})).await;
    w.api.post(&format!("/customers/{}/credits", w.customer), &w.key, &json!({"amount": 500, "currency": "usd"})).await;
    let (status, draft) = w
        .api
        .post("/invoices", &w.key, &json!({"customer": w.customer, "currency": "usd", "coupon": half, "items": [{"description": "Seat", "unit_amount": 1000}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{draft}");
    let id = s(&draft["id"]);
    w.api.post(&format!("/invoices/{id}/charge"), &w.key, &json!({})).await;
    let inv = w.invoice_becomes(&id, "paid").await;
    let adjustments: Vec<(String, i64)> =
        inv["adjustments"].as_array().unwrap().iter().map(|a| (s(&a["kind"]), a["amount"].as_i64().unwrap())).collect();
    assert_eq!(adjustments, vec![("discount".to_owned(), -500), ("credit".to_owned(), -500)]);
    // AND bad coupons are refused
    for bad in [
        json!({"name": "x", "percent_off": 0, "duration": "once"}),
        json!({"name": "x", "amount_off": 5, "duration": "once"}),
        json!({"name": "x", "percent_off": 5, "duration": "repeating"}),
    ] {
        let (status, _) = w.api.post("/coupons", &w.key, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // AND the tenant's coupons are listed (the refused ones are not) and each can be read
    let (status, listed) = w.api.get("/coupons", &w.key).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let mut ids: Vec<String> = listed["data"].as_array().unwrap().iter().map(|c| s(&c["id"])).collect();
    ids.sort();
    let mut made = vec![quarter.clone(), loyal, five, half];
    made.sort();
    assert_eq!(ids, made);
    let (status, spring) = w.api.get(&format!("/coupons/{quarter}"), &w.key).await;
    assert_eq!((status, spring["name"].as_str()), (StatusCode::OK, Some("Spring")), "{spring}");
    w.stack.stop().await;
}

#[tokio::test]
async fn a_fixed_term_ends_by_itself_after_announcing_it_and_one_off_items_ride_on_the_next_invoice() {
    let w = World::new("2026-04-01T00:00:00Z", "4242424242424242").await;
    let plan = w.plan_of(1000, "usd").await;
    // GIVEN a 3-month contract
    let (status, sub) =
        w.api.post("/subscriptions", &w.key, &json!({"customer": w.customer, "plan": plan, "periods": 3})).await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    assert_eq!(sub["cancel_at"], "2026-07-01T00:00:00Z");
    w.settled().await;
    // WHEN a minibar item is added THEN May's invoice carries it
    let (status, with_item) = w
        .api
        .post(
            &format!("/subscriptions/{}/items", s(&sub["id"])),
            &w.key,
            &json!({"description": "Minibar", "quantity": 2, "unit_amount": 350}),
        )
        .await;
    assert_eq!((status, with_item["pending_items"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{with_item}");
    w.advance("2026-05-02T00:00:00Z").await;
    let may = w.invoices(&sub).await.pop().unwrap();
    assert_eq!(may["total"], 1000 + 700);
    assert_eq!(may["items"][1]["description"], "Minibar");
    assert!(w.subscription(&sub).await["pending_items"].as_array().unwrap().is_empty());
    // WHEN the term runs out THEN it was announced a week ahead, and it ends with 3 invoices
    w.advance("2026-06-25T00:00:00Z").await;
    let trail = w.trail(&s(&sub["id"])).await;
    assert!(trail.contains(&"subscription.ending".to_owned()), "{trail:?}");
    w.advance("2026-07-02T00:00:00Z").await;
    let ended = w.subscription(&sub).await;
    assert_eq!(ended["status"], "ended", "{ended}");
    assert_eq!(w.invoices(&sub).await.len(), 3);
    w.stack.stop().await;
}
