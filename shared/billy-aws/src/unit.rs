//! The unit of work: several entity writes of one scope and their audit events in one
//! `TransactWriteItems`, with the claims and lookups each write implies; and many such changes
//! packed into as few transactions as DynamoDB allows, each still standing or falling alone.

use crate::dynamo::{ENTITY_SK, PK, SK, entity_pk, map_transact_error, s};
use crate::items;
use crate::store::{MAX_TRANSACTION_ITEMS, Store};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use billy_core::audit::AuditEvent;
use billy_core::ports::{Changeset, UnitOfWork, Write};
use billy_core::tenant::Scope;
use billy_core::transaction::TransactionType;
use billy_core::{DomainError, DomainResult};
use futures::stream::{self, StreamExt};
use std::collections::HashSet;

#[derive(Debug, Clone)]
pub struct DynamoUnitOfWork {
    store: Store,
    attempt_claims: AttemptClaims,
}

/// Whether a collection attempt whose id its invoice names is also claimed the earlier way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttemptClaims {
    /// Its transaction's creation is its only claim (a new stack, or the second step of an update).
    #[default]
    Named,
    /// An attempt claim is written with it as well, so that functions of an earlier version, which
    /// know only claims, still find it: the first step of updating a stack made before attempts
    /// were named (docs/table-design.md, "Deploying named attempts over an earlier version").
    AlsoWrite,
}

impl AttemptClaims {
    /// From the `BILLY_ATTEMPT_CLAIMS` setting: `write` (the first step of an update), else named.
    pub fn from_setting(value: Option<&str>) -> Self {
        if value == Some("write") { Self::AlsoWrite } else { Self::Named }
    }
}

impl DynamoUnitOfWork {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables), attempt_claims: AttemptClaims::Named }
    }

    pub fn with_attempt_claims(mut self, claims: AttemptClaims) -> Self {
        self.attempt_claims = claims;
        self
    }
}

/// How many packed transactions of one `commit_each` are in flight at once.
const PARALLEL_TRANSACTIONS: usize = 2;
/// Rounds after which the changesets still pending are committed one by one.
const MAX_ROUNDS: usize = 8;

/// A change cancelled by another request on the same items (what `commit` reports for it too).
fn busy() -> DomainError {
    DomainError::conflict("transaction_conflict", "change is being changed by another request; retry")
}

/// The table and key of the item a transaction item writes.
type ItemKey = (String, String, String);

fn item_key(item: &TransactWriteItem) -> Option<ItemKey> {
    let text = |v: Option<&AttributeValue>| v.and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    if let Some(put) = item.put() {
        return Some((put.table_name().to_owned(), text(put.item().get(PK)), text(put.item().get(SK))));
    }
    item.update().map(|u| (u.table_name().to_owned(), text(u.key().get(PK)), text(u.key().get(SK))))
}

/// One changeset ready to send: its transaction items and the keys they write.
struct Prepared {
    index: usize,
    items: Vec<TransactWriteItem>,
    keys: Vec<ItemKey>,
}

/// What became of one packed transaction, per member (by position in the pack).
enum PackOutcome {
    Committed,
    /// Per member: `Some(error)` for the members whose own items failed a condition, `None` for
    /// the innocent ones, which go again.
    Cancelled(Vec<Option<DomainError>>),
    /// The store gave no per-item reasons: every member goes again, alone.
    Unattributed,
    Failed(DomainError),
}

