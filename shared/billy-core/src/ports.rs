//! The ports: what the domain needs from the outside world, each a small trait with a real adapter
//! (billy-aws) and an in-memory one (`crate::memory`) for fast tests.

use crate::audit::AuditEvent;
use crate::customer::Customer;
use crate::error::DomainResult;
use crate::ids::Id;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::page::{Page, PageRequest};
use crate::plan::Plan;
use crate::subscription::Subscription;
use crate::tenant::{ApiKeyHash, ApiKeyRecord, Scope, Tenant};
use crate::usage::UsageEvent;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::clock::Clock;
pub use crate::gateway::PaymentGateway;
pub use crate::ids::IdGenerator;

#[async_trait]
pub trait TenantRepository: Send + Sync + std::fmt::Debug {
    /// Stores a new tenant, its keys and its audit event atomically.
    async fn create(
        &self,
        tenant: &Tenant,
        keys: &[ApiKeyRecord],
        event: &AuditEvent,
    ) -> DomainResult<()>;
    async fn key_by_hash(&self, hash: &ApiKeyHash) -> DomainResult<Option<ApiKeyRecord>>;
}

#[async_trait]
pub trait CustomerRepository: Send + Sync + std::fmt::Debug {
    /// Stores a new customer and its audit event atomically; an existing id is a conflict.
    async fn insert(&self, customer: &Customer, event: &AuditEvent) -> DomainResult<()>;
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Customer>>;
    /// Newest first, within one scope only.
    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Customer>>;
}

/// Reads the journal; appends happen only inside the repositories' transactions.
#[async_trait]
pub trait AuditJournal: Send + Sync + std::fmt::Debug {
    /// Every event of one entity, oldest first.
    async fn for_entity(&self, scope: &Scope, entity: &Id) -> DomainResult<Vec<AuditEvent>>;
    /// Every event of one customer account, oldest first.
    async fn for_account(&self, scope: &Scope, account: &Id) -> DomainResult<Vec<AuditEvent>>;
}

/// Reachability of one dependency, as `GET /v1/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyHealth {
    pub name: String,
    pub ok: bool,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[async_trait]
pub trait HealthProbe: Send + Sync + std::fmt::Debug {
    async fn check(&self) -> Vec<DependencyHealth>;
}

/// A message for a queue: a versioned JSON body and an optional de-duplication id.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct QueueMessage {
    /// Schema version of `body`, so consumers can evolve without breaking in-flight messages.
    pub version: u32,
    pub kind: String,
    pub body: serde_json::Value,
}

/// Sends messages to one of Billy's queues, batching where it can.
#[async_trait]
pub trait QueuePublisher: Send + Sync + std::fmt::Debug {
    async fn send(&self, queue: &str, messages: &[QueueMessage]) -> DomainResult<()>;
}

/// A domain event for EventBridge (and from there, tenants' webhook endpoints).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DomainEvent {
    pub id: Id,
    /// e.g. `invoice.paid`, `invoice.payment_failed`, `subscription.canceled`, `payout.paid`.
    #[serde(rename = "type")]
    pub kind: String,
    pub scope: Scope,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub data: serde_json::Value,
}

#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug {
    async fn publish(&self, events: &[DomainEvent]) -> DomainResult<()>;
}

#[async_trait]
pub trait PlanRepository: Send + Sync + std::fmt::Debug {
    async fn insert(&self, plan: &Plan, event: &AuditEvent) -> DomainResult<()>;
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Plan>>;
    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Plan>>;
}

#[async_trait]
pub trait SubscriptionRepository: Send + Sync + std::fmt::Debug {
    async fn insert(&self, subscription: &Subscription, event: &AuditEvent) -> DomainResult<()>;
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Subscription>>;
    /// Writes `subscription` if the stored version is still `expected_version`, with its events,
    /// atomically; otherwise a conflict and nothing changes.
    async fn update(
        &self,
        subscription: &Subscription,
        expected_version: u64,
        events: &[AuditEvent],
    ) -> DomainResult<()>;
    /// Subscriptions of every tenant due at or before `before`, from one shard of the due index.
    async fn due(
        &self,
        shard: u32,
        before: DateTime<Utc>,
        limit: usize,
    ) -> DomainResult<Vec<(Scope, Id)>>;
}

/// Filters of `GET /v1/invoices`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    pub customer: Option<Id>,
    pub subscription: Option<Id>,
    pub status: Option<InvoiceStatus>,
    pub period_from: Option<DateTime<Utc>>,
    pub period_to: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait InvoiceRepository: Send + Sync + std::fmt::Debug {
    /// Creates a subscription period's invoice unless that period already has one (a conditional
    /// put on subscription + period start); returns the stored invoice and whether it is new.
    async fn create_for_period(
        &self,
        invoice: &Invoice,
        event: &AuditEvent,
    ) -> DomainResult<(Invoice, bool)>;
    async fn insert(&self, invoice: &Invoice, event: &AuditEvent) -> DomainResult<()>;
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Invoice>>;
    /// Optimistic update with its audit events, atomically.
    async fn update(
        &self,
        invoice: &Invoice,
        expected_version: u64,
        events: &[AuditEvent],
    ) -> DomainResult<()>;
    async fn list(
        &self,
        scope: &Scope,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Invoice>>;
}

#[async_trait]
pub trait UsageRepository: Send + Sync + std::fmt::Debug {
    /// Stores the event unless its id was seen; `false` for a duplicate (not an error).
    async fn record(&self, scope: &Scope, event: &UsageEvent) -> DomainResult<bool>;
    async fn for_period(
        &self,
        scope: &Scope,
        subscription: &Id,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> DomainResult<Vec<UsageEvent>>;
}

/// What to do with a request that carries an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyDecision {
    /// First time: process it, then `complete`.
    Process,
    /// Same key, same body, finished: replay the saved response.
    Replay { status: u16, body: String },
    /// Same key, still being processed by another request: 409.
    InFlight,
    /// Same key, different body: 422.
    Mismatch,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    async fn begin(
        &self,
        scope: &Scope,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<IdempotencyDecision>;
    async fn complete(&self, scope: &Scope, key: &str, status: u16, body: &str)
    -> DomainResult<()>;
    /// Releases a key whose processing failed unexpectedly, so a retry can process it.
    async fn abandon(&self, scope: &Scope, key: &str) -> DomainResult<()>;
}
