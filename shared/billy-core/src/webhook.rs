//! Outgoing webhooks: a tenant's endpoints, each delivery of one of Billy's events to one of them,
//! the signature receivers check (Stripe's scheme, so Stripe's own verifiers accept it), the retry
//! schedule, and which destinations a live endpoint may point at.

use crate::error::{DomainError, DomainResult};
use crate::events::EventType;
use crate::ids::{Id, IdKind};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The header a delivery's signature travels in.
pub const SIGNATURE_HEADER: &str = "Billy-Signature";
/// Every event type, for an endpoint that wants them all.
pub const ALL_EVENTS: &str = "*";
/// How long a rotated-out secret keeps signing by default, and at most.
pub const DEFAULT_OVERLAP: Duration = Duration::hours(24);
pub const MAX_OVERLAP: Duration = Duration::days(7);
/// Endpoints per tenant and mode (every event is offered to each of them).
pub const MAX_ENDPOINTS: usize = 16;
/// Attempts kept on a delivery (the oldest are dropped past this; the count stays exact).
const KEPT_ATTEMPTS: usize = 30;
const MAX_URL_LEN: usize = 2048;

/// An endpoint as stored: its signing secrets are sealed (base64 of the KMS ciphertext).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: Id,
    pub url: String,
    /// Event types delivered (wire names), or `["*"]` for every one.
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
    /// The current secret first; a rotated-out one follows until its `expires_at`.
    pub secrets: Vec<SealedSecret>,
    pub deleted: bool,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub livemode: bool,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub sealed: String,
    pub created: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What an endpoint shows, and what its audit events freeze: never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    pub id: Id,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
    pub secret_created: Option<DateTime<Utc>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub created: DateTime<Utc>,
    pub livemode: bool,
}

impl WebhookEndpoint {
    pub fn view(&self) -> EndpointView {
        EndpointView {
            id: self.id.clone(),
            url: self.url.clone(),
            enabled_events: self.enabled_events.clone(),
            description: self.description.clone(),
            secret_created: self.secrets.first().map(|s| s.created),
            previous_secret_expires_at: self.secrets.get(1).and_then(|s| s.expires_at),
            deleted: self.deleted,
            created: self.created,
            livemode: self.livemode,
        }
    }

    pub fn wants(&self, kind: &str) -> bool {
        !self.deleted && self.enabled_events.iter().any(|e| e == ALL_EVENTS || e == kind)
    }

    /// The secrets that sign at `now`: the current one, and a rotated-out one until it expires.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&SealedSecret> {
        self.secrets.iter().filter(|s| s.expires_at.is_none_or(|at| now < at)).collect()
    }

    /// Makes `sealed` the current secret; the one it replaces keeps signing for `overlap`.
    pub fn rotate(&mut self, sealed: String, now: DateTime<Utc>, overlap: Duration) -> DomainResult<()> {
        if overlap < Duration::zero() || overlap > MAX_OVERLAP {
            return Err(DomainError::invalid(
                "overlap_invalid",
                format!("the previous secret may keep signing for 0 to {} hours", MAX_OVERLAP.num_hours()),
                Some("expire_previous_in_hours"),
            ));
        }
        let mut previous = self.secrets.first().cloned();
        if let Some(p) = previous.as_mut() {
            p.expires_at = Some(now + overlap);
        }
        self.secrets = std::iter::once(SealedSecret { sealed, created: now, expires_at: None })
            .chain(previous.filter(|p| p.expires_at.is_some_and(|at| at > now)))
            .collect();
        self.updated = now;
        self.version += 1;
        Ok(())
    }

    /// What binds a sealed secret to its tenant and endpoint: KMS refuses to open it elsewhere.
    pub fn seal_context(scope_key: &str, endpoint: &Id) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("billy-tenant".to_owned(), scope_key.to_owned()),
            ("billy-webhook-endpoint".to_owned(), endpoint.to_string()),
        ])
    }
}

