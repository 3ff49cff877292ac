//! Outgoing webhooks: register, read, rotate the secret of and delete endpoints; list an endpoint's
//! deliveries and re-send one; and the delivery side: one delivery per interested endpoint for
//! each announced event, each attempt signed, recorded and retried on its schedule.

use super::missing;
use crate::audit::{Change, Context};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::page::{Page, PageRequest};
use crate::ports::{DomainEvent, Ports, QueueMessage, WebhookSender, Write};
use crate::webhook::{
    DEFAULT_OVERLAP, MAX_ENDPOINTS, RetrySchedule, WebhookDelivery, WebhookEndpoint, destination, new_secret,
    signature, validate_events,
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The kind of message the delivery queue carries.
pub const DELIVER_WEBHOOK: &str = "deliver_webhook";

/// What the delivery queue carries: an announced event to fan out to endpoints, or one attempt of
/// one delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStep {
    Event(DomainEvent),
    Attempt { scope: crate::tenant::Scope, delivery: Id, attempt: u32 },
}

impl DeliveryStep {
    pub fn message(&self) -> DomainResult<QueueMessage> {
        Ok(QueueMessage {
            version: 1,
            kind: DELIVER_WEBHOOK.to_owned(),
            body: serde_json::to_value(self).map_err(DomainError::unexpected)?,
        })
    }
}

/// A new endpoint, and its signing secret: the only time the secret is shown (never by `Debug`).
pub struct Created {
    pub endpoint: WebhookEndpoint,
    pub secret: String,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created").field("endpoint", &self.endpoint.id).field("secret", &"…").finish()
    }
}

async fn seal(p: &Ports<'_>, ctx: &Context, id: &Id, secret: &str) -> DomainResult<String> {
    use base64::Engine as _;
    let sealed = p.secrets.seal(secret.as_bytes(), &WebhookEndpoint::seal_context(&ctx.scope.key(), id)).await?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
}

async fn open(p: &Ports<'_>, scope_key: &str, endpoint: &WebhookEndpoint, sealed: &str) -> DomainResult<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(sealed).map_err(DomainError::unexpected)?;
    let plain = p.secrets.open(&bytes, &WebhookEndpoint::seal_context(scope_key, &endpoint.id)).await?;
    String::from_utf8(plain).map_err(DomainError::unexpected)
}

/// Writes an endpoint (`expected: None` for a new one) with its audit event, which holds the view.
async fn save(
    p: &Ports<'_>,
    ctx: &Context,
    e: &WebhookEndpoint,
    expected: Option<u64>,
    action: &'static str,
) -> DomainResult<()> {
    let view = e.view();
    let change = Change {
        entity: &e.id,
        entity_type: "webhook_endpoint",
        account: None,
        action,
        version: e.version,
        reason: None,
        before: None,
        after: Some(&view),
        change: None,
    };
    let event = ctx.record(p.ids, p.clock.now(), change);
    p.unit.commit(&ctx.scope, vec![Write::WebhookEndpoint { endpoint: e.clone(), expected }], vec![event]).await
}

/// Registers an endpoint. A live one must be https and resolve only to public addresses.
pub async fn create_endpoint(
    p: &Ports<'_>,
    sender: &dyn WebhookSender,
    ctx: &Context,
    url: &str,
    events: &[String],
    description: Option<String>,
) -> DomainResult<Created> {
    let events = validate_events(events)?;
    if description.as_ref().is_some_and(|d| d.chars().count() > 500) {
        return Err(DomainError::invalid(
            "description_too_long",
            "a description is at most 500 characters",
            Some("description"),
        ));
    }
    let target = destination(url, ctx.scope.livemode(), sender.local_endpoints())?;
    sender.check(&target).await?;
    if p.webhooks.endpoints(&ctx.scope).await?.len() >= MAX_ENDPOINTS {
        return Err(DomainError::conflict(
            "too_many_endpoints",
            format!("a tenant has at most {MAX_ENDPOINTS} endpoints per mode; delete one first"),
        ));
    }
    let id = ctx.new_id(p.ids, IdKind::WebhookEndpoint);
    if let Some(existing) = p.webhooks.endpoint(&ctx.scope, &id).await? {
        // A retried create whose first try committed: the secret was shown then, never again.
        return Err(DomainError::conflict(
            "endpoint_exists",
            format!("endpoint {} was created by this request's first try; its secret is not shown twice", existing.id),
        ));
    }
    let secret = new_secret();
    let now = p.clock.now();
    let endpoint = WebhookEndpoint {
        secrets: vec![crate::webhook::SealedSecret {
            sealed: seal(p, ctx, &id, &secret).await?,
            created: now,
            expires_at: None,
        }],
        id,
        url: target.url,
        enabled_events: events,
        description,
        deleted: false,
        created: now,
        updated: now,
        livemode: ctx.scope.livemode(),
        version: 1,
    };
    save(p, ctx, &endpoint, None, "webhook_endpoint.created").await?;
    Ok(Created { endpoint, secret })
}

