//! The API's JSON shapes of Billy's objects (SPEC §9): every object has `id`, `object`, `created`.

use billy_core::audit::AuditEvent;
use billy_core::customer::Customer;
use billy_core::invoice::Invoice;
use billy_core::payment_method::PaymentMethod;
use billy_core::plan::{Plan, PlanKind};
use billy_core::service::clocks::ClockView;
use billy_core::subscription::Subscription;
use billy_core::transaction::Transaction;
use serde_json::{Value, json};

pub fn customer(c: &Customer) -> Value {
    json!({
        "id": c.id, "object": "customer", "created": c.created, "name": c.name, "email": c.email,
        "description": c.description, "metadata": c.metadata, "test_clock": c.test_clock,
        "default_payment_method": c.default_payment_method,
        "default_payout_destination": c.default_payout_destination, "livemode": c.livemode,
    })
}

pub fn test_clock(v: &ClockView) -> Value {
    json!({
        "id": v.clock.id, "object": "test_clock", "created": v.clock.created, "name": v.clock.name,
        "frozen_time": v.clock.frozen_time, "status": v.status, "customers": v.clock.customers, "livemode": false,
        "failures": v.failures.iter().map(|f| json!({"step": f.step, "subject": f.subject, "reason": f.reason})).collect::<Vec<_>>(),
    })
}

/// A payment method as the API shows it: the redacted view and the gateways that vaulted it; never
/// a number, and not the gateways' tokens either.
pub fn payment_method(m: &PaymentMethod) -> Value {
    let d = &m.details;
    let details = json!({
        "brand": d.brand, "last4": d.last4, "exp_month": d.exp_month, "exp_year": d.exp_year,
        "fingerprint": d.fingerprint,
    });
    let mut v = json!({
        "id": m.id, "object": "payment_method", "created": m.created, "customer": m.customer,
        "type": m.kind, "gateways": m.gateways().collect::<Vec<_>>(), "livemode": m.livemode,
    });
    if let Some(obj) = v.as_object_mut() {
        obj.insert(m.kind.as_str().to_owned(), details);
    }
    v
}

/// A payout destination: shown like a payment method (masked), under its own object name.
pub fn payout_destination(d: &PaymentMethod) -> Value {
    let mut v = payment_method(d);
    v["object"] = json!("payout_destination");
    v
}

pub fn plan(p: &Plan) -> Value {
    let (kind, amount, extra) = match &p.kind {
        PlanKind::FixedDebit { amount } => ("fixed_debit", Some(*amount), json!({})),
        PlanKind::FixedPayout { amount } => ("fixed_payout", Some(*amount), json!({})),
        PlanKind::MeteredDebit { base_amount, meters } => {
            ("metered_debit", Some(*base_amount), json!({"meters": meters}))
        }
        PlanKind::MeteredPayout { base_amount, meters, commission } => {
            ("metered_payout", Some(*base_amount), json!({"meters": meters, "commission": commission}))
        }
    };
    let mut v = json!({
        "id": p.id, "object": "plan", "created": p.created, "name": p.name, "description": p.description,
        "amount": amount, "currency": p.currency, "frequency": p.cadence.frequency, "interval": p.cadence.interval,
        "trial_period_days": p.trial_period_days, "kind": kind, "direction": p.kind.direction(), "livemode": p.livemode,
    });
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        obj.extend(extra.clone());
    }
    v
}

/// The current period is the one last billed (in advance) or being metered (in arrears).
pub fn subscription(s: &Subscription) -> Value {
    let index = if s.plan.kind.bills_in_advance() { s.next_period.saturating_sub(1) } else { s.next_period };
    let period = s.period(index).ok();
    json!({
        "id": s.id, "object": "subscription", "created": s.created, "status": s.status.as_str(),
        "customer": s.customer, "plan": s.plan.id, "start": s.start, "billing_anchor": s.billing_anchor,
        "trial_end": s.trial_end,
        "current_period_start": period.map(|p| p.start), "current_period_end": period.map(|p| p.end),
        "next_bill_at": s.next_bill_at().ok().flatten(),
        "cancel_at_period_end": s.cancel_at_period_end, "cancel_at": s.cancel_at, "canceled_at": s.canceled_at,
        "ended_at": s.ended_at,
        "pending_change": s.pending_change.as_ref().map(|c| json!({
            "plan": c.plan.id, "from_period": c.from_period,
            "effective_at": s.period(c.from_period).ok().map(|p| p.start),
        })),
        "discount": s.discount.as_ref().map(|d| json!({
            "coupon": coupon(&d.coupon), "invoices_used": d.invoices_used, "active": d.applies(),
        })),
        "pending_items": s.pending_items,
        "payment_method": s.payment_method, "test_clock": s.test_clock, "livemode": s.livemode,
    })
}