/// Checks the event types an endpoint asks for: known wire names, or `*` alone.
pub fn validate_events(events: &[String]) -> DomainResult<Vec<String>> {
    let bad = |m: String| DomainError::invalid("enabled_events_invalid", m, Some("enabled_events"));
    if events.is_empty() {
        return Err(bad("name at least one event type, or \"*\" for all of them".into()));
    }
    if events.iter().any(|e| e == ALL_EVENTS) {
        return if events.len() == 1 { Ok(events.to_vec()) } else { Err(bad("\"*\" stands alone".into())) };
    }
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        if EventType::from_action(e).is_none() {
            let shown: String = e.chars().take(64).collect();
            return Err(bad(format!("'{shown}' is not an event type Billy sends")));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

/// A URL an endpoint may be registered with, and what must still be checked when it is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub url: String,
    pub host: String,
    /// Every address the host resolves to must be public (live endpoints, and every endpoint of a
    /// deployment), checked again at each delivery, so a name re-pointed at a private address
    /// later is refused too. Otherwise (local test-mode receivers) only link-local is refused.
    pub public_only: bool,
}

/// Where endpoints may point, as the deployment allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalEndpoints {
    /// Every endpoint must resolve to public addresses (deployments).
    Refused,
    /// Test-mode endpoints may be loopback or private receivers (the local runner and its tests).
    AllowedInTestMode,
}

/// Checks an endpoint URL by its text: http(s) with a host and no credentials; in live mode https
/// only; an address literal must be public unless the deployment allows local test-mode
/// receivers, and is never link-local. Names are resolved by the sender.
pub fn destination(raw: &str, livemode: bool, local: LocalEndpoints) -> DomainResult<Destination> {
    let bad = |code: &'static str, m: &str| Err(DomainError::invalid(code, m.to_owned(), Some("url")));
    if raw.len() > MAX_URL_LEN {
        return bad("url_invalid", "a URL is at most 2048 characters");
    }
    let Ok(url) = url::Url::parse(raw) else { return bad("url_invalid", "not an absolute http(s) URL") };
    if !matches!(url.scheme(), "http" | "https") {
        return bad("url_invalid", "the URL must be http or https");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("url_invalid", "credentials do not belong in the URL (they would be stored in clear)");
    }
    if url.fragment().is_some() {
        return bad("url_invalid", "a URL fragment is never sent; leave it out");
    }
    let Some(host) = url.host() else { return bad("url_invalid", "the URL has no host") };
    if livemode && url.scheme() != "https" {
        return bad("url_not_https", "live-mode endpoints must use https");
    }
    let literal = match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    };
    let host_text = match host {
        url::Host::Ipv6(v6) => v6.to_string(),
        other => other.to_string(),
    };
    if literal.is_some_and(is_link_local) {
        return bad("url_not_public", "endpoints may not point at link-local addresses");
    }
    let public_only = livemode || local == LocalEndpoints::Refused;
    if public_only {
        if literal.is_some_and(|ip| !is_public(ip)) {
            return bad("url_not_public", "endpoints may not point at private, loopback or link-local addresses");
        }
        let name = host_text.trim_end_matches('.').to_ascii_lowercase();
        let local_name = ["localhost", ".localhost", ".internal", ".local"]
            .iter()
            .any(|suffix| if suffix.starts_with('.') { name.ends_with(suffix) } else { name == *suffix });
        if local_name {
            return bad("url_not_public", "endpoints may not point at local names");
        }
    }
    Ok(Destination { url: url.to_string(), host: host_text, public_only })
}

/// Link-local addresses hold cloud metadata services: never a destination, in any mode.
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local()),
    }
}

/// Whether an address is reachable on the public internet: not private, loopback, link-local
/// (the cloud metadata service lives there), shared, reserved, documentation or multicast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 88 && c == 99) // 6to4 relays
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [first, second, third, fourth, ..] = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (first == 0x2001 && second == 0x0db8) // documentation
        || (first == 0x2001 && second == 0) // Teredo (tunnels to IPv4)
        || first == 0x2002 // 6to4 (tunnels to IPv4)
        || (first == 0x0064 && second == 0xff9b) // NAT64, well-known and local (reach IPv4)
        || (first == 0x0100 && second == 0 && third == 0 && fourth == 0) // discard-only
        || ip.to_ipv4().is_some()) // IPv4-compatible
}

/// The `Billy-Signature` value for `body` sent at `t` (unix seconds): Stripe's scheme, one `v1` per
/// secret that signs (during a rotation, receivers holding either secret accept it).
pub fn signature(secrets: &[&str], t: i64, body: &str) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { continue };
        mac.update(format!("{t}.{body}").as_bytes());
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac.finalize().into_bytes()));
    }
    header
}

