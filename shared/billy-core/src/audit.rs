//! The append-only journal: one event per state change, written with the change, frozen forever.

use crate::ids::{Id, IdGenerator, IdKind};
use crate::tenant::Scope;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who caused a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A tenant's API key (by key id, never the secret).
    ApiKey { key: Id },
    /// The deployment's administrator token.
    Admin,
    /// One of Billy's own functions (billing tick, retry sweeper, ...).
    System { function: String },
    /// A payment gateway, through a verified webhook.
    Gateway { gateway: String, event_id: String },
}

/// Everything needed to understand one change later, without reading any other record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: Id,
    pub scope: Scope,
    /// The entity that changed, and its type (`customer`, `invoice`, ...).
    pub entity: Id,
    pub entity_type: String,
    /// The customer account the change belongs to, for account history and balance.
    pub account: Option<Id>,
    /// What happened, e.g. `customer.created`, `invoice.paid`.
    pub action: String,
    /// The entity's version after the change: one event per version, so two writers of the same
    /// version cannot both append (the journal may store consecutive versions one change records
    /// in one item; the entity's own conditional write in that change guards them).
    pub version: u64,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub request_id: Option<String>,
    pub reason: Option<String>,
    /// Frozen snapshots of the entity before and after the change.
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The typed change (e.g. `journal::InvoiceChange`) that folds replay.
    #[serde(default)]
    pub change: Option<Value>,
}

impl AuditEvent {
    /// The same event, with why it happened.
    #[must_use]
    pub fn because(mut self, reason: Option<&str>) -> Self {
        self.reason = reason.map(str::to_owned);
        self
    }

    /// The same event as a note: something that happened to the entity without changing its state
    /// (so it takes no version of its own).
    #[must_use]
    pub fn as_note(mut self) -> Self {
        self.version = 0;
        self
    }
}

/// Who is acting and under which request, passed to every use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub scope: Scope,
    pub actor: Actor,
    pub request_id: Option<String>,
    /// The request's `Idempotency-Key` and when it was first seen: the object a POST creates is
    /// named from it, so a retry whose first try committed finds that object instead of making a
    /// second one.
    pub idempotency: Option<IdempotencySeed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencySeed {
    pub key: String,
    pub first_seen: DateTime<Utc>,
}

impl Context {
    pub fn new(scope: Scope, actor: Actor, request_id: Option<String>) -> Self {
        Self { scope, actor, request_id, idempotency: None }
    }

    /// The id of the object this request creates: derived from its idempotency key when it has
    /// one (the same on every retry), random otherwise.
    pub fn new_id(&self, ids: &dyn IdGenerator, kind: IdKind) -> Id {
        match &self.idempotency {
            Some(seed) => {
                Id::derived(kind, seed.first_seen, &format!("{}:{}:{}", self.scope.key(), kind.prefix(), seed.key))
            }
            None => ids.next(kind),
        }
    }
}

/// One change of one entity, described by the use case that makes it.
#[derive(Debug, Clone)]
pub struct Change<'a, T> {
    pub entity: &'a Id,
    pub entity_type: &'static str,
    pub account: Option<&'a Id>,
    pub action: &'static str,
    pub version: u64,
    pub reason: Option<&'a str>,
    pub before: Option<&'a T>,
    pub after: Option<&'a T>,
    /// The typed change, when the entity's history is replayed by a fold.
    pub change: Option<Value>,
}

impl Context {
    /// Freezes `change` into the audit event that is written in the same transaction as it.
    pub fn record<T: Serialize>(&self, ids: &dyn IdGenerator, at: DateTime<Utc>, change: Change<'_, T>) -> AuditEvent {
        let snapshot = |v: Option<&T>| v.and_then(|v| serde_json::to_value(v).ok());
        AuditEvent {
            id: ids.next(IdKind::Event),
            scope: self.scope.clone(),
            entity: change.entity.clone(),
            entity_type: change.entity_type.to_owned(),
            account: change.account.cloned(),
            action: change.action.to_owned(),
            version: change.version,
            at,
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
            reason: change.reason.map(str::to_owned),
            before: snapshot(change.before),
            after: snapshot(change.after),
            change: change.change,
        }
    }
}

/// An entity whose changes are journaled: what the audit event needs to know about it.
pub trait Audited: Serialize {
    fn audit_id(&self) -> &Id;
    fn entity_type(&self) -> &'static str;
    /// The customer account it belongs to (for account history), if any.
    fn account(&self) -> Option<&Id>;
    /// Its version after the change being recorded.
    fn audit_version(&self) -> u64;
}

impl Context {
    /// The audit event of `action` on `entity`, with the entity's new state frozen in it.
    pub fn snapshot<T: Audited>(
        &self,
        ids: &dyn IdGenerator,
        at: DateTime<Utc>,
        action: &'static str,
        entity: &T,
    ) -> AuditEvent {
        self.record(
            ids,
            at,
            Change {
                entity: entity.audit_id(),
                entity_type: entity.entity_type(),
                account: entity.account(),
                action,
                version: entity.audit_version(),
                reason: None,
                before: None,
                after: Some(entity),
                change: None,
            },
        )
    }
}

macro_rules! audited {
    ($ty:ty, $name:literal, |$e:ident| account: $account:expr, version: $version:expr) => {
        impl Audited for $ty {
            fn audit_id(&self) -> &Id {
                &self.id
            }
            fn entity_type(&self) -> &'static str {
                $name
            }
            #[allow(unused_variables)]
            fn account(&self) -> Option<&Id> {
                let $e = self;
                $account
            }
            #[allow(unused_variables)]
            fn audit_version(&self) -> u64 {
                let $e = self;
                $version
            }
        }
    };
}

audited!(crate::customer::Customer, "customer", |c| account: Some(&c.id), version: c.version);
/// Payment methods and payout destinations share a shape; their ids tell them apart.
impl Audited for crate::payment_method::PaymentMethod {
    fn audit_id(&self) -> &Id {
        &self.id
    }
    fn entity_type(&self) -> &'static str {
        if self.id.as_str().starts_with("pd_") { "payout_destination" } else { "payment_method" }
    }
    fn account(&self) -> Option<&Id> {
        Some(&self.customer)
    }
    fn audit_version(&self) -> u64 {
        1
    }
}
audited!(crate::plan::Plan, "plan", |p| account: None, version: 1);
audited!(crate::subscription::Subscription, "subscription", |s| account: Some(&s.customer), version: s.version);
audited!(crate::test_clock::TestClock, "test_clock", |c| account: None, version: c.version);
audited!(crate::transaction::Transaction, "transaction", |t| account: Some(&t.customer), version: t.version);
audited!(crate::invoice::Invoice, "invoice", |i| account: Some(&i.customer), version: i.version);
audited!(crate::ledger::Export, "export", |e| account: None, version: e.version);
audited!(crate::credit::CreditMovement, "credit_movement", |m| account: Some(&m.customer), version: 1);
audited!(crate::coupon::Coupon, "coupon", |c| account: None, version: 1);
audited!(crate::settlement::Settlement, "settlement", |s| account: Some(&s.customer), version: s.version);
audited!(crate::settlement::SettlementRun, "settlement_run", |r| account: None, version: 1);
audited!(crate::verification::Verification, "verification", |v| account: None, version: v.version);
