//! Usage: report events (one or a batch), list the events behind a period's total, and total a
//! period by one of its dimensions. Each event is idempotent on its own id, so a batch retried
//! after a partial failure counts nothing twice.

use super::missing;
use crate::audit::Context;
use crate::billing::BatchTime;
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::ports::{Ports, UsageKey};
use crate::subscription::Subscription;
use crate::usage::{NewUsage, Recorded, UsageEvent, UsageTotal, by_dimension};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

/// At most this many events per request.
pub const MAX_BATCH: usize = 500;
/// A period summary reads at most this many events (beyond: export them page by page).
pub const MAX_SUMMARY_EVENTS: usize = 20_000;

/// Records `inputs`; one result per input, in order. An input's own error never stops the others.
pub async fn report_usage(
    p: &Ports<'_>,
    ctx: &Context,
    inputs: Vec<NewUsage>,
) -> DomainResult<Vec<DomainResult<Recorded>>> {
    if inputs.is_empty() || inputs.len() > MAX_BATCH {
        return Err(DomainError::invalid(
            "parameter_invalid",
            format!("report 1 to {MAX_BATCH} events per request"),
            Some("events"),
        ));
    }
    let mut ids: Vec<(crate::tenant::Scope, Id)> =
        inputs.iter().map(|u| (ctx.scope.clone(), u.subscription.clone())).collect();
    ids.sort_by(|a, b| a.1.cmp(&b.1));
    ids.dedup();
    let subs: HashMap<Id, Subscription> =
        p.subscriptions.get_many(&ids).await?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let time = BatchTime::read(p.clocks, p.clock, subs.values().map(|s| (&ctx.scope, s.test_clock.as_ref()))).await?;
    let mut results: Vec<Option<DomainResult<Recorded>>> = Vec::with_capacity(inputs.len());
    let (mut placed, mut at) = (Vec::new(), Vec::new());
    for (i, input) in inputs.into_iter().enumerate() {
        let outcome = input.validate().and_then(|u| {
            let sub = subs
                .get(&u.subscription)
                .ok_or_else(|| missing("subscription", u.subscription.as_str(), "subscription"))?;
            u.place(sub, time.now(sub.test_clock.as_ref())?)
        });
        match outcome {
            Ok(event) => {
                placed.push(event);
                at.push(i);
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    if !placed.is_empty() {
        for (i, recorded) in at.into_iter().zip(p.usage.record(&ctx.scope, placed).await?) {
            results[i] = Some(recorded);
        }
    }
    Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err(DomainError::unexpected("usage result missing")))).collect())
}

/// The subscription a usage query names.
async fn subscription(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Subscription> {
    let id = Id::parse(IdKind::Subscription, raw, "subscription")?;
    p.subscriptions.get(&ctx.scope, &id).await?.ok_or_else(|| missing("subscription", raw, "subscription"))
}

/// The total of `metric` in the subscription's period that contains `at` (default: now), its
/// totals per value of `group_by` when asked, and whether it has been invoiced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSummary {
    pub total: UsageTotal,
    pub by_dimension: Option<(String, BTreeMap<Option<String>, Decimal>)>,
}

pub async fn usage_summary(
    p: &Ports<'_>,
    ctx: &Context,
    subscription_raw: &str,
    metric: &str,
    at: Option<DateTime<Utc>>,
    group_by: Option<&str>,
) -> DomainResult<UsageSummary> {
    let sub = subscription(p, ctx, subscription_raw).await?;
    let now = crate::billing::now_for(p.clocks, p.clock, &ctx.scope, sub.test_clock.as_ref()).await?;
    let period = sub.current_period(at.unwrap_or(now))?.ok_or_else(|| {
        DomainError::invalid("timestamp_invalid", "the subscription was not billing yet at that time", Some("at"))
    })?;
    if sub.plan_for_period(period.index).kind.meter(metric).is_none() {
        return Err(DomainError::invalid(
            "metric_unknown",
            format!("the plan of that period does not price '{metric}'"),
            Some("metric"),
        ));
    }
    let key = UsageKey {
        scope: ctx.scope.clone(),
        subscription: sub.id.clone(),
        metric: metric.to_owned(),
        period: period.index,
    };
    let total = p.usage.totals(std::slice::from_ref(&key)).await?.pop().flatten();
    let total = total.unwrap_or_else(|| UsageTotal::empty(sub.id.clone(), metric, period));
    let by_dimension = match group_by {
        None => None,
        Some(dimension) => {
            let events = all_events(p, &key).await?;
            Some((dimension.to_owned(), by_dimension(&events, dimension)))
        }
    };
    Ok(UsageSummary { total, by_dimension })
}

async fn all_events(p: &Ports<'_>, key: &UsageKey) -> DomainResult<Vec<UsageEvent>> {
    let mut events = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = p.usage.events(key, 1000, after).await?;
        events.extend(page);
        if events.len() > MAX_SUMMARY_EVENTS {
            return Err(DomainError::invalid(
                "too_many_events",
                format!("more than {MAX_SUMMARY_EVENTS} events in this period: list them page by page"),
                Some("group_by"),
            ));
        }
        match next {
            Some(cursor) => after = Some(cursor),
            None => return Ok(events),
        }
    }
}

/// The events behind one period's total of `metric`, oldest first, a page at a time.
pub async fn list_usage(
    p: &Ports<'_>,
    ctx: &Context,
    subscription_raw: &str,
    metric: &str,
    at: Option<DateTime<Utc>>,
    limit: usize,
    after: Option<String>,
) -> DomainResult<(Vec<UsageEvent>, Option<String>)> {
    let sub = subscription(p, ctx, subscription_raw).await?;
    let now = crate::billing::now_for(p.clocks, p.clock, &ctx.scope, sub.test_clock.as_ref()).await?;
    let period = sub.current_period(at.unwrap_or(now))?.ok_or_else(|| {
        DomainError::invalid("timestamp_invalid", "the subscription was not billing yet at that time", Some("at"))
    })?;
    let key =
        UsageKey { scope: ctx.scope.clone(), subscription: sub.id, metric: metric.to_owned(), period: period.index };
    p.usage.events(&key, limit.clamp(1, 100), after).await
}
