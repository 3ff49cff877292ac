//! In-memory adapters of the ports, for fast domain tests (never a stand-in for integration tests).

use crate::audit::AuditEvent;
use crate::customer::Customer;
use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::page::{Page, PageRequest};
use crate::ports::{AuditJournal, CustomerRepository, TenantRepository};
use crate::tenant::{ApiKeyHash, ApiKeyRecord, Scope, Tenant};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct State {
    tenants: BTreeMap<Id, Tenant>,
    keys: BTreeMap<String, ApiKeyRecord>,
    customers: BTreeMap<(Scope, Id), Customer>,
    audit: Vec<AuditEvent>,
}

/// One store behind every in-memory port, so a change and its audit event land together.
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<State>);

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn audit_len(&self) -> usize {
        self.with(|s| s.audit.len())
    }
}

fn append(state: &mut State, event: &AuditEvent) -> DomainResult<()> {
    let taken =
        state.audit.iter().any(|e| e.scope == event.scope && e.entity == event.entity && e.version == event.version);
    if taken {
        return Err(DomainError::conflict("version_conflict", format!("{} was changed concurrently", event.entity)));
    }
    state.audit.push(event.clone());
    Ok(())
}

#[async_trait]
impl TenantRepository for MemoryStore {
    async fn create(&self, tenant: &Tenant, keys: &[ApiKeyRecord], event: &AuditEvent) -> DomainResult<()> {
        self.with(|s| {
            if s.tenants.contains_key(&tenant.id) {
                return Err(DomainError::conflict("already_exists", "tenant exists"));
            }
            append(s, event)?;
            s.tenants.insert(tenant.id.clone(), tenant.clone());
            for k in keys {
                s.keys.insert(k.hash.0.clone(), k.clone());
            }
            Ok(())
        })
    }

    async fn key_by_hash(&self, hash: &ApiKeyHash) -> DomainResult<Option<ApiKeyRecord>> {
        Ok(self.with(|s| s.keys.get(&hash.0).cloned()))
    }
}

#[async_trait]
impl CustomerRepository for MemoryStore {
    async fn insert(&self, customer: &Customer, event: &AuditEvent) -> DomainResult<()> {
        self.with(|s| {
            let key = (event.scope.clone(), customer.id.clone());
            if s.customers.contains_key(&key) {
                return Err(DomainError::conflict("already_exists", "customer exists"));
            }
            append(s, event)?;
            s.customers.insert(key, customer.clone());
            Ok(())
        })
    }

    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Customer>> {
        Ok(self.with(|s| s.customers.get(&(scope.clone(), id.clone())).cloned()))
    }

    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Customer>> {
        self.with(|s| {
            let mut all: Vec<&Customer> =
                s.customers.iter().filter(|((sc, _), _)| sc == scope).map(|(_, c)| c).collect();
            all.sort_by(|a, b| b.id.cmp(&a.id));
            let start = page
                .starting_after
                .as_ref()
                .map_or(0, |after| all.iter().position(|c| &c.id < after).unwrap_or(all.len()));
            let rest = &all[start..];
            let data: Vec<Customer> = rest.iter().take(page.limit).map(|c| (*c).clone()).collect();
            let has_more = rest.len() > page.limit;
            Ok(Page { next_cursor: has_more.then(|| data.last().map(|c| c.id.to_string())).flatten(), data, has_more })
        })
    }
}

#[async_trait]
impl AuditJournal for MemoryStore {
    async fn for_entity(&self, scope: &Scope, entity: &Id) -> DomainResult<Vec<AuditEvent>> {
        Ok(self.with(|s| s.audit.iter().filter(|e| &e.scope == scope && &e.entity == entity).cloned().collect()))
    }

    async fn for_account(&self, scope: &Scope, account: &Id) -> DomainResult<Vec<AuditEvent>> {
        Ok(self.with(|s| {
            s.audit.iter().filter(|e| &e.scope == scope && e.account.as_ref() == Some(account)).cloned().collect()
        }))
    }
}
