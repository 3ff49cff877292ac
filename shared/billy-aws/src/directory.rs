//! Which gateways a scope may use: the deployment's own (the sandbox, in test mode only) and the
//! tenant's connected accounts, their credentials opened with KMS when first needed and kept in the
//! warm instance until the account changes (its version). A scope's list of accounts is kept for
//! a few seconds (`LISTING_TTL`), so a batch of charges reads it once, not once per charge; a
//! gateway asked for by name and missing from the list reads it again at once.

use crate::adyen::AdyenGateway;
use crate::gateway_accounts::DynamoGatewayAccounts;
use crate::stripe::StripeGateway;
use async_trait::async_trait;
use base64::Engine as _;
use billy_core::gateway::{GatewayRegistry, PaymentGateway};
use billy_core::gateway_account::{AccountSecrets, GatewayAccount};
use billy_core::ids::Id;
use billy_core::ports::{GatewayAccountRepository, GatewayDirectory, SecretBox};
use billy_core::tenant::Scope;
use billy_core::{DomainError, DomainResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a warm instance trusts its list of a scope's accounts: a newly connected account or a
/// replaced credential reaches every charge within this time.
pub const LISTING_TTL: Duration = Duration::from_secs(10);

/// Where each gateway's API is (its own, unless a deployment points at a test peer), and how long
/// a call may take before its outcome counts as unknown.
#[derive(Debug, Clone)]
pub struct GatewayEndpoints {
    pub stripe: String,
    pub adyen: String,
    pub timeout: Duration,
}

impl Default for GatewayEndpoints {
    fn default() -> Self {
        Self {
            stripe: crate::stripe::DEFAULT_API_BASE.to_owned(),
            adyen: crate::adyen::DEFAULT_API_BASE.to_owned(),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
pub struct AwsGatewayDirectory {
    deployment: GatewayRegistry,
    accounts: DynamoGatewayAccounts,
    secrets: Arc<dyn SecretBox>,
    endpoints: GatewayEndpoints,
    opened: Mutex<HashMap<Id, Opened>>,
    listed: Mutex<HashMap<String, Listed>>,
}

/// A scope's accounts as read at `at`.
#[derive(Debug, Clone)]
struct Listed {
    at: Instant,
    accounts: Vec<GatewayAccount>,
}

/// An account's adapter, its credentials opened, for one version of the account.
#[derive(Debug)]
struct Opened {
    version: u64,
    gateway: Arc<dyn PaymentGateway>,
}

impl AwsGatewayDirectory {
    pub fn new(
        deployment: GatewayRegistry,
        accounts: DynamoGatewayAccounts,
        secrets: Arc<dyn SecretBox>,
        endpoints: GatewayEndpoints,
    ) -> Self {
        Self {
            deployment,
            accounts,
            secrets,
            endpoints,
            opened: Mutex::new(HashMap::new()),
            listed: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the deployment's own gateways (tests swap sandboxes in this way).
    pub fn set_deployment(&mut self, deployment: GatewayRegistry) {
        self.deployment = deployment;
    }

    pub fn deployment_registry(&self) -> &GatewayRegistry {
        &self.deployment
    }

    /// A scope's accounts: from the warm instance's list while it is fresh, else read.
    async fn accounts_of(&self, scope: &Scope) -> DomainResult<Vec<GatewayAccount>> {
        let key = scope.key();
        if let Some(listed) = self.listed.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && listed.at.elapsed() < LISTING_TTL
        {
            return Ok(listed.accounts.clone());
        }
        let accounts = self.accounts.for_scope(scope).await?;
        self.listed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Listed { at: Instant::now(), accounts: accounts.clone() });
        Ok(accounts)
    }

    /// The adapter of one account, its credentials opened (once per version of the account).
    async fn open(&self, scope: &Scope, account: &GatewayAccount) -> DomainResult<Arc<dyn PaymentGateway>> {
        if let Some(opened) = self.opened.lock().unwrap_or_else(|p| p.into_inner()).get(&account.id)
            && opened.version == account.version
        {
            return Ok(Arc::clone(&opened.gateway));
        }
        let sealed =
            base64::engine::general_purpose::STANDARD.decode(&account.sealed).map_err(DomainError::unexpected)?;
        let context = GatewayAccount::seal_context(&scope.key(), &account.gateway);
        let plain = self.secrets.open(&sealed, &context).await?;
        let secrets: AccountSecrets = serde_json::from_slice(&plain).map_err(DomainError::unexpected)?;
        let e = &self.endpoints;
        let gateway: Arc<dyn PaymentGateway> = match account.gateway.as_str() {
            "stripe" => {
                let webhook: Vec<String> =
                    secrets.webhook_secret.iter().chain(secrets.previous_webhook_secret.iter()).cloned().collect();
                Arc::new(StripeGateway::new(&e.stripe, &secrets.api_key, webhook, e.timeout))
            }
            "adyen" => Arc::new(AdyenGateway::new(
                &e.adyen,
                &secrets.api_key,
                account.merchant_account.as_deref().unwrap_or_default(),
                secrets.hmac_key.as_deref().unwrap_or_default(),
                e.timeout,
            )),
            other => return Err(DomainError::unexpected(format!("no adapter for gateway {other}"))),
        };
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account.id.clone(), Opened { version: account.version, gateway: Arc::clone(&gateway) });
        Ok(gateway)
    }
}

#[async_trait]
impl GatewayDirectory for AwsGatewayDirectory {
    async fn for_scope(&self, scope: &Scope) -> DomainResult<Arc<GatewayRegistry>> {
        let mut registry = if scope.livemode() { GatewayRegistry::new() } else { self.deployment.clone() };
        for account in self.accounts_of(scope).await? {
            registry.register(self.open(scope, &account).await?);
        }
        Ok(Arc::new(registry))
    }

    async fn for_account(&self, account: &Id) -> DomainResult<Option<(Scope, Arc<dyn PaymentGateway>)>> {
        let Some((scope, found)) = self.accounts.by_id(account).await? else { return Ok(None) };
        let gateway = self.open(&scope, &found).await?;
        Ok(Some((scope, gateway)))
    }

    fn deployment(&self, name: &str) -> Option<Arc<dyn PaymentGateway>> {
        self.deployment.shared(name)
    }

    fn forget(&self, scope: &Scope) {
        self.listed.lock().unwrap_or_else(|p| p.into_inner()).remove(&scope.key());
    }

    async fn names(&self, scope: &Scope) -> DomainResult<Vec<String>> {
        let mut names: Vec<String> = if scope.livemode() {
            Vec::new()
        } else {
            self.deployment.names().into_iter().map(str::to_owned).collect()
        };
        for account in self.accounts.for_scope(scope).await? {
            if !names.contains(&account.gateway) {
                names.push(account.gateway);
            }
        }
        Ok(names)
    }
}
