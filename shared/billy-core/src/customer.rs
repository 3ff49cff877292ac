//! Customers: who is billed or paid, validated at construction, and their use cases.

use crate::audit::{Change, Context};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::page::{Page, PageRequest};
use crate::ports::{Clock, CustomerRepository, IdGenerator};
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
    let bad = |message: String| {
        Err(DomainError::invalid(
            "metadata_invalid",
            message,
            Some("metadata"),
        ))
    };
    if metadata.len() > MAX_METADATA_KEYS {
        return bad(format!(
            "metadata can have at most {MAX_METADATA_KEYS} keys"
        ));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_LEN {
            return bad(format!(
                "metadata keys must be 1 to {MAX_METADATA_KEY_LEN} characters"
            ));
        }
        if v.chars().count() > MAX_METADATA_VALUE_LEN {
            return bad(format!(
                "metadata values must be at most {MAX_METADATA_VALUE_LEN} characters"
            ));
        }
    }
    Ok(())
}

/// The ports customer use cases need.
#[derive(Debug, Clone, Copy)]
pub struct CustomerDeps<'a> {
    pub customers: &'a dyn CustomerRepository,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGenerator,
}

/// Validates and stores a new customer with its `customer.created` audit event.
pub async fn create_customer(
    deps: CustomerDeps<'_>,
    ctx: &Context,
    input: NewCustomer,
) -> DomainResult<Customer> {
    let name = bounded_text(input.name, "name", 256)?;
    let email = validate_email(input.email)?;
    let description = bounded_text(input.description, "description", 1000)?;
    validate_metadata(&input.metadata)?;
    let now = deps.clock.now();
    let customer = Customer {
        id: deps.ids.next(IdKind::Customer),
        created: now,
        name,
        email,
        description,
        metadata: input.metadata,
        // Attached at creation once test clocks exist (see the test clock use cases).
        test_clock: None,
        default_payment_method: None,
        livemode: ctx.scope.livemode(),
        version: 1,
    };
    let event = ctx.record(
        deps.ids,
        now,
        Change {
            entity: &customer.id,
            entity_type: "customer",
            account: Some(&customer.id),
            action: "customer.created",
            version: customer.version,
            reason: None,
            before: None,
            after: Some(&customer),
            change: None,
        },
    );
    deps.customers.insert(&customer, &event).await?;
    Ok(customer)
}

pub async fn get_customer(
    customers: &dyn CustomerRepository,
    ctx: &Context,
    raw_id: &str,
) -> DomainResult<Customer> {
    let id = Id::parse(IdKind::Customer, raw_id, "")?;
    customers
        .get(&ctx.scope, &id)
        .await?
        .ok_or_else(|| DomainError::not_found("customer", raw_id))
}

pub async fn list_customers(
    customers: &dyn CustomerRepository,
    ctx: &Context,
    page: &PageRequest,
) -> DomainResult<Page<Customer>> {
    customers.list(&ctx.scope, page).await
}
