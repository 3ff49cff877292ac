//! The ports: what the domain needs from the outside world, each a small trait with a real adapter
//! (billy-aws) and an in-memory one (`crate::memory`) for fast tests.

use crate::audit::AuditEvent;
use crate::customer::Customer;
use crate::error::DomainResult;
use crate::ids::Id;
use crate::page::{Page, PageRequest};
use crate::tenant::{ApiKeyHash, ApiKeyRecord, Scope, Tenant};
use async_trait::async_trait;
use serde::Serialize;

pub use crate::clock::Clock;
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
