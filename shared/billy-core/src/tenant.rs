//! Tenants, their test/live modes and API keys (kept only as hashes).

use crate::audit::{Actor, Change, Context};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::ports::{Clock, IdGenerator, TenantRepository};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Test-mode data never mixes with live-mode data: every key of every item carries the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Live => "live",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "test" => Some(Self::Test),
            "live" => Some(Self::Live),
            _ => None,
        }
    }
}

/// Whose data a request may see: one tenant in one mode. Every repository call takes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    pub tenant: Id,
    pub mode: Mode,
}

impl Scope {
    pub fn new(tenant: Id, mode: Mode) -> Self {
        Self { tenant, mode }
    }

    /// The partition-key prefix of everything this scope owns, e.g. `ten_…#test`.
    pub fn key(&self) -> String {
        format!("{}#{}", self.tenant, self.mode.as_str())
    }

    /// Reads back a `key()` (as echoed in a gateway's metadata).
    pub fn parse_key(key: &str) -> Option<Self> {
        let (tenant, mode) = key.split_once('#')?;
        Some(Self::new(Id::parse(IdKind::Tenant, tenant, "").ok()?, Mode::parse(mode)?))
    }

    pub fn livemode(&self) -> bool {
        self.mode == Mode::Live
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: Id,
    pub name: String,
    pub created: DateTime<Utc>,
}

impl Tenant {
    pub fn new(id: Id, name: &str, created: DateTime<Utc>) -> DomainResult<Self> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 256 {
            return Err(DomainError::invalid("parameter_invalid", "name must be 1 to 256 characters", Some("name")));
        }
        Ok(Self { id, name: name.to_owned(), created })
    }
}

/// A secret API key, shown to its owner once and never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…)", &self.0[..self.0.len().min(8)])
    }
}

const KEY_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 32 base62 characters: about 190 bits, so an unsalted SHA-256 is a safe lookup hash
/// (salting protects guessable secrets such as passwords, not random ones).
const KEY_RANDOM_LEN: usize = 32;

impl ApiKeySecret {
    pub fn generate(mode: Mode) -> Self {
        let mut rng = rand::rng();
        let random: String =
            (0..KEY_RANDOM_LEN).map(|_| char::from(KEY_ALPHABET[rng.random_range(0..KEY_ALPHABET.len())])).collect();
        Self(format!("sk_{}_{random}", mode.as_str()))
    }

    /// Accepts what a client sent; the format check keeps garbage away from the key store.
    pub fn parse(raw: &str) -> DomainResult<Self> {
        let well_formed = ["sk_test_", "sk_live_"].iter().any(|p| {
            raw.strip_prefix(p)
                .is_some_and(|r| r.len() == KEY_RANDOM_LEN && r.bytes().all(|c| KEY_ALPHABET.contains(&c)))
        });
        if well_formed { Ok(Self(raw.to_owned())) } else { Err(DomainError::Unauthenticated("invalid API key".into())) }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn mode(&self) -> Mode {
        if self.0.starts_with("sk_live_") { Mode::Live } else { Mode::Test }
    }

    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// The last four characters, safe to show in listings.
    pub fn last4(&self) -> String {
        self.0[self.0.len() - 4..].to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKeyHash(pub String);

/// What is stored of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: Id,
    pub tenant: Id,
    pub mode: Mode,
    pub hash: ApiKeyHash,
    pub last4: String,
    pub created: DateTime<Utc>,
}

impl ApiKeyRecord {
    pub fn scope(&self) -> Scope {
        Scope::new(self.tenant.clone(), self.mode)
    }
}

/// A new tenant with its two keys, each shown once.
#[derive(Debug, Clone)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    pub test_key: ApiKeySecret,
    pub live_key: ApiKeySecret,
}

/// Creates a tenant with one test and one live key; only the keys' hashes are stored.
pub async fn create_tenant(
    tenants: &dyn TenantRepository,
    clock: &dyn Clock,
    ids: &dyn IdGenerator,
    request_id: Option<String>,
    name: &str,
) -> DomainResult<CreatedTenant> {
    let now = clock.now();
    let tenant = Tenant::new(ids.next(IdKind::Tenant), name, now)?;
    let test_key = ApiKeySecret::generate(Mode::Test);
    let live_key = ApiKeySecret::generate(Mode::Live);
    let records: Vec<ApiKeyRecord> = [&test_key, &live_key]
        .into_iter()
        .map(|secret| ApiKeyRecord {
            id: ids.next(IdKind::ApiKey),
            tenant: tenant.id.clone(),
            mode: secret.mode(),
            hash: secret.hash(),
            last4: secret.last4(),
            created: now,
        })
        .collect();
    // Tenant-level changes are journaled under the live scope: the tenant is a real account.
    let ctx = Context::new(Scope::new(tenant.id.clone(), Mode::Live), Actor::Admin, request_id);
    let event = ctx.record(
        ids,
        now,
        Change {
            entity: &tenant.id,
            entity_type: "tenant",
            account: None,
            action: "tenant.created",
            version: 1,
            reason: None,
            before: None,
            after: Some(&tenant),
            change: None,
        },
    );
    tenants.create(&tenant, &records, &event).await?;
    Ok(CreatedTenant { tenant, test_key, live_key })
}

/// Resolves a bearer token to the acting key; unknown and malformed keys look the same.
pub async fn authenticate(
    tenants: &dyn TenantRepository,
    bearer: &str,
    request_id: Option<String>,
) -> DomainResult<Context> {
    let secret = ApiKeySecret::parse(bearer)?;
    let record = tenants
        .key_by_hash(&secret.hash())
        .await?
        .ok_or_else(|| DomainError::Unauthenticated("invalid API key".into()))?;
    Ok(Context::new(record.scope(), Actor::ApiKey { key: record.id.clone() }, request_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash_stably() {
        // GIVEN a fresh live key
        let key = ApiKeySecret::generate(Mode::Live);
        // THEN it has the documented shape and the same hash every time
        assert!(key.expose().starts_with("sk_live_"));
        assert_eq!(key.expose().len(), 8 + 32);
        assert_eq!(ApiKeySecret::parse(key.expose()).unwrap().hash(), key.hash());
        assert_eq!(key.mode(), Mode::Live);
        assert_eq!(key.hash().0.len(), 64);
    }

    #[test]
    fn hash_is_sha256_of_the_key() {
        // sha256("sk_test_00000000000000000000000000000000"), worked out with `sha256sum`.
        let key = ApiKeySecret::parse("sk_test_00000000000000000000000000000000").unwrap();
        assert_eq!(key.hash().0, "9e7856735d2236cd8512842bd06a1515fa62426519a64c6705bffeb9d010337c");
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for raw in
            ["", "sk_test_", "pk_test_00000000000000000000000000000000", "sk_test_0000000000000000000000000000000!"]
        {
            assert!(matches!(ApiKeySecret::parse(raw), Err(DomainError::Unauthenticated(_))), "{raw}");
        }
    }
}
