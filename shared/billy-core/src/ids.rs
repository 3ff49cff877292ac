//! Typed, prefixed identifiers (`cus_…`, `inv_…`): time-ordered so lists sort by creation.

use crate::clock::Clock;
use crate::error::DomainError;
use chrono::{DateTime, Utc};
use rand::Rng;
use std::fmt;

/// Crockford base32, lower case: URL-safe, no ambiguous letters.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// 10 characters of milliseconds + 16 characters of randomness (80 bits), as in ULID.
const BODY_LEN: usize = 26;

/// The kinds of object Billy names, each with its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    Tenant,
    ApiKey,
    Customer,
    PaymentMethod,
    PayoutDestination,
    Plan,
    Subscription,
    Invoice,
    Transaction,
    Event,
    TestClock,
    WebhookEndpoint,
    WebhookDelivery,
    Usage,
    Export,
    GatewayAccount,
    CreditMovement,
    Coupon,
    Settlement,
    SettlementRun,
    Verification,
    PortalSession,
}

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Tenant => "ten",
            Self::ApiKey => "key",
            Self::Customer => "cus",
            Self::PaymentMethod => "pm",
            Self::PayoutDestination => "pd",
            Self::Plan => "plan",
            Self::Subscription => "sub",
            Self::Invoice => "inv",
            Self::Transaction => "txn",
            Self::Event => "evt",
            Self::TestClock => "clock",
            Self::WebhookEndpoint => "we",
            Self::WebhookDelivery => "wd",
            Self::Usage => "use",
            Self::Export => "exp",
            Self::GatewayAccount => "gwa",
            Self::CreditMovement => "cbt",
            Self::Coupon => "coupon",
            Self::Settlement => "stl",
            Self::SettlementRun => "strun",
            Self::Verification => "ver",
            Self::PortalSession => "bps",
        }
    }

    pub const fn entity(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::ApiKey => "api_key",
            Self::Customer => "customer",
            Self::PaymentMethod => "payment_method",
            Self::PayoutDestination => "payout_destination",
            Self::Plan => "plan",
            Self::Subscription => "subscription",
            Self::Invoice => "invoice",
            Self::Transaction => "transaction",
            Self::Event => "event",
            Self::TestClock => "test_clock",
            Self::WebhookEndpoint => "webhook_endpoint",
            Self::WebhookDelivery => "webhook_delivery",
            Self::Usage => "usage_event",
            Self::Export => "export",
            Self::GatewayAccount => "gateway_account",
            Self::CreditMovement => "credit_movement",
            Self::Coupon => "coupon",
            Self::Settlement => "settlement",
            Self::SettlementRun => "settlement_run",
            Self::Verification => "verification",
            Self::PortalSession => "portal_session",
        }
    }
}

/// A validated id of a known kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Id(String);

impl Id {
    /// Parses an id received from outside, checking its prefix and body. A malformed id is reported
    /// like a missing one (as a 404 for a path id, or a 400 naming `param` for a body field), so
    /// error messages never reveal which ids exist.
    pub fn parse(kind: IdKind, raw: &str, param: &str) -> Result<Self, DomainError> {
        let body = raw.strip_prefix(kind.prefix()).and_then(|rest| rest.strip_prefix('_'));
        if body.is_some_and(|b| b.len() == BODY_LEN && b.bytes().all(|c| ALPHABET.contains(&c))) {
            return Ok(Self(raw.to_owned()));
        }
        let shown: String = raw.chars().take(64).collect();
        Err(if param.is_empty() {
            DomainError::not_found(kind.entity(), shown)
        } else {
            DomainError::invalid("resource_missing", format!("no such {}: '{shown}'", kind.entity()), Some(param))
        })
    }

    /// Trusts a value read back from storage.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Makes new ids; a port so tests can make predictable ones.
pub trait IdGenerator: Send + Sync + std::fmt::Debug {
    fn next(&self, kind: IdKind) -> Id;
}

/// Time-ordered random ids from the injected clock.
#[derive(Debug)]
pub struct RandomIds<C> {
    clock: C,
}

impl<C: Clock> RandomIds<C> {
    pub fn new(clock: C) -> Self {
        Self { clock }
    }
}

impl<C: Clock> IdGenerator for RandomIds<C> {
    fn next(&self, kind: IdKind) -> Id {
        Id(format!("{}_{}", kind.prefix(), encode_body(self.clock.now(), rand::rng().random())))
    }
}

impl Id {
    /// The id of something that must be named the same however often it is made (a domain event
    /// re-announced after a crash, say): the time of `at` and 80 bits of a hash of `seed`.
    pub fn derived(kind: IdKind, at: DateTime<Utc>, seed: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(seed.as_bytes());
        let mut bytes = [0u8; 16];
        bytes[6..].copy_from_slice(&digest[..10]);
        Id(format!("{}_{}", kind.prefix(), encode_body(at, u128::from_be_bytes(bytes))))
    }
}

/// The smallest id of `kind` that can be made at or after `at`: time-ordered ids turn a creation
/// time range into an id range.
pub fn time_floor(kind: IdKind, at: DateTime<Utc>) -> String {
    format!("{}_{}", kind.prefix(), encode_body(at, 0))
}

fn encode_body(at: DateTime<Utc>, random: u128) -> String {
    let millis = u128::try_from(at.timestamp_millis().max(0)).unwrap_or_default();
    // 48 bits of time then 80 of randomness, like a ULID.
    let value = (millis << 80) | (random & ((1u128 << 80) - 1));
    (0..BODY_LEN).rev().map(|i| char::from(ALPHABET[usize::try_from((value >> (i * 5)) & 31).unwrap_or(0)])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use chrono::TimeZone;

    #[test]
    fn derived_ids_are_stable_per_seed_and_parse_back() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let a = Id::derived(IdKind::Event, at, "sandbox:evt_1:invoice.paid");
        assert_eq!(a, Id::derived(IdKind::Event, at, "sandbox:evt_1:invoice.paid"));
        assert_ne!(a, Id::derived(IdKind::Event, at, "sandbox:evt_2:invoice.paid"));
        assert_eq!(Id::parse(IdKind::Event, a.as_str(), "id").unwrap(), a);
        assert!(a.as_str() >= time_floor(IdKind::Event, at).as_str());
    }

    #[test]
    fn generated_ids_carry_their_prefix_and_parse_back() {
        // GIVEN a generator at a fixed time
        let ids = RandomIds::new(FixedClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()));
        // WHEN a customer id is made
        let id = ids.next(IdKind::Customer);
        // THEN it is "cus_" + 26 base32 characters and parses as a customer id only
        assert!(id.as_str().starts_with("cus_"));
        assert_eq!(id.as_str().len(), 4 + 26);
        assert_eq!(Id::parse(IdKind::Customer, id.as_str(), "").unwrap(), id);
        assert!(Id::parse(IdKind::Invoice, id.as_str(), "").is_err());
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let clock = FixedClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let ids = RandomIds::new(&clock);
        let first = ids.next(IdKind::Invoice);
        clock.set(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap());
        let second = ids.next(IdKind::Invoice);
        assert!(first < second);
    }

    #[test]
    fn malformed_ids_are_not_found_errors() {
        for raw in ["", "cus_", "cus_0", "inv_01234567890123456789012345", "cus_0123456789012345678901234U"] {
            let err = Id::parse(IdKind::Customer, raw, "").unwrap_err();
            assert!(matches!(err, DomainError::NotFound { entity: "customer", .. }), "{raw}: {err:?}");
        }
    }
}