pub fn invoice(i: &Invoice) -> Value {
    json!({
        "id": i.id, "object": "invoice", "created": i.created, "status": i.status.as_str(),
        "direction": i.direction, "customer": i.customer, "subscription": i.subscription, "currency": i.currency,
        "total": i.total, "amount_paid": i.amount_paid, "amount_refunded": i.amount_refunded,
        "period_start": i.period.map(|p| p.start), "period_end": i.period.map(|p| p.end),
        "items": i.items, "adjustments": i.adjustments, "attempt_count": i.attempt_count,
        "next_attempt_at": i.next_attempt_at, "paid_at": i.paid_at, "failure_reason": i.failure_reason,
        "next_payment_attempt": i.awaiting_retry().then_some(i.next_attempt_at).flatten(),
        "amount_refund_pending": i.amount_refund_pending, "settlement": i.settlement,
        "livemode": i.livemode,
    })
}

pub fn transaction(t: &Transaction) -> Value {
    json!({
        "id": t.id, "object": "transaction", "created": t.created, "type": t.kind, "status": t.status.as_str(),
        "invoice": t.invoice, "customer": t.customer, "amount": t.amount, "currency": t.currency,
        "gateway": t.gateway, "gateway_reference": t.gateway_reference, "failure_reason": t.failure_reason,
        "attempt": t.attempt, "retryable": t.retryable, "invoices": [t.invoice], "livemode": t.livemode,
    })
}

pub fn audit_event(e: &AuditEvent) -> Value {
    json!({
        "id": e.id, "object": "audit_event", "created": e.at, "entity": e.entity, "entity_type": e.entity_type,
        "account": e.account, "action": e.action, "version": e.version, "actor": e.actor,
        "request_id": e.request_id, "reason": e.reason, "before": e.before, "after": e.after,
    })
}

/// An audit snapshot of an entity in the API's shape (what announcements carry as
/// `data.object`); a snapshot that no longer reads as its entity is passed on as stored.
pub fn snapshot(entity_type: &str, after: &Value) -> Value {
    fn view<T: serde::de::DeserializeOwned>(after: &Value, render: impl Fn(&T) -> Value) -> Value {
        serde_json::from_value::<T>(after.clone()).map_or_else(|_| after.clone(), |e| render(&e))
    }
    match entity_type {
        "customer" => view(after, customer),
        "payment_method" => view(after, payment_method),
        "payout_destination" => view(after, payout_destination),
        "plan" => view(after, plan),
        "subscription" => view(after, subscription),
        "invoice" => view(after, invoice),
        "transaction" => view(after, transaction),
        "coupon" => view(after, coupon),
        "settlement" => view(after, settlement),
        "settlement_run" => view(after, settlement_run),
        "verification" => view(after, verification),
        "credit_movement" => view(after, credit_movement),
        "test_clock" => view(after, |c: &billy_core::test_clock::TestClock| {
            json!({"id": c.id, "object": "test_clock", "created": c.created, "name": c.name,
                "frozen_time": c.frozen_time, "customers": c.customers, "livemode": false})
        }),
        _ => after.clone(),
    }
}

pub fn settlement(st: &billy_core::settlement::Settlement) -> Value {
    let lines: Vec<Value> = st
        .invoices
        .iter()
        .map(|l| json!({"invoice": l.invoice, "direction": l.direction, "total": l.total, "commission": l.commission}))
        .collect();
    json!({
        "id": st.id, "object": "settlement", "customer": st.customer, "currency": st.currency,
        "month": st.month, "status": st.status, "invoices": lines, "charged": st.charged,
        "paid_out": st.paid_out, "commission": st.commission, "net": st.net, "net_due_at": st.net_due_at,
        "net_invoice": st.net_invoice, "created": st.created, "updated": st.updated, "livemode": st.livemode,
    })
}