/// A new signing secret: `whsec_` and 32 random bytes, base64url (what Stripe's look like).
pub fn new_secret() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The gaps between a failed delivery's attempts: about three days in all, like Stripe's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        let minutes = [1, 5, 30, 120, 300, 600, 600, 600, 600, 720, 720];
        Self(minutes.iter().map(|m| Duration::minutes(*m)).collect())
    }
}

impl RetrySchedule {
    /// Parses comma-separated seconds (a deployment may shorten the schedule; tests do).
    pub fn parse(text: &str) -> Result<Self, String> {
        let gaps: Result<Vec<Duration>, String> = text
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Duration::seconds)
                    .ok_or_else(|| format!("bad gap '{s}'"))
            })
            .collect();
        let gaps = gaps?;
        if gaps.is_empty() { Err("no gaps".into()) } else { Ok(Self(gaps)) }
    }

    /// Attempts in all: the first and one per gap.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.0.len() + 1).unwrap_or(u32::MAX)
    }

    /// The gap after failed attempt `n` (1-based), if another attempt follows.
    pub fn gap_after(&self, n: u32) -> Option<Duration> {
        self.0.get(usize::try_from(n).ok()?.checked_sub(1)?).copied()
    }

    pub fn total(&self) -> Duration {
        self.0.iter().fold(Duration::zero(), |a, b| a + *b)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Every scheduled attempt failed: kept, visible and re-sendable by hand.
    DeadLettered,
    /// Its endpoint was deleted before it could be delivered.
    Canceled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::DeadLettered => "dead_lettered",
            Self::Canceled => "canceled",
        }
    }
}

/// Where the schedule stood before a manual retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// How long an attempt holds its delivery before another may try (longer than a send can take).
pub const ATTEMPT_LEASE: Duration = Duration::seconds(60);

/// One attempt as the receiver answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub at: DateTime<Utc>,
    /// The HTTP status answered, if any answer came.
    pub status_code: Option<u16>,
    /// Why it failed without an answer (timeout, refused, address not allowed).
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Asked for by hand (`POST …/deliveries/{id}/retry`).
    pub manual: bool,
}

/// What a send came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl SendOutcome {
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// One event for one endpoint. The body is fixed when the delivery is made, so every attempt
/// sends the same bytes (only the signature's time changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub id: Id,
    pub endpoint: Id,
    pub event: Id,
    pub event_type: String,
    pub body: String,
    pub status: DeliveryStatus,
    /// Attempts made so far (the list below keeps the latest ones).
    pub attempt_count: u32,
    pub attempts: Vec<Attempt>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The next attempt was asked for by hand; what the schedule had set before it (restored if
    /// the manual attempt fails).
    #[serde(default)]
    pub manual: bool,
    #[serde(default)]
    pub resume: Option<Resume>,
    /// Attempts asked for by hand: they do not use up the schedule.
    #[serde(default)]
    pub manual_attempts: u32,
    pub created: DateTime<Utc>,
    pub livemode: bool,
    pub version: u64,
}

impl WebhookDelivery {
    /// The delivery of `event` to `endpoint`: named from both, so announcing the event again
    /// finds it instead of making a second one.
    pub fn new(
        endpoint: &WebhookEndpoint,
        event: &crate::ports::DomainEvent,
        now: DateTime<Utc>,
    ) -> DomainResult<Self> {
        let body = serde_json::to_string(&serde_json::json!({
            "id": event.id,
            "object": "event",
            "type": event.kind.as_str(),
            "created": event.occurred_at.timestamp(),
            "livemode": event.scope.livemode(),
            "data": event.data,
        }))
        .map_err(DomainError::unexpected)?;
        Ok(Self {
            id: Id::derived(IdKind::WebhookDelivery, event.occurred_at, &format!("{}:{}", endpoint.id, event.id)),
            endpoint: endpoint.id.clone(),
            event: event.id.clone(),
            event_type: event.kind.as_str().to_owned(),
            body,
            status: DeliveryStatus::Pending,
            attempt_count: 0,
            attempts: Vec::new(),
            next_attempt_at: Some(now),
            manual: false,
            resume: None,
            manual_attempts: 0,
            created: now,
            livemode: endpoint.livemode,
            version: 1,
        })
    }