pub async fn get_endpoint(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<WebhookEndpoint> {
    let id = Id::parse(IdKind::WebhookEndpoint, raw, "")?;
    p.webhooks
        .endpoint(&ctx.scope, &id)
        .await?
        .filter(|e| !e.deleted)
        .ok_or_else(|| missing("webhook_endpoint", raw, ""))
}

pub async fn list_endpoints(p: &Ports<'_>, ctx: &Context) -> DomainResult<Vec<WebhookEndpoint>> {
    p.webhooks.endpoints(&ctx.scope).await
}

/// Deletes an endpoint: nothing more is sent to it, and its pending deliveries are canceled as
/// their attempts come up.
pub async fn delete_endpoint(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<WebhookEndpoint> {
    let mut endpoint = get_endpoint(p, ctx, raw).await?;
    let expected = endpoint.version;
    endpoint.deleted = true;
    endpoint.secrets.clear();
    endpoint.updated = p.clock.now();
    endpoint.version += 1;
    save(p, ctx, &endpoint, Some(expected), "webhook_endpoint.deleted").await?;
    Ok(endpoint)
}

/// Replaces the signing secret; the old one keeps signing (next to the new) for `overlap`
/// (24 hours by default), so receivers can switch without missing an event.
pub async fn rotate_secret(
    p: &Ports<'_>,
    ctx: &Context,
    raw: &str,
    overlap: Option<Duration>,
) -> DomainResult<Created> {
    let mut endpoint = get_endpoint(p, ctx, raw).await?;
    let expected = endpoint.version;
    let secret = new_secret();
    let sealed = seal(p, ctx, &endpoint.id, &secret).await?;
    endpoint.rotate(sealed, p.clock.now(), overlap.unwrap_or(DEFAULT_OVERLAP))?;
    save(p, ctx, &endpoint, Some(expected), "webhook_endpoint.secret_rotated").await?;
    Ok(Created { endpoint, secret })
}

pub async fn list_deliveries(
    p: &Ports<'_>,
    ctx: &Context,
    endpoint: &str,
    page: &PageRequest,
) -> DomainResult<Page<WebhookDelivery>> {
    let endpoint = get_endpoint(p, ctx, endpoint).await?;
    p.webhooks.deliveries(&ctx.scope, &endpoint.id, page).await
}

/// Asks for an attempt of a delivery now; returns it and the message that runs the attempt (the
/// sweeper runs it anyway if that message is lost: the delivery is due).
pub async fn retry_delivery(
    p: &Ports<'_>,
    ctx: &Context,
    endpoint: &str,
    raw: &str,
) -> DomainResult<(WebhookDelivery, QueueMessage)> {
    let endpoint = get_endpoint(p, ctx, endpoint).await?;
    let id = Id::parse(IdKind::WebhookDelivery, raw, "")?;
    let mut delivery = p
        .webhooks
        .delivery(&ctx.scope, &id)
        .await?
        .filter(|d| d.endpoint == endpoint.id)
        .ok_or_else(|| missing("webhook_delivery", raw, ""))?;
    let expected = delivery.version;
    delivery.retry_now(p.clock.now())?;
    p.webhooks.save_delivery(&ctx.scope, &delivery, expected).await?;
    let step = DeliveryStep::Attempt {
        scope: ctx.scope.clone(),
        delivery: delivery.id.clone(),
        attempt: delivery.attempt_count + 1,
    };
    Ok((delivery, step.message()?))
}

/// Makes one delivery of `event` per endpoint of its scope (`endpoints`, as read for it) that
/// wants it, and the messages that run their first attempts. An event announced again finds its
/// deliveries made and asks for nothing more (the sweeper runs any whose first message was lost).
pub async fn fan_out(
    p: &Ports<'_>,
    endpoints: &[WebhookEndpoint],
    event: &DomainEvent,
) -> DomainResult<Vec<QueueMessage>> {
    let now = p.clock.now();
    let mut messages = Vec::new();
    for endpoint in endpoints {
        if !endpoint.wants(event.kind.as_str()) {
            continue;
        }
        let delivery = WebhookDelivery::new(endpoint, event, now)?;
        if p.webhooks.create_delivery(&event.scope, &delivery).await? {
            let step = DeliveryStep::Attempt { scope: event.scope.clone(), delivery: delivery.id, attempt: 1 };
            messages.push(step.message()?);
        }
    }
    Ok(messages)
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    /// Not due (a repeated or stale message, or one another sender holds): nothing sent.
    Skipped,
    /// Its endpoint was deleted: canceled, nothing sent.
    Canceled(WebhookDelivery),
    Sent(WebhookDelivery),
}

/// Runs attempt `number` of a delivery if it is the one due: leased first (a repeated message
/// then finds it not due), the destination checked again (a live name may have been re-pointed at
/// a private address), the body signed with every secret that signs now, sent, and the answer
/// recorded with the next attempt's time. A destination no longer allowed, or a secret that cannot
/// be opened, is recorded as a failed attempt too, so the schedule still runs out (a store that
/// fails returns the error, and the message comes back).
pub async fn attempt(
    p: &Ports<'_>,
    sender: &dyn WebhookSender,
    schedule: &RetrySchedule,
    scope: &crate::tenant::Scope,
    id: &Id,
    number: u32,
) -> DomainResult<Attempted> {
    let now = p.clock.now();
    let Some(mut delivery) = p.webhooks.delivery(scope, id).await? else { return Ok(Attempted::Skipped) };
    if !delivery.is_due(number, now) {
        return Ok(Attempted::Skipped);
    }
    let endpoint = p.webhooks.endpoint(scope, &delivery.endpoint).await?.filter(|e| !e.deleted);
    let Some(endpoint) = endpoint else {
        let expected = delivery.version;
        delivery.cancel();
        p.webhooks.save_delivery(scope, &delivery, expected).await?;
        return Ok(Attempted::Canceled(delivery));
    };
    let expected = delivery.version;
    delivery.lease(now);
    match p.webhooks.save_delivery(scope, &delivery, expected).await {
        Err(DomainError::Conflict { .. }) => return Ok(Attempted::Skipped),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    let outcome = send_signed(p, sender, scope, &endpoint, &delivery.body, now).await;
    let leased = delivery.version;
    delivery.record(&outcome, p.clock.now(), schedule);
    match p.webhooks.save_delivery(scope, &delivery, leased).await {
        // A manual retry asked meanwhile: the receiver has this attempt (it de-duplicates by the
        // event id); the record keeps the retry, which sends it again.
        Err(DomainError::Conflict { .. }) => Ok(Attempted::Skipped),
        Err(e) => Err(e),
        Ok(()) => Ok(Attempted::Sent(delivery)),
    }
}

/// Checks, signs and sends one body; never fails, so every attempt is recorded.
async fn send_signed(
    p: &Ports<'_>,
    sender: &dyn WebhookSender,
    scope: &crate::tenant::Scope,
    endpoint: &WebhookEndpoint,
    body: &str,
    now: DateTime<Utc>,
) -> crate::webhook::SendOutcome {
    let target = match destination(&endpoint.url, scope.livemode(), sender.local_endpoints()) {
        Ok(target) => target,
        Err(e) => return refused(e),
    };
    if let Err(e) = sender.check(&target).await {
        return refused(e);
    }
    let mut secrets = Vec::new();
    for sealed in endpoint.signing_secrets(now) {
        match open(p, &scope.key(), endpoint, &sealed.sealed).await {
            Ok(secret) => secrets.push(secret),
            Err(e) => {
                tracing::error!(endpoint = %endpoint.id, error = %e, "signing secret not opened; the attempt fails");
                return crate::webhook::SendOutcome {
                    status_code: None,
                    error: Some("not sent: Billy could not sign it (retried on schedule)".into()),
                    duration_ms: 0,
                };
            }
        }
    }
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    sender.send(&target, &signature(&refs, now.timestamp(), body), body).await
}

fn refused(e: DomainError) -> crate::webhook::SendOutcome {
    crate::webhook::SendOutcome { status_code: None, error: Some(format!("not sent: {e}")), duration_ms: 0 }
}

/// A delivery's first attempt, and one asked for by hand, has its own message at once; the sweeper
/// leaves it this long before asking for it (in case that message was lost). Scheduled retries
/// are the sweeper's alone.
pub const FIRST_ATTEMPT_GRACE: Duration = Duration::minutes(1);

/// The attempts due by `now` among `due`, as messages (the sweeper's work).
pub async fn due_attempts(
    p: &Ports<'_>,
    due: &[(crate::tenant::Scope, Id)],
    now: DateTime<Utc>,
) -> DomainResult<Vec<QueueMessage>> {
    let mut messages = Vec::new();
    for (scope, id) in due {
        if let Some(d) = p.webhooks.delivery(scope, id).await?
            && d.next_attempt_at
                .is_some_and(|at| at <= now && ((d.attempt_count > 0 && !d.manual) || at <= now - FIRST_ATTEMPT_GRACE))
            && d.status == crate::webhook::DeliveryStatus::Pending
        {
            let step = DeliveryStep::Attempt { scope: scope.clone(), delivery: d.id, attempt: d.attempt_count + 1 };
            messages.push(step.message()?);
        }
    }
    Ok(messages)
}