pub fn settlement_run(r: &billy_core::settlement::SettlementRun) -> Value {
    json!({
        "id": r.id, "object": "settlement_run", "trigger": r.trigger, "started": r.started, "finished": r.finished,
        "accounts": r.accounts, "changes": r.changes, "errors": r.errors, "livemode": r.livemode,
    })
}

pub fn customer_summary(customer: &str, s: &billy_core::summary::MonthSummary) -> Value {
    json!({
        "object": "customer_summary", "customer": customer, "month": s.month, "currencies": s.currencies,
        "usage_complete": s.usage_complete,
    })
}

pub fn verification(v: &billy_core::verification::Verification) -> Value {
    json!({
        "id": v.id, "object": "verification", "month": v.month, "status": v.status, "trigger": v.trigger,
        "created": v.created, "finished": v.finished, "invoices_checked": v.invoices_checked,
        "settlements_checked": v.settlements_checked, "usage_totals_checked": v.usage_totals_checked,
        "mismatch_count": v.mismatch_count, "mismatches": v.mismatches, "livemode": v.livemode,
    })
}

/// A list in the API's shape.
pub fn list<T>(page: billy_core::page::Page<T>, view: impl Fn(&T) -> Value) -> Value {
    json!({"object": "list", "data": page.data.iter().map(view).collect::<Vec<_>>(), "has_more": page.has_more, "next_cursor": page.next_cursor})
}

pub fn coupon(c: &billy_core::coupon::Coupon) -> Value {
    use billy_core::coupon::{CouponDuration, Off};
    let (percent_off, amount_off, currency) = match &c.off {
        Off::Percent(p) => (Some(p.normalize().to_string()), None, None),
        Off::Amount { amount, currency } => (None, Some(*amount), Some(*currency)),
    };
    let (duration, periods) = match c.duration {
        CouponDuration::Once => ("once", None),
        CouponDuration::Repeating { duration_in_periods } => ("repeating", Some(duration_in_periods)),
        CouponDuration::Forever => ("forever", None),
    };
    json!({
        "id": c.id, "object": "coupon", "created": c.created, "name": c.name, "percent_off": percent_off,
        "amount_off": amount_off, "currency": currency, "duration": duration, "duration_in_periods": periods,
        "livemode": c.livemode,
    })
}

pub fn credit_movement(m: &billy_core::credit::CreditMovement) -> Value {
    json!({
        "id": m.id, "object": "credit_movement", "created": m.created, "customer": m.customer,
        "amount": m.amount, "currency": m.currency, "kind": m.kind, "reason": m.reason, "invoice": m.invoice,
        "livemode": m.livemode,
    })
}

/// A webhook endpoint: never its secrets (the secret is added to the answer that creates or
/// rotates it, once).
pub fn webhook_endpoint(e: &billy_core::webhook::WebhookEndpoint) -> Value {
    let v = e.view();
    json!({
        "id": v.id, "object": "webhook_endpoint", "created": v.created, "url": v.url,
        "enabled_events": v.enabled_events, "description": v.description,
        "status": if v.deleted { "deleted" } else { "enabled" },
        "secret_created": v.secret_created, "previous_secret_expires_at": v.previous_secret_expires_at,
        "livemode": v.livemode,
    })
}

/// A delivery of one event to one endpoint, with each attempt and what the receiver answered.
pub fn webhook_delivery(d: &billy_core::webhook::WebhookDelivery) -> Value {
    let last = d.attempts.last();
    json!({
        "id": d.id, "object": "webhook_delivery", "created": d.created, "endpoint": d.endpoint,
        "event": d.event, "event_type": d.event_type, "status": d.status.as_str(),
        "attempt_count": d.attempt_count, "next_attempt_at": d.next_attempt_at,
        "last_attempt_at": last.map(|a| a.at), "last_response_code": last.and_then(|a| a.status_code),
        "attempts": d.attempts.iter().map(|a| json!({
            "number": a.number, "at": a.at, "status_code": a.status_code, "error": a.error,
            "duration_ms": a.duration_ms, "manual": a.manual,
        })).collect::<Vec<_>>(),
        "livemode": d.livemode,
    })
}