    /// Whether attempt `number` is the one due now (a stale or repeated message is not).
    pub fn is_due(&self, number: u32, now: DateTime<Utc>) -> bool {
        self.status == DeliveryStatus::Pending
            && number == self.attempt_count + 1
            && self.next_attempt_at.is_some_and(|at| at <= now)
    }

    /// Takes the due attempt for one sender: its next attempt moves past the lease, so a repeated
    /// message finds it not due while it is sent (and, should the sender die, it is due again
    /// when the lease ends).
    pub fn lease(&mut self, now: DateTime<Utc>) {
        self.next_attempt_at = Some(now + ATTEMPT_LEASE);
        self.version += 1;
    }

    /// Attempts made on the schedule (manual ones aside).
    fn scheduled_attempts(&self) -> u32 {
        self.attempt_count.saturating_sub(self.manual_attempts)
    }

    /// Records attempt `attempt_count + 1`: delivered on a 2xx. A failed scheduled attempt sets the
    /// next one, or, past the last, dead-letters the delivery; a failed manual one puts the
    /// delivery back where the schedule had left it.
    pub fn record(&mut self, outcome: &SendOutcome, now: DateTime<Utc>, schedule: &RetrySchedule) {
        self.attempt_count += 1;
        if self.manual {
            self.manual_attempts += 1;
        }
        self.attempts.push(Attempt {
            number: self.attempt_count,
            at: now,
            status_code: outcome.status_code,
            error: outcome.error.clone(),
            duration_ms: outcome.duration_ms,
            manual: self.manual,
        });
        if self.attempts.len() > KEPT_ATTEMPTS {
            self.attempts.remove(0);
        }
        let resume = self.resume.take();
        (self.status, self.next_attempt_at) = if outcome.succeeded() {
            (DeliveryStatus::Delivered, None)
        } else if self.manual {
            resume.map_or((DeliveryStatus::DeadLettered, None), |r| (r.status, r.next_attempt_at))
        } else {
            match schedule.gap_after(self.scheduled_attempts()) {
                Some(gap) => (DeliveryStatus::Pending, Some(now + gap)),
                None => (DeliveryStatus::DeadLettered, None),
            }
        };
        self.manual = false;
        self.version += 1;
    }

    /// Asks for an attempt now, whatever the delivery's state: a receiver may have lost even a
    /// delivered event. Refused only for a canceled one (its endpoint is gone).
    pub fn retry_now(&mut self, now: DateTime<Utc>) -> DomainResult<()> {
        if self.status == DeliveryStatus::Canceled {
            return Err(DomainError::conflict("delivery_canceled", "its endpoint was deleted; nothing can be sent"));
        }
        if !self.manual {
            self.resume = Some(Resume { status: self.status, next_attempt_at: self.next_attempt_at });
        }
        self.status = DeliveryStatus::Pending;
        self.next_attempt_at = Some(now);
        self.manual = true;
        self.version += 1;
        Ok(())
    }

