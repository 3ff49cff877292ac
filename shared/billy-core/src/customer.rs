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

/// The ports customer use cases need.
#[derive(Debug, Clone, Copy)]
pub struct CustomerDeps<'a> {
    pub customers: &'a dyn CustomerRepository,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGenerator,
}

/// Validates and stores a new customer with its `customer.created` audit event.
pub async fn create_customer(deps: CustomerDeps<'_>, ctx: &Context, input: NewCustomer) -> DomainResult<Customer> {
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

pub async fn get_customer(customers: &dyn CustomerRepository, ctx: &Context, raw_id: &str) -> DomainResult<Customer> {
    let id = Id::parse(IdKind::Customer, raw_id, "")?;
    customers.get(&ctx.scope, &id).await?.ok_or_else(|| DomainError::not_found("customer", raw_id))
}

pub async fn list_customers(
    customers: &dyn CustomerRepository,
    ctx: &Context,
    page: &PageRequest,
) -> DomainResult<Page<Customer>> {
    customers.list(&ctx.scope, page).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Actor;
    use crate::clock::FixedClock;
    use crate::ids::RandomIds;
    use crate::memory::MemoryStore;
    use crate::ports::AuditJournal;
    use crate::tenant::{Mode, Scope};
    use chrono::TimeZone;

    fn ctx() -> Context {
        Context {
            scope: Scope::new(Id::from_trusted("ten_1".into()), Mode::Test),
            actor: Actor::Admin,
            request_id: Some("req-1".into()),
        }
    }

    #[tokio::test]
    async fn creating_a_customer_stores_it_with_one_audit_event() {
        // GIVEN an empty store and a fixed clock
        let store = MemoryStore::default();
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap());
        let ids = RandomIds::new(&clock);
        let deps = CustomerDeps { customers: &store, clock: &clock, ids: &ids };
        // WHEN a customer is created with padded input
        let input = NewCustomer {
            name: Some("  Ada  ".into()),
            email: Some("ada@example.com".into()),
            ..NewCustomer::default()
        };
        let c = create_customer(deps, &ctx(), input).await.unwrap();
        // THEN it is trimmed, timestamped by the clock, and journaled once with the request id
        assert_eq!(c.name.as_deref(), Some("Ada"));
        assert_eq!(c.created, clock.now());
        let events = store.for_entity(&ctx().scope, &c.id).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].action.as_str(), events[0].request_id.as_deref()), ("customer.created", Some("req-1")));
        assert_eq!(get_customer(&store, &ctx(), c.id.as_str()).await.unwrap(), c);
    }

    #[tokio::test]
    async fn invalid_customers_are_rejected_and_nothing_is_stored() {
        let store = MemoryStore::default();
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap());
        let ids = RandomIds::new(&clock);
        let deps = CustomerDeps { customers: &store, clock: &clock, ids: &ids };
        let long_name = "x".repeat(257);
        let cases = [
            (NewCustomer { email: Some("no-at-sign".into()), ..NewCustomer::default() }, "email"),
            (NewCustomer { email: Some("a b@c.io".into()), ..NewCustomer::default() }, "email"),
            (NewCustomer { name: Some(long_name), ..NewCustomer::default() }, "name"),
            (NewCustomer { name: Some("tab\there".into()), ..NewCustomer::default() }, "name"),
            (NewCustomer { metadata: [(String::new(), "v".into())].into(), ..NewCustomer::default() }, "metadata"),
        ];
        for (input, param) in cases {
            let err = create_customer(deps, &ctx(), input).await.unwrap_err();
            assert!(matches!(err, DomainError::Invalid { param: Some(ref p), .. } if p == param), "{err:?}");
        }
        assert_eq!(store.audit_len(), 0);
        assert!(list_customers(&store, &ctx(), &PageRequest::default()).await.unwrap().data.is_empty());
    }
}