impl DynamoUnitOfWork {
    fn items(&self, scope: &Scope, writes: &[Write], events: &[AuditEvent]) -> DomainResult<Vec<TransactWriteItem>> {
        let store = &self.store;
        let put = |item, expected: Option<u64>| match expected {
            None => store.put_new(item),
            Some(v) => store.put_versioned(item, v),
        };
        let mut puts = Vec::with_capacity(writes.len() + 2);
        let mut updates = Vec::new();
        for write in writes {
            match write {
                Write::Customer { customer, expected } => puts.push(put(items::customer(scope, customer)?, *expected)?),
                Write::PaymentMethod { method } => puts.push(store.put_new(items::payment_method(scope, method)?)?),
                Write::PayoutDestination { destination } => {
                    puts.push(store.put_new(items::payout_destination(scope, destination)?)?);
                }
                Write::Plan { plan } => puts.push(store.put_new(items::plan(scope, plan)?)?),
                Write::Subscription { subscription, expected } => {
                    puts.push(put(items::subscription(scope, subscription)?, *expected)?);
                }
                Write::Invoice { invoice, expected } => {
                    puts.push(put(items::invoice(scope, invoice)?, *expected)?);
                    if expected.is_none()
                        && let Some(claim) = items::period_claim(scope, invoice)?
                    {
                        puts.push(store.put_new(claim)?);
                    }
                }
                Write::Transaction { transaction, expected } => {
                    puts.push(put(items::transaction(scope, transaction)?, *expected)?);
                    // (Only while updating an older stack; the changeset's own claim is not repeated.)
                    if self.attempt_claims == AttemptClaims::AlsoWrite
                        && expected.is_none()
                        && matches!(transaction.kind, TransactionType::Charge | TransactionType::Payout)
                        && !writes
                            .iter()
                            .any(|w| matches!(w, Write::AttemptClaim { transaction: t } if t.id == transaction.id))
                    {
                        puts.push(store.put_new(crate::transactions::claim(scope, transaction)?)?);
                    }
                }
                Write::AttemptClaim { transaction } => {
                    puts.push(store.put_new(crate::transactions::claim(scope, transaction)?)?);
                }
                Write::TransactionReference { transaction, gateway, reference, lookup } => {
                    if *lookup {
                        puts.push(store.put_new(items::gateway_reference(gateway, reference, scope, transaction)?)?);
                    }
                    updates.push(
                        Update::builder()
                            .table_name(&store.tables.main)
                            .key(PK, s(entity_pk(scope, transaction)))
                            .key(SK, s(ENTITY_SK))
                            .update_expression("SET gateway_reference = :r, gateway = :g")
                            .condition_expression(
                                "attribute_exists(PK) AND #st = :pending AND (attribute_not_exists(gateway_reference) OR attribute_type(gateway_reference, :null))",
                            )
                            .expression_attribute_names("#st", "status")
                            .expression_attribute_values(":r", s(reference.clone()))
                            .expression_attribute_values(":g", s(gateway.clone()))
                            .expression_attribute_values(":pending", s("pending"))
                            .expression_attribute_values(":null", s("NULL"))
                            .build()
                            .map_err(DomainError::unexpected)?,
                    );
                }
                Write::GatewayEventApplied { gateway, event_id } => {
                    let now = events.first().map_or_else(chrono::Utc::now, |e| e.at);
                    puts.push(store.put_new(items::gateway_event_applied(gateway, event_id, now)?)?);
                }
                Write::TestClock { clock, expected } => puts.push(put(items::test_clock(scope, clock)?, *expected)?),
                Write::Settings { settings, expected } => puts.push(put(items::settings(scope, settings)?, *expected)?),
                Write::Export { export, expected } => puts.push(put(items::export(scope, export)?, *expected)?),
                Write::Settlement { settlement, expected } => {
                    puts.push(put(crate::settlements::settlement_item(scope, settlement)?, *expected)?);
                    if expected.is_none() {
                        puts.push(store.put_new(crate::settlements::settlement_claim(scope, settlement)?)?);
                    }
                }
                Write::Verification { verification, expected } => {
                    puts.push(put(crate::verifications::verification_item(scope, verification)?, *expected)?);
                }
                Write::SettlementRun { run } => puts.push(store.put_new(crate::settlements::run_item(scope, run)?)?),
                Write::Coupon { coupon } => puts.push(store.put_new(crate::credits::coupon_item(scope, coupon)?)?),
                Write::Credit { movement } => {
                    puts.push(store.put_new(crate::credits::movement_item(scope, movement)?)?);
                    updates.push(crate::credits::balance_update(&store.tables.main, scope, movement)?);
                }
                Write::UsageClose { subscription, metric, period, priced } => updates.push(crate::usage::close_total(
                    &store.tables.main,
                    scope,
                    subscription,
                    metric,
                    period,
                    *priced,
                )?),
                Write::WebhookEndpoint { endpoint, expected } => {
                    puts.push(put(crate::webhooks::endpoint_item(scope, endpoint)?, *expected)?);
                }
                Write::GatewayAccount { account, expected } => {
                    puts.push(put(items::gateway_account(scope, account)?, *expected)?);
                    if expected.is_none() {
                        puts.push(store.put_new(items::gateway_account_lookup(scope, &account.id)?)?);
                        puts.push(store.put_new(items::gateway_account_slot(scope, account)?)?);
                    }
                }
            }
        }
        store.transaction_items(puts, updates, events)
    }

