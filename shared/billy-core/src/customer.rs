//! Customers: who is billed or paid, validated at construction.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_LEN: usize = 40;
pub const MAX_METADATA_VALUE_LEN: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: Id,
    pub created: DateTime<Utc>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub test_clock: Option<Id>,
    pub default_payment_method: Option<Id>,
    /// Where payouts go (a `pd_…`); the first destination registered becomes it.
    #[serde(default)]
    pub default_payout_destination: Option<Id>,
    pub livemode: bool,
    /// Optimistic-concurrency version; also the audit event's sequence number.
    pub version: u64,
}

/// What a client may give when creating a customer, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewCustomer {
    pub name: Option<String>,
    pub email: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

fn bounded_text(value: Option<String>, param: &str, max: usize) -> DomainResult<Option<String>> {
    match value.map(|v| v.trim().to_owned()) {
        Some(v) if v.chars().count() > max => Err(DomainError::invalid(
            "parameter_invalid",
            format!("{param} must be at most {max} characters"),
            Some(param),
        )),
        Some(v) if v.chars().any(char::is_control) => Err(DomainError::invalid(
            "parameter_invalid",
            format!("{param} must not contain control characters"),
            Some(param),
        )),
        Some(v) if v.is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// A deliberately plain check (one `@`, a dotted domain, no spaces): deliverability is the
/// tenant's business, but obvious typos are caught before they reach invoices.
fn validate_email(email: Option<String>) -> DomainResult<Option<String>> {
    let email = bounded_text(email, "email", 320)?;
    if let Some(e) = &email {
        let valid = e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.contains(char::is_whitespace)
        });
        if !valid {
            return Err(DomainError::invalid(
                "email_invalid",
                format!("'{e}' is not a valid email address"),
                Some("email"),
            ));
        }
    }
    Ok(email)
}

pub fn validate_metadata(metadata: &BTreeMap<String, String>) -> DomainResult<()> {
    let bad = |message: String| Err(DomainError::invalid("metadata_invalid", message, Some("metadata")));
    if metadata.len() > MAX_METADATA_KEYS {
        return bad(format!("metadata can have at most {MAX_METADATA_KEYS} keys"));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_LEN {
            return bad(format!("metadata keys must be 1 to {MAX_METADATA_KEY_LEN} characters"));
        }
        if v.chars().count() > MAX_METADATA_VALUE_LEN {
            return bad(format!("metadata values must be at most {MAX_METADATA_VALUE_LEN} characters"));
        }
    }
    Ok(())
}

/// Checks and normalises a new customer's fields.
pub fn validate_new_customer(input: NewCustomer) -> DomainResult<NewCustomer> {
    let name = bounded_text(input.name, "name", 256)?;
    let email = validate_email(input.email)?;
    let description = bounded_text(input.description, "description", 1000)?;
    validate_metadata(&input.metadata)?;
    Ok(NewCustomer { name, email, description, metadata: input.metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_customers_are_trimmed_and_empty_fields_dropped() {
        // GIVEN padded input with an empty description
        let input = NewCustomer {
            name: Some("  Ada  ".into()),
            email: Some("ada@example.com".into()),
            description: Some("   ".into()),
            ..NewCustomer::default()
        };
        // THEN the name is trimmed and the blank description is absent
        let valid = validate_new_customer(input).unwrap();
        assert_eq!(valid.name.as_deref(), Some("Ada"));
        assert_eq!(valid.description, None);
    }

    #[test]
    fn invalid_customers_are_rejected_naming_the_field() {
        let long_name = "x".repeat(257);
        let cases = [
            (NewCustomer { email: Some("no-at-sign".into()), ..NewCustomer::default() }, "email"),
            (NewCustomer { email: Some("a b@c.io".into()), ..NewCustomer::default() }, "email"),
            (NewCustomer { email: Some("a@b".into()), ..NewCustomer::default() }, "email"),
            (NewCustomer { name: Some(long_name), ..NewCustomer::default() }, "name"),
            (NewCustomer { name: Some("tab\there".into()), ..NewCustomer::default() }, "name"),
            (NewCustomer { metadata: [(String::new(), "v".into())].into(), ..NewCustomer::default() }, "metadata"),
        ];
        for (input, param) in cases {
            let err = validate_new_customer(input).unwrap_err();
            assert!(matches!(err, DomainError::Invalid { param: Some(ref p), .. } if p == param), "{err:?}");
        }
    }
}
