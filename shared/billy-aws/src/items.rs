//! How each entity is laid out in BillyTable (keys and index attributes), in one place, so the
//! repositories and the unit of work write exactly the same items. See docs/table-design.md.

use crate::dynamo::{
    DUE_SHARDS, ENTITY_SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK, GSI3PK, GSI3SK, GSI4PK, GSI4SK, Item, PK, SK, due_sk,
    entity_pk, list_pk, shard_of, to_item,
};
use crate::store::keyed;
use billy_core::DomainResult;
use billy_core::customer::Customer;
use billy_core::ids::Id;
use billy_core::invoice::{Invoice, InvoiceStatus};
use billy_core::payment_method::PaymentMethod;
use billy_core::plan::Plan;
use billy_core::subscription::Subscription;
use billy_core::tenant::Scope;
use billy_core::test_clock::TestClock;
use billy_core::transaction::{Transaction, TransactionType};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub fn millis(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Keys every listed entity has: its own item, its scope list (GSI1).
pub(crate) fn base(scope: &Scope, id: &Id, entity: &str) -> Vec<(&'static str, Option<String>)> {
    vec![
        (PK, Some(entity_pk(scope, id))),
        (SK, Some(ENTITY_SK.to_owned())),
        (GSI1PK, Some(list_pk(scope, entity))),
        (GSI1SK, Some(id.to_string())),
    ]
}

/// A child listed under its parent (GSI3): `<scope>#<parent>#<entity>`.
pub(crate) fn child_of(scope: &Scope, parent: &Id, entity: &str, id: &Id) -> [(&'static str, Option<String>); 2] {
    [(GSI3PK, Some(format!("{}#{entity}", entity_pk(scope, parent)))), (GSI3SK, Some(id.to_string()))]
}

pub(crate) fn by_status(scope: &Scope, entity: &str, status: &str, id: &Id) -> [(&'static str, Option<String>); 2] {
    [(GSI4PK, Some(format!("{}#{status}", list_pk(scope, entity)))), (GSI4SK, Some(id.to_string()))]
}

/// The status most invoices end in has no status index entry: an invoice paid leaves the index
/// (one deletion) instead of moving in it (a deletion and a write). Paid invoices are listed from
/// the scope's or the customer's list, which they are most of.
pub const UNINDEXED_INVOICE_STATUS: InvoiceStatus = InvoiceStatus::Paid;
/// Likewise for transactions: most end succeeded.
pub const UNINDEXED_TRANSACTION_STATUS: billy_core::transaction::TransactionStatus =
    billy_core::transaction::TransactionStatus::Succeeded;

pub fn customer(scope: &Scope, c: &Customer) -> DomainResult<Item> {
    keyed(c, &base(scope, &c.id, "customer"))
}

pub fn plan(scope: &Scope, p: &Plan) -> DomainResult<Item> {
    keyed(p, &base(scope, &p.id, "plan"))
}

pub fn payment_method(scope: &Scope, pm: &PaymentMethod) -> DomainResult<Item> {
    let mut keys = base(scope, &pm.id, "payment_method");
    keys.extend(child_of(scope, &pm.customer, "payment_method", &pm.id));
    keyed(pm, &keys)
}

/// A payout destination: its own entity, listed under its customer apart from payment methods.
pub fn payout_destination(scope: &Scope, d: &PaymentMethod) -> DomainResult<Item> {
    let mut keys = base(scope, &d.id, "payout_destination");
    keys.extend(child_of(scope, &d.customer, "payout_destination", &d.id));
    keyed(d, &keys)
}

pub fn test_clock(scope: &Scope, clock: &TestClock) -> DomainResult<Item> {
    keyed(clock, &base(scope, &clock.id, "test_clock"))
}

/// In the due index (GSI2) only while another invoice will be made; a test clock's subscriptions
/// are due on the clock's own partition, so advancing one clock finds exactly its work.
pub fn subscription(scope: &Scope, sub: &Subscription) -> DomainResult<Item> {
    let due = sub.next_due_at()?.map(|at| {
        let partition = match &sub.test_clock {
            Some(clock) => format!("DUE#CLOCK#{clock}"),
            None => format!("DUE#{}", shard_of(&sub.id, DUE_SHARDS)),
        };
        (partition, due_sk(&at, scope, &sub.id))
    });
    // (No status index entry: subscriptions are listed by scope or customer, never by status, and
    // each entry would be written again at every renewal.)
    let mut keys = base(scope, &sub.id, "subscription");
    keys.extend(child_of(scope, &sub.customer, "subscription", &sub.id));
    keys.push((GSI2PK, due.as_ref().map(|(p, _)| p.clone())));
    keys.push((GSI2SK, due.map(|(_, s)| s)));
    keyed(sub, &keys)
}

/// GSI2 holds an invoice while a retry is scheduled (`RETRY#…`, by time), or while it waits in a
/// monthly settlement (`SETTLE#…`).
pub fn invoice(scope: &Scope, inv: &Invoice) -> DomainResult<Item> {
    let retry = match (inv.status, inv.next_attempt_at) {
        (InvoiceStatus::ChargedWithError | InvoiceStatus::PayoutFailed, Some(at)) => {
            let partition = match &inv.test_clock {
                Some(clock) => format!("RETRY#CLOCK#{clock}"),
                None => format!("RETRY#{}", shard_of(&inv.id, DUE_SHARDS)),
            };
            Some((partition, due_sk(&at, scope, &inv.id)))
        }
        // Waiting in its month's settlement: where the settlement job finds its tenant.
        (InvoiceStatus::InSettlement, _) => {
            let [(_, partition), (_, sort)] = crate::settlements::settling_keys(scope, &inv.id, &inv.created);
            partition.zip(sort)
        }
        _ => None,
    };
    let mut keys = base(scope, &inv.id, "invoice");
    keys.extend(child_of(scope, &inv.customer, "invoice", &inv.id));
    if inv.status != UNINDEXED_INVOICE_STATUS {
        keys.extend(by_status(scope, "invoice", inv.status.as_str(), &inv.id));
    }
    keys.push((GSI2PK, retry.as_ref().map(|(p, _)| p.clone())));
    keys.push((GSI2SK, retry.map(|(_, s)| s)));
    keyed(inv, &keys)
}

/// GSI2 holds a transaction while its outcome is unknown (`RECHECK#…`, by look-up time).
pub fn transaction(scope: &Scope, t: &Transaction) -> DomainResult<Item> {
    let recheck = t.recheck_at().map(|at| {
        let partition = match &t.test_clock {
            Some(clock) => format!("RECHECK#CLOCK#{clock}"),
            None => format!("RECHECK#{}", shard_of(&t.id, DUE_SHARDS)),
        };
        (partition, due_sk(&at, scope, &t.id))
    });
    let mut keys = base(scope, &t.id, "transaction");
    keys.extend(child_of(scope, &t.customer, "transaction", &t.id));
    if t.status != UNINDEXED_TRANSACTION_STATUS {
        keys.extend(by_status(scope, "transaction", t.status.as_str(), &t.id));
    }
    keys.push((GSI2PK, recheck.as_ref().map(|(p, _)| p.clone())));
    keys.push((GSI2SK, recheck.map(|(_, s)| s)));
    keyed(t, &keys)
}

/// A tenant's settings: one item per scope.
pub fn settings_pk(scope: &Scope) -> String {
    format!("{}#settings", scope.key())
}

pub fn gateway_account(scope: &Scope, a: &billy_core::gateway_account::GatewayAccount) -> DomainResult<Item> {
    keyed(a, &base(scope, &a.id, "gateway_account"))
}

/// One account per gateway per scope: this item's key is the gateway, so of two concurrent first
/// connections only one commits.
pub fn gateway_account_slot(scope: &Scope, a: &billy_core::gateway_account::GatewayAccount) -> DomainResult<Item> {
    to_item(
        &crate::gateway_accounts::AccountScope { scope: scope.clone() },
        &[(PK, format!("{}#gateway_account#{}", scope.key(), a.gateway)), (SK, ENTITY_SK.to_owned())],
    )
}

pub fn gateway_account_lookup(scope: &Scope, id: &Id) -> DomainResult<Item> {
    to_item(
        &crate::gateway_accounts::AccountScope { scope: scope.clone() },
        &[(PK, crate::gateway_accounts::lookup_pk(id)), (SK, ENTITY_SK.to_owned())],
    )
}

pub fn export(scope: &Scope, e: &billy_core::ledger::Export) -> DomainResult<Item> {
    keyed(e, &base(scope, &e.id, "export"))
}

pub fn settings(scope: &Scope, settings: &billy_core::settings::TenantSettings) -> DomainResult<Item> {
    to_item(settings, &[(PK, settings_pk(scope)), (SK, ENTITY_SK.to_owned())])
}

/// The natural key that makes a subscription period's invoice unique.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeriodClaim {
    pub invoice: Id,
}

pub fn period_claim_key(scope: &Scope, subscription: &Id, period_start: &DateTime<Utc>) -> (String, String) {
    (entity_pk(scope, subscription), format!("PERIOD#{}", millis(period_start)))
}

pub fn period_claim(scope: &Scope, inv: &Invoice) -> DomainResult<Option<Item>> {
    let (Some(sub), Some(period)) = (&inv.subscription, &inv.period) else { return Ok(None) };
    let (pk, sk) = period_claim_key(scope, sub, &period.start);
    to_item(&PeriodClaim { invoice: inv.id.clone() }, &[(PK, pk), (SK, sk)]).map(Some)
}

/// The natural key of one attempt of one kind on one invoice.
#[derive(Debug, Serialize, Deserialize)]
pub struct AttemptClaim {
    pub transaction: Id,
}

pub fn attempt_claim_key(scope: &Scope, invoice: &Id, kind: TransactionType, attempt: u32) -> (String, String) {
    (entity_pk(scope, invoice), format!("TXN#{kind:?}#{attempt:06}").to_uppercase())
}

pub fn attempt_claim(scope: &Scope, t: &Transaction) -> DomainResult<Item> {
    let (pk, sk) = attempt_claim_key(scope, &t.invoice, t.kind, t.attempt);
    to_item(&AttemptClaim { transaction: t.id.clone() }, &[(PK, pk), (SK, sk)])
}

/// Where a gateway's reference points: found by the webhook processor, which has no scope yet.
#[derive(Debug, Serialize, Deserialize)]
pub struct GatewayReference {
    pub scope: Scope,
    pub transaction: Id,
}

pub fn gateway_reference_pk(gateway: &str, reference: &str) -> String {
    format!("GWREF#{gateway}#{reference}")
}

pub fn gateway_reference(gateway: &str, reference: &str, scope: &Scope, transaction: &Id) -> DomainResult<Item> {
    to_item(
        &GatewayReference { scope: scope.clone(), transaction: transaction.clone() },
        &[(PK, gateway_reference_pk(gateway, reference)), (SK, ENTITY_SK.into())],
    )
}

/// Applied gateway events are remembered for 90 days (gateways retry webhooks for a few days).
pub fn gateway_event_applied(gateway: &str, event_id: &str, now: DateTime<Utc>) -> DomainResult<Item> {
    let mut item = to_item(
        &serde_json::json!({"applied_at": millis(&now)}),
        &[(PK, format!("GWEVT#{gateway}#{event_id}")), (SK, ENTITY_SK.into())],
    )?;
    item.insert(
        "expires_at".into(),
        aws_sdk_dynamodb::types::AttributeValue::N((now + chrono::Duration::days(90)).timestamp().to_string()),
    );
    Ok(item)
}
