//! Tenant settings: one item per tenant and mode, read through a short cache in the warm function
//! instance. A tenant that saved nothing gets the defaults.

use crate::dynamo::ENTITY_SK;
use crate::items::settings_pk;
use crate::store::Store;
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::ports::SettingsRepository;
use billy_core::settings::TenantSettings;
use billy_core::tenant::Scope;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a warm instance trusts what it read.
const CACHE_FOR: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct DynamoSettings {
    store: Store,
    cache: Mutex<HashMap<Scope, (Instant, TenantSettings)>>,
}

impl DynamoSettings {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables), cache: Mutex::new(HashMap::new()) }
    }

    /// Forgets what this instance read of `scope` (after it changed the settings itself).
    pub fn forget(&self, scope: &Scope) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(scope);
    }
}

#[async_trait]
impl SettingsRepository for DynamoSettings {
    async fn get(&self, scope: &Scope) -> DomainResult<TenantSettings> {
        if let Some((at, settings)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(scope)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(settings.clone());
        }
        let settings: TenantSettings = self.store.get(settings_pk(scope), ENTITY_SK).await?.unwrap_or_default();
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(scope.clone(), (Instant::now(), settings.clone()));
        Ok(settings)
    }
}
