//! A tenant's own accounts at the payment gateways (Stripe, Adyen): credentials the tenant gives
//! through the API, sealed with KMS at once, never stored in clear, journaled, logged or returned.
//! Each account has its own webhook address, so two tenants' webhooks and secrets never mix.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The gateways a tenant can connect an account of its own to.
pub const CONNECTABLE: [&str; 2] = ["stripe", "adyen"];

/// An account as stored: what is safe to show, and the sealed credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayAccount {
    pub id: Id,
    pub gateway: String,
    /// Adyen's merchant account (not a secret).
    pub merchant_account: Option<String>,
    /// The credentials, sealed (base64 of the KMS ciphertext).
    pub sealed: String,
    /// Which credentials are set, to show without showing them.
    pub secrets_set: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub livemode: bool,
    pub version: u64,
}

/// What an account shows (and its audit events freeze): never the sealed credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub id: Id,
    pub gateway: String,
    pub merchant_account: Option<String>,
    pub secrets_set: Vec<String>,
    pub updated: DateTime<Utc>,
    pub livemode: bool,
}

impl GatewayAccount {
    pub fn view(&self) -> AccountView {
        AccountView {
            id: self.id.clone(),
            gateway: self.gateway.clone(),
            merchant_account: self.merchant_account.clone(),
            secrets_set: self.secrets_set.clone(),
            updated: self.updated,
            livemode: self.livemode,
        }
    }

    /// What binds the ciphertext to its tenant and gateway: KMS refuses to open it elsewhere.
    pub fn seal_context(scope_key: &str, gateway: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("billy-tenant".to_owned(), scope_key.to_owned()),
            ("billy-gateway".to_owned(), gateway.to_owned()),
        ])
    }
}

/// The credentials themselves: only ever serialised to be sealed, and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSecrets {
    pub api_key: String,
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Adyen's notification HMAC key, hex.
    #[serde(default)]
    pub hmac_key: Option<String>,
    /// A second webhook secret, accepted too while a rotation is under way.
    #[serde(default)]
    pub previous_webhook_secret: Option<String>,
}

impl fmt::Debug for AccountSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountSecrets(…)")
    }
}

impl AccountSecrets {
    pub fn names(&self) -> Vec<String> {
        let mut names = vec!["api_key".to_owned()];
        names.extend(self.webhook_secret.as_ref().map(|_| "webhook_secret".to_owned()));
        names.extend(self.hmac_key.as_ref().map(|_| "hmac_key".to_owned()));
        names.extend(self.previous_webhook_secret.as_ref().map(|_| "previous_webhook_secret".to_owned()));
        names
    }

    /// What each gateway needs, checked before anything is sealed (values are never echoed).
    pub fn validate(&self, gateway: &str, merchant_account: Option<&str>) -> DomainResult<()> {
        let bad = |code: &'static str, m: &str, param: &str| Err(DomainError::invalid(code, m.to_owned(), Some(param)));
        let printable = |s: &str| !s.is_empty() && s.len() <= 512 && s.chars().all(|c| c.is_ascii_graphic());
        if !printable(&self.api_key) {
            return bad("credentials_invalid", "api_key must be 1 to 512 visible characters", "api_key");
        }
        for (secret, param) in
            [(&self.webhook_secret, "webhook_secret"), (&self.previous_webhook_secret, "previous_webhook_secret")]
        {
            if secret.as_deref().is_some_and(|s| !printable(s)) {
                return bad("credentials_invalid", "a webhook secret must be 1 to 512 visible characters", param);
            }
        }
        match gateway {
            "stripe" => {
                if !self.api_key.starts_with("sk_") && !self.api_key.starts_with("rk_") {
                    return bad("credentials_invalid", "a Stripe API key starts with sk_ or rk_", "api_key");
                }
                if !self.webhook_secret.as_deref().is_some_and(|s| s.starts_with("whsec_")) {
                    return bad("credentials_invalid", "a Stripe webhook secret (whsec_…) is needed", "webhook_secret");
                }
            }
            "adyen" => {
                let hex_key =
                    self.hmac_key.as_deref().is_some_and(|k| k.len() == 64 && k.chars().all(|c| c.is_ascii_hexdigit()));
                if !hex_key {
                    return bad("credentials_invalid", "Adyen's HMAC key is 64 hexadecimal characters", "hmac_key");
                }
                if !merchant_account.is_some_and(|m| {
                    !m.is_empty()
                        && m.len() <= 100
                        && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                }) {
                    return bad("credentials_invalid", "Adyen needs its merchant account", "merchant_account");
                }
            }
            other => {
                return Err(DomainError::invalid(
                    "gateway_unknown",
                    format!("accounts can be connected for {}, not '{other}'", CONNECTABLE.join(", ")),
                    Some("gateway"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(api_key: &str, webhook: Option<&str>, hmac: Option<&str>) -> AccountSecrets {
        AccountSecrets {
            api_key: api_key.into(),
            webhook_secret: webhook.map(Into::into),
            hmac_key: hmac.map(Into::into),
            previous_webhook_secret: None,
        }
    }

    #[test]
    fn each_gateway_gets_what_it_needs_and_secrets_never_show() {
        assert!(secrets("sk_test_1", Some("whsec_1"), None).validate("stripe", None).is_ok());
        assert!(secrets("pk_test_1", Some("whsec_1"), None).validate("stripe", None).is_err());
        assert!(secrets("sk_test_1", None, None).validate("stripe", None).is_err());
        let key = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
        assert!(secrets("AQE1", None, Some(key)).validate("adyen", Some("TestMerchant")).is_ok());
        assert!(secrets("AQE1", None, Some(key)).validate("adyen", None).is_err());
        assert!(secrets("AQE1", None, Some("xyz")).validate("adyen", Some("TestMerchant")).is_err());
        assert!(secrets("k", None, None).validate("paypal", None).is_err());
        let shown = format!("{:?}", secrets("sk_test_secret", Some("whsec_secret"), None));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