    pub fn cancel(&mut self) {
        self.status = DeliveryStatus::Canceled;
        self.next_attempt_at = None;
        self.version += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, 0, 0).unwrap()
    }

    fn delivery() -> WebhookDelivery {
        WebhookDelivery {
            id: Id::from_trusted("wd_1".into()),
            endpoint: Id::from_trusted("we_1".into()),
            event: Id::from_trusted("evt_1".into()),
            event_type: "invoice.paid".into(),
            body: "{}".into(),
            status: DeliveryStatus::Pending,
            attempt_count: 0,
            attempts: Vec::new(),
            next_attempt_at: Some(at(0)),
            manual: false,
            resume: None,
            manual_attempts: 0,
            created: at(0),
            livemode: false,
            version: 1,
        }
    }

    fn failed(code: u16) -> SendOutcome {
        SendOutcome { status_code: Some(code), error: None, duration_ms: 3 }
    }

    #[test]
    fn the_default_schedule_retries_for_about_three_days_with_growing_gaps() {
        let s = RetrySchedule::default();
        assert!(s.total() >= Duration::hours(70) && s.total() <= Duration::hours(74), "{}", s.total());
        let gaps: Vec<Duration> = (1..s.attempts()).filter_map(|n| s.gap_after(n)).collect();
        assert!(gaps.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(s.gap_after(s.attempts()), None);
        assert_eq!(RetrySchedule::parse("1, 2,4").unwrap().attempts(), 4);
        assert!(RetrySchedule::parse("1,-2").is_err() && RetrySchedule::parse("").is_err());
    }

    #[test]
    fn a_failing_endpoint_is_retried_on_schedule_then_dead_lettered() {
        // GIVEN a delivery and a schedule of two gaps
        let schedule = RetrySchedule::parse("60,600").unwrap();
        let mut d = delivery();
        // WHEN the first attempt gets a 500
        assert!(d.is_due(1, at(0)));
        d.record(&failed(500), at(0), &schedule);
        // THEN the next is due a minute later, and a repeat of attempt 1 is not due
        assert_eq!((d.status, d.next_attempt_at), (DeliveryStatus::Pending, Some(at(0) + Duration::seconds(60))));
        assert!(!d.is_due(1, at(1)) && !d.is_due(2, at(0)) && d.is_due(2, at(1)));
        d.record(
            &SendOutcome { status_code: None, error: Some("timed out".into()), duration_ms: 10_000 },
            at(1),
            &schedule,
        );
        assert_eq!(d.next_attempt_at, Some(at(1) + Duration::seconds(600)));
        // AND after the last attempt fails it is dead-lettered, with every attempt recorded
        d.record(&failed(503), at(2), &schedule);
        assert_eq!((d.status, d.next_attempt_at, d.attempt_count), (DeliveryStatus::DeadLettered, None, 3));
        assert_eq!(d.attempts.iter().map(|a| a.number).collect::<Vec<_>>(), vec![1, 2, 3]);
        // WHEN it is re-sent by hand and answered 200
        d.retry_now(at(5)).unwrap();
        assert!(d.is_due(4, at(5)));
        d.record(&failed(200), at(5), &schedule);
        // THEN it is delivered
        assert_eq!((d.status, d.attempts.last().map(|a| a.manual)), (DeliveryStatus::Delivered, Some(true)));
    }

    #[test]
    fn a_failed_manual_retry_leaves_the_delivery_where_the_schedule_had_it() {
        let schedule = RetrySchedule::parse("60").unwrap();
        // GIVEN a dead letter
        let mut d = delivery();
        d.record(&failed(500), at(0), &schedule);
        d.record(&failed(500), at(1), &schedule);
        assert_eq!(d.status, DeliveryStatus::DeadLettered);
        // WHEN it is re-sent by hand and fails, THEN it is a dead letter again
        d.retry_now(at(2)).unwrap();
        d.record(&failed(404), at(2), &schedule);
        assert_eq!((d.status, d.next_attempt_at), (DeliveryStatus::DeadLettered, None));
        // GIVEN a delivered one re-sent by hand that fails: it stays delivered, nothing scheduled
        let mut d = delivery();
        d.record(&failed(200), at(0), &schedule);
        d.retry_now(at(1)).unwrap();
        d.record(&failed(500), at(1), &schedule);
        assert_eq!((d.status, d.next_attempt_at), (DeliveryStatus::Delivered, None));
        // GIVEN one waiting for its retry: a failed manual attempt (asked twice) keeps the retry's
        // time and does not use it up
        let mut d = delivery();
        d.record(&failed(500), at(0), &schedule);
        let due = d.next_attempt_at;
        d.retry_now(at(0)).unwrap();
        d.retry_now(at(0)).unwrap();
        d.record(&failed(500), at(0), &schedule);
        assert_eq!((d.status, d.next_attempt_at), (DeliveryStatus::Pending, due));
        d.record(&failed(500), at(1), &schedule);
        assert_eq!((d.status, d.attempt_count), (DeliveryStatus::DeadLettered, 3));
        d.cancel();
        assert!(d.retry_now(at(3)).is_err());
    }

    #[test]
    fn a_leased_attempt_is_not_due_again_until_its_lease_ends() {
        let mut d = delivery();
        assert!(d.is_due(1, at(0)));
        d.lease(at(0));
        assert!(!d.is_due(1, at(0)) && d.is_due(1, at(0) + ATTEMPT_LEASE));
    }

    #[test]
    fn signatures_follow_stripes_scheme_with_one_v1_per_signing_secret() {
        // Stripe's documented construction: hex HMAC-SHA256 of "t.body" keyed by the whole secret.
        let header = signature(&["whsec_test"], 1_700_000_000, "{\"a\":1}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        assert_eq!(header, format!("t=1700000000,v1={}", hex::encode(mac.finalize().into_bytes())));
        assert_eq!(signature(&["a", "b"], 1, "x").matches("v1=").count(), 2);
        assert!(new_secret().starts_with("whsec_") && new_secret() != new_secret());
    }

    #[test]
    fn rotation_keeps_the_previous_secret_signing_for_the_overlap_only() {
        let mut e = WebhookEndpoint {
            id: Id::from_trusted("we_1".into()),
            url: "https://example.com/hook".into(),
            enabled_events: vec!["*".into()],
            description: None,
            secrets: vec![SealedSecret { sealed: "old".into(), created: at(0), expires_at: None }],
            deleted: false,
            created: at(0),
            updated: at(0),
            livemode: true,
            version: 1,
        };
        e.rotate("new".into(), at(1), Duration::hours(2)).unwrap();
        let signing =
            |e: &WebhookEndpoint, t| e.signing_secrets(t).iter().map(|s| s.sealed.clone()).collect::<Vec<_>>();
        assert_eq!(signing(&e, at(2)), vec!["new", "old"]);
        assert_eq!(signing(&e, at(3)), vec!["new"]);
        assert_eq!(e.view().previous_secret_expires_at, Some(at(3)));
        // a rotation with no overlap drops the old secret at once
        e.rotate("newer".into(), at(4), Duration::zero()).unwrap();
        assert_eq!(signing(&e, at(4)), vec!["newer"]);
        assert!(e.rotate("x".into(), at(5), Duration::days(8)).is_err());
    }

    #[test]
    fn live_endpoints_must_be_https_and_public() {
        for url in [
            "https://127.0.0.1/h",
            "https://10.0.0.1/h",
            "https://169.254.169.254/latest",
            "https://[::1]/h",
            "https://[::ffff:10.0.0.1]/h",
            "https://[fd00::1]/h",
            "https://100.64.0.1/h",
            "https://localhost/h",
            "https://0.0.0.0/h",
        ] {
            let err = destination(url, true, LocalEndpoints::AllowedInTestMode).unwrap_err();
            assert!(err.to_string().contains("may not point"), "{url}: {err}");
        }
        let (local, deployed) = (LocalEndpoints::AllowedInTestMode, LocalEndpoints::Refused);
        let tunnels = ["https://[2002:a00:1::1]/h", "https://[2001:0:a00:1::1]/h", "https://[fec0::1]/h"];
        for url in tunnels.into_iter().chain(["https://2130706433/h", "https://0x7f.1/h"]) {
            assert!(destination(url, true, local).is_err(), "{url}");
        }
        assert!(destination("http://example.com/h", true, local).unwrap_err().to_string().contains("https"));
        assert!(destination("https://user:pw@example.com/h", false, local).is_err());
        assert!(destination("ftp://example.com/h", false, local).is_err());
        assert!(destination("not a url", false, local).is_err());
        let ok = destination("https://hooks.example.com/billy?x=1", true, local).unwrap();
        assert_eq!((ok.host.as_str(), ok.public_only), ("hooks.example.com", true));
        assert!(destination("https://93.184.215.14/h", true, local).is_ok());
        // test mode may use a local receiver where the deployment allows it, never a metadata service
        assert!(!destination("http://127.0.0.1:9000/h", false, local).unwrap().public_only);
        assert!(destination("http://127.0.0.1:9000/h", false, deployed).is_err());
        assert!(destination("http://hooks.example.com/h", false, deployed).unwrap().public_only);
        assert!(destination("http://169.254.169.254/latest/meta-data", false, local).is_err());
    }

    #[test]
    fn endpoints_ask_for_known_event_types_or_all_of_them() {
        let v = |e: &[&str]| validate_events(&e.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(v(&["invoice.paid", "invoice.paid"]).unwrap(), vec!["invoice.paid"]);
        assert!(v(&["*"]).is_ok() && v(&["*", "invoice.paid"]).is_err() && v(&[]).is_err());
        assert!(v(&["invoice.nope"]).is_err());
    }
}