    /// Sends one packed transaction and says, per member, what became of it.
    async fn send_pack(&self, pack: &[&Prepared]) -> PackOutcome {
        let items: Vec<TransactWriteItem> = pack.iter().flat_map(|p| p.items.iter().cloned()).collect();
        let total = items.len();
        let err = match self.store.send_transaction(items).await {
            Ok(()) => return PackOutcome::Committed,
            Err(err) => err,
        };
        let reasons: Vec<Option<String>> = match &err {
            SdkError::ServiceError(service) => match service.err() {
                TransactWriteItemsError::TransactionCanceledException(cancel) => {
                    cancel.cancellation_reasons().iter().map(|r| r.code().map(str::to_owned)).collect()
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        if reasons.len() != total {
            if let SdkError::ServiceError(service) = &err
                && matches!(service.err(), TransactWriteItemsError::TransactionCanceledException(_))
            {
                return PackOutcome::Unattributed;
            }
            return PackOutcome::Failed(map_transact_error(err, "change"));
        }
        let mut at = 0;
        let verdicts = pack
            .iter()
            .map(|p| {
                let own = &reasons[at..at + p.items.len()];
                at += p.items.len();
                if own.iter().any(|r| r.as_deref() == Some("ConditionalCheckFailed")) {
                    Some(DomainError::conflict(
                        "version_conflict",
                        "change was changed by another request; retry with fresh data",
                    ))
                } else if own.iter().flatten().any(|r| r != "None") {
                    Some(busy())
                } else {
                    None
                }
            })
            .collect();
        PackOutcome::Cancelled(verdicts)
    }
}

#[async_trait]
impl UnitOfWork for DynamoUnitOfWork {
    async fn commit(&self, scope: &Scope, writes: Vec<Write>, events: Vec<AuditEvent>) -> DomainResult<()> {
        let items = self.items(scope, &writes, &events)?;
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(DomainError::unexpected(format!("change: {} items exceed one transaction", items.len())));
        }
        self.store.send_transaction(items).await.map_err(|e| map_transact_error(e, "change"))
    }

    /// Packs changesets into transactions of up to 100 items. Two changesets that write the same
    /// item never share a round (DynamoDB rejects a transaction that names an item twice, and
    /// concurrent transactions on one item cancel each other); the later one waits for the next.
    /// A cancelled pack names the items that failed: their changesets get their conflict, the
    /// others go again.
    async fn commit_each(&self, changes: Vec<Changeset>) -> Vec<DomainResult<()>> {
        let mut results: Vec<Option<DomainResult<()>>> = changes.iter().map(|_| None).collect();
        let mut pending: Vec<Prepared> = Vec::new();
        for (index, c) in changes.iter().enumerate() {
            match self.items(&c.scope, &c.writes, &c.events) {
                Ok(items) if items.len() > MAX_TRANSACTION_ITEMS => {
                    results[index] = Some(Err(DomainError::unexpected(format!(
                        "change: {} items exceed one transaction",
                        items.len()
                    ))));
                }
                Ok(items) => {
                    let keys = items.iter().filter_map(item_key).collect();
                    pending.push(Prepared { index, items, keys });
                }
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let mut alone: HashSet<usize> = HashSet::new();
        let mut round = 0;
        while !pending.is_empty() {
            round += 1;
            let mut packs: Vec<Vec<usize>> = Vec::new();
            let mut later: Vec<usize> = Vec::new();
            let mut taken: HashSet<&ItemKey> = HashSet::new();
            let mut current: Vec<usize> = Vec::new();
            let mut size = 0;
            for (at, p) in pending.iter().enumerate() {
                if p.keys.iter().any(|k| taken.contains(k)) {
                    later.push(at);
                    continue;
                }
                taken.extend(p.keys.iter());
                if alone.contains(&p.index) || round > MAX_ROUNDS {
                    packs.push(vec![at]);
                    continue;
                }
                if size + p.items.len() > MAX_TRANSACTION_ITEMS {
                    packs.push(std::mem::take(&mut current));
                    size = 0;
                }
                size += p.items.len();
                current.push(at);
            }
            if !current.is_empty() {
                packs.push(current);
            }
            let pending_now = &pending;
            let outcomes: Vec<(Vec<usize>, PackOutcome)> = stream::iter(packs)
                .map(|pack: Vec<usize>| async move {
                    let members: Vec<&Prepared> = pack.iter().map(|&at| &pending_now[at]).collect();
                    let outcome = self.send_pack(&members).await;
                    (members.iter().map(|p| p.index).collect::<Vec<_>>(), outcome)
                })
                .buffer_unordered(PARALLEL_TRANSACTIONS)
                .collect()
                .await;
            let mut again: HashSet<usize> = later.iter().map(|&at| pending[at].index).collect();
            for (members, outcome) in outcomes {
                match outcome {
                    PackOutcome::Committed => members.iter().for_each(|&i| results[i] = Some(Ok(()))),
                    PackOutcome::Failed(e) => members.iter().for_each(|&i| results[i] = Some(Err(e.clone()))),
                    PackOutcome::Unattributed if members.len() == 1 => {
                        results[members[0]] = Some(Err(busy()));
                    }
                    PackOutcome::Unattributed => {
                        alone.extend(members.iter().copied());
                        again.extend(members);
                    }
                    PackOutcome::Cancelled(verdicts) => {
                        let alone_in_pack = members.len() == 1;
                        for (i, verdict) in members.into_iter().zip(verdicts) {
                            match verdict {
                                Some(e) => results[i] = Some(Err(e)),
                                // Cancelled alone with no reason of its own: as `commit` would say.
                                None if alone_in_pack => {
                                    results[i] = Some(Err(busy()));
                                }
                                None => {
                                    again.insert(i);
                                }
                            }
                        }
                    }
                }
            }
            pending.retain(|p| again.contains(&p.index));
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(DomainError::unexpected("change was never sent"))))
            .collect()
    }
}
