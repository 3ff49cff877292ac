//! Tenants and API keys in the main table; a key is found by its hash in one GetItem, and kept a
//! short while in the warm function so most requests authenticate without a read.

use crate::dynamo::{ENTITY_SK, PK, SK, to_item};
use crate::store::Store;
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::audit::AuditEvent;
use billy_core::clock::{Clock, SystemClock};
use billy_core::ports::TenantRepository;
use billy_core::tenant::{ApiKeyHash, ApiKeyRecord, Tenant};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a key found is trusted without reading it again, unless configured otherwise.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Keys kept at most: past this the cache starts afresh.
const KEY_CACHE_SIZE: usize = 10_000;

#[derive(Debug, Clone)]
pub struct DynamoTenants {
    store: Store,
    keys: Arc<KeyCache>,
}

/// API keys found recently, each kept for `ttl` (by the deployment's clock, never a test clock's).
/// A key removed from the table stops working within `ttl`; a key not found is never kept, so a
/// new key works at once and a wrong one is read (and refused) every time.
#[derive(Debug)]
struct KeyCache {
    ttl: chrono::Duration,
    clock: Arc<dyn Clock>,
    found: Mutex<HashMap<String, (ApiKeyRecord, DateTime<Utc>)>>,
}

impl KeyCache {
    fn get(&self, hash: &ApiKeyHash) -> Option<ApiKeyRecord> {
        let now = self.clock.now();
        let found = self.found.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        found.get(&hash.0).filter(|(_, at)| now - *at < self.ttl).map(|(record, _)| record.clone())
    }

    fn keep(&self, record: &ApiKeyRecord) {
        if self.ttl <= chrono::Duration::zero() {
            return;
        }
        let now = self.clock.now();
        let mut found = self.found.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if found.len() >= KEY_CACHE_SIZE {
            found.clear();
        }
        found.insert(record.hash.0.clone(), (record.clone(), now));
    }
}

impl DynamoTenants {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self::with_key_ttl(client, tables, KEY_CACHE_TTL, Arc::new(SystemClock))
    }

    /// Keys found are trusted for `ttl` by `clock` without being read again (zero: read every
    /// time).
    pub fn with_key_ttl(
        client: aws_sdk_dynamodb::Client,
        tables: crate::Tables,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::zero());
        Self { store: Store::new(client, tables), keys: Arc::new(KeyCache { ttl, clock, found: Mutex::default() }) }
    }
}

fn key_pk(hash: &ApiKeyHash) -> String {
    format!("APIKEY#{}", hash.0)
}

#[async_trait]
impl TenantRepository for DynamoTenants {
    async fn create(&self, tenant: &Tenant, keys: &[ApiKeyRecord], event: &AuditEvent) -> DomainResult<()> {
        let mut puts = vec![
            self.store.put_new(to_item(tenant, &[(PK, format!("TENANT#{}", tenant.id)), (SK, ENTITY_SK.into())])?)?,
        ];
        for key in keys {
            puts.push(self.store.put_new(to_item(key, &[(PK, key_pk(&key.hash)), (SK, ENTITY_SK.into())])?)?);
        }
        self.store.transact(puts, std::slice::from_ref(event), "tenant").await
    }

    async fn key_by_hash(&self, hash: &ApiKeyHash) -> DomainResult<Option<ApiKeyRecord>> {
        if let Some(record) = self.keys.get(hash) {
            return Ok(Some(record));
        }
        let found: Option<ApiKeyRecord> = self.store.get(key_pk(hash), ENTITY_SK).await?;
        if let Some(record) = &found {
            self.keys.keep(record);
        }
        Ok(found)
    }
}
