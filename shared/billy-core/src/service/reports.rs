//! The dashboard's reports: keeping the counters from the journal (`record_in_order` through a
//! stream shard's checkpoint, `record` through each invoice's guard), and reading them back as
//! revenue per day or month, invoices by status, the dunning funnel and the renewals ahead.

use crate::audit::Context;
use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::invoice::InvoiceStatus;
use crate::money::Currency;
use crate::ports::{Applied, ReportRepository};
use crate::report::{Bucket, Checkpoint, Counter, Counters, RenewalState, Tally};
use crate::settlement::Month;
use crate::tenant::Scope;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

/// Writes in one transaction at most.
pub const MAX_WRITES: usize = 100;
/// How often a chunk is read and tried again after a concurrent writer moved one of its renewals.
const RENEWAL_RACES: u32 = 5;
/// How often a shard's checkpoint is read again after another writer moved it.
const CHECKPOINT_RACES: u32 = 10;

/// Applies every tally exactly once, in order, in chunks that each fit one transaction. A tally
/// whose event was applied before (a redelivery) is dropped from its chunk and the rest applied.
pub async fn record(reports: &dyn ReportRepository, tallies: &[Tally]) -> DomainResult<usize> {
    // An event met twice in one batch is counted once.
    let mut events = BTreeSet::new();
    let tallies: Vec<Tally> = tallies.iter().filter(|t| events.insert(t.event.clone())).cloned().collect();
    let mut applied = 0;
    for chunk in chunks(&tallies) {
        match apply_chunk(reports, chunk.to_vec(), None).await? {
            Some(n) => applied += n,
            None => return Err(DomainError::unexpected("the report store moved a checkpoint it was not given")),
        }
    }
    Ok(applied)
}

/// Applies one chunk in one transaction (with `checkpoint`, moving it): tallies whose events were
/// applied before are dropped and the rest sent again, and a renewal moved meanwhile is read
/// again. Answers how many were applied now, or `None` when the checkpoint had moved (nothing
/// was applied).
async fn apply_chunk(
    reports: &dyn ReportRepository,
    mut chunk: Vec<Tally>,
    checkpoint: Option<&Checkpoint>,
) -> DomainResult<Option<usize>> {
    let mut races = 0;
    while !chunk.is_empty() {
        let moved = move_renewals(reports, &chunk).await?;
        match reports.apply(&moved, checkpoint).await? {
            Applied::All => return Ok(Some(chunk.len())),
            Applied::NoneAlreadyApplied(seen) => {
                let before = chunk.len();
                chunk.retain(|t| !seen.contains(&t.event));
                if chunk.len() == before {
                    return Err(DomainError::unexpected("the report store named no applied event"));
                }
            }
            Applied::NoneRenewalMoved if races < RENEWAL_RACES => races += 1,
            Applied::NoneRenewalMoved => {
                return Err(DomainError::conflict("transaction_conflict", "renewal counters are busy; retry"));
            }
            Applied::NoneCheckpointMoved => return Ok(None),
        }
    }
    Ok(Some(0))
}

/// A tally and its place in its stream shard (`report::position`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub tally: Tally,
    pub position: String,
}

/// Where counting a shard's tallies stopped: those before `at` are counted (now or before), the
/// others are not.
#[derive(Debug)]
pub struct Stopped {
    pub at: usize,
    pub error: DomainError,
}

/// Applies a shard's tallies (in stream order) exactly once through the shard's checkpoint
/// (`report::Checkpoint`): those at or before it are skipped, and each chunk moves it past its
/// last tally in the transaction that counts the chunk. While the shard has no checkpoint, chunks
/// also write each tally's guard, as `record` does. No chunk is begun after `deadline`. Answers
/// how many tallies were applied now.
pub async fn record_in_order(
    reports: &dyn ReportRepository,
    shard: &str,
    placed: &[Placed],
    deadline: Instant,
) -> Result<usize, Stopped> {
    let stop = |at, error| Stopped { at, error };
    if placed.is_empty() {
        return Ok(0);
    }
    let mut counted_to = reports.counted_to(shard).await.map_err(|e| stop(0, e))?;
    let (mut next, mut applied, mut moved_under) = (0, 0, 0);
    while next < placed.len() {
        if counted_to.as_ref().is_some_and(|c| placed[next].position <= *c) {
            next += 1;
            continue;
        }
        if Instant::now() >= deadline {
            return Err(stop(next, out_of_time()));
        }
        let guarded = counted_to.is_none();
        let mut chunk: Vec<Tally> = placed[next..].iter().take(MAX_WRITES * 10).map(|p| p.tally.clone()).collect();
        let len = first_chunk(&chunk, guarded, true);
        chunk.truncate(len);
        // Once the chunk is applied, every tally of it is counted (those dropped from it were
        // before), so the checkpoint moves past the last one even when that one was dropped.
        let to = placed[next + len - 1].position.clone();
        let at = Checkpoint { shard: shard.to_owned(), counted_to: counted_to.clone(), to, guarded };
        match apply_chunk(reports, chunk, Some(&at)).await.map_err(|e| stop(next, e))? {
            Some(now) => {
                if now > 0 {
                    applied += now;
                    counted_to = Some(at.to);
                }
                next += len;
            }
            // The checkpoint moved under the chunk: what is left is read again from the new one.
            None if moved_under < CHECKPOINT_RACES => {
                moved_under += 1;
                counted_to = reports.counted_to(shard).await.map_err(|e| stop(next, e))?;
            }
            None => {
                let busy = DomainError::conflict("transaction_conflict", "the shard is being counted; retry");
                return Err(stop(next, busy));
            }
        }
    }
    Ok(applied)
}

/// Why a batch stopped before its end: its time is up (it resumes where it stopped).
pub fn out_of_time() -> DomainError {
    DomainError::Unavailable("the batch's time is up".into())
}

/// The chunk with each subscription's renewal moved from the state recorded for it, in order;
/// only the last tally of a subscription records its new state.
async fn move_renewals(reports: &dyn ReportRepository, chunk: &[Tally]) -> DomainResult<Vec<Tally>> {
    let key = |t: &Tally| t.renewal.as_ref().map(|r| (t.scope.clone(), r.subscription.clone()));
    let mut keys: Vec<(Scope, Id)> = chunk.iter().filter_map(key).collect();
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return Ok(chunk.to_vec());
    }
    let stored: HashMap<(Scope, Id), RenewalState> =
        reports.renewals(&keys).await?.into_iter().map(|(scope, r)| ((scope, r.subscription.clone()), r)).collect();
    let mut latest = stored.clone();
    let mut last: HashMap<(Scope, Id), usize> = HashMap::new();
    let mut moved: Vec<Tally> = chunk.to_vec();
    for (i, t) in moved.iter_mut().enumerate() {
        let Some(k) = key(t) else { continue };
        if t.move_renewal(latest.get(&k))
            && let Some(state) = t.renewal.clone()
        {
            latest.insert(k.clone(), state);
            last.insert(k, i);
        }
    }
    for (i, t) in moved.iter_mut().enumerate() {
        let Some(k) = key(t) else { continue };
        if last.get(&k) == Some(&i) {
            t.replaces = stored.get(&k).map(|s| s.version);
        } else {
            t.renewal = None;
        }
    }
    Ok(moved)
}

/// Consecutive runs of tallies whose writes fit one transaction: at most one guard each (an
/// invoice's events share one), a renewal state and its two days for each subscription event, and
/// one update per distinct bucket.
pub fn chunks(tallies: &[Tally]) -> Vec<&[Tally]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < tallies.len() {
        let len = first_chunk(&tallies[start..], true, false);
        out.push(&tallies[start..start + len]);
        start += len;
    }
    out
}

/// How many of `tallies`, from the first, fit one transaction (at least one): with `guarded`, one
/// guard each (an invoice's events share one); with `checkpoint`, the shard's checkpoint once.
fn first_chunk(tallies: &[Tally], guarded: bool, checkpoint: bool) -> usize {
    let mut writes = usize::from(checkpoint);
    let mut buckets: BTreeSet<(String, Bucket)> = BTreeSet::new();
    for (i, t) in tallies.iter().enumerate() {
        let own: BTreeSet<(String, Bucket)> = t.changes.keys().map(|b| (t.scope.key(), b.clone())).collect();
        let cost = usize::from(guarded) + if t.renewal.is_some() { 3 } else { 0 };
        let new_buckets = own.difference(&buckets).count();
        if i > 0 && writes + cost + new_buckets > MAX_WRITES {
            return i;
        }
        writes += cost + new_buckets;
        buckets.extend(own);
    }
    tallies.len()
}

/// Day or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Day,
    Month,
}

impl Interval {
    pub fn parse(raw: Option<&str>) -> DomainResult<Self> {
        match raw.unwrap_or("day") {
            "day" => Ok(Self::Day),
            "month" => Ok(Self::Month),
            other => Err(DomainError::invalid(
                "parameter_invalid",
                format!("interval must be 'day' or 'month', not '{}'", other.chars().take(16).collect::<String>()),
                Some("interval"),
            )),
        }
    }
}

/// Longest ranges a report answers in one go.
pub const MAX_DAYS: i64 = 366;
pub const MAX_MONTHS: usize = 36;
pub const MAX_RENEWAL_DAYS: i64 = 90;

fn date(raw: &str, param: &str) -> DomainResult<NaiveDate> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        DomainError::invalid(
            "date_invalid",
            format!("'{}' is not a date (YYYY-MM-DD)", raw.chars().take(16).collect::<String>()),
            Some(param),
        )
    })
}

fn range_error(message: String, param: &str) -> DomainError {
    DomainError::invalid("range_invalid", message, Some(param))
}

fn months_between(from: Month, to: Month) -> Vec<Month> {
    let mut out = vec![from];
    while out.len() <= MAX_MONTHS && *out.last().unwrap_or(&to) < to {
        let last = *out.last().unwrap_or(&to);
        out.push(last.next());
    }
    out
}

fn month_back(month: Month, by: u32) -> Month {
    let mut m = month;
    for _ in 0..by {
        let start = m.start() - Duration::days(1);
        m = Month::of(start);
    }
    m
}

/// One currency's counters for each period of a report, in order, and their totals.
type Series<'p> = (Currency, Vec<(&'p str, Counters)>, Counters);

/// Each currency found, with its counters for every one of `periods` in order (zeros included)
/// and their totals. `period_of` names a bucket's currency and period (or leaves it out).
fn per_currency<'p>(
    found: &[(Bucket, Counters)],
    periods: &'p [String],
    period_of: impl Fn(&Bucket) -> Option<(Currency, String)>,
) -> Vec<Series<'p>> {
    let mut per: BTreeMap<Currency, BTreeMap<String, Counters>> = BTreeMap::new();
    for (bucket, counters) in found {
        if let Some((currency, period)) = period_of(bucket) {
            add_into(per.entry(currency).or_default().entry(period).or_default(), counters);
        }
    }
    per.into_iter()
        .map(|(currency, by_period)| {
            let mut totals = Counters::new();
            let rows = periods
                .iter()
                .map(|p| {
                    let c = by_period.get(p).cloned().unwrap_or_default();
                    add_into(&mut totals, &c);
                    (p.as_str(), c)
                })
                .collect();
            (currency, rows, totals)
        })
        .collect()
}

/// One period's row of a series.
fn row(period: &str, mut fields: Map<String, Value>) -> Value {
    fields.insert("period".into(), json!(period));
    Value::Object(fields)
}

fn counters_json(counters: &Counters, names: &[Counter]) -> Map<String, Value> {
    names.iter().map(|c| (c.as_str().to_owned(), json!(counters.get(c).copied().unwrap_or(0)))).collect()
}

fn add_into(into: &mut Counters, from: &Counters) {
    for (k, v) in from {
        *into.entry(*k).or_default() += v;
    }
}

const REVENUE: [Counter; 7] = [
    Counter::Collected,
    Counter::Refunded,
    Counter::PaidOut,
    Counter::ChargedBack,
    Counter::InvoicesPaid,
    Counter::Refunds,
    Counter::Payouts,
];

fn with_net(mut m: Map<String, Value>, c: &Counters) -> Map<String, Value> {
    let get = |k: Counter| c.get(&k).copied().unwrap_or(0);
    let out = get(Counter::Refunded) + get(Counter::PaidOut) + get(Counter::ChargedBack);
    m.insert("net".into(), json!(get(Counter::Collected) - out));
    m
}

/// Money collected, refunded and paid out per day or month of `[from, to]` (every period listed,
/// zeros included), per currency, with the range's totals.
pub async fn revenue(
    reports: &dyn ReportRepository,
    ctx: &Context,
    interval: Interval,
    from: Option<&str>,
    to: Option<&str>,
    today: DateTime<Utc>,
) -> DomainResult<Value> {
    let to = to.map(|t| date(t, "to")).transpose()?.unwrap_or(today.date_naive());
    let from = match from {
        Some(f) => date(f, "from")?,
        None => match interval {
            Interval::Day => to - Duration::days(29),
            Interval::Month => month_back(Month::of(day_start(to)), 11).start().date_naive(),
        },
    };
    if from > to {
        return Err(range_error("from must not be after to".into(), "from"));
    }
    let too_long = match interval {
        Interval::Day => (to - from).num_days() >= MAX_DAYS,
        Interval::Month => months_between(Month::of(day_start(from)), Month::of(day_start(to))).len() > MAX_MONTHS,
    };
    if too_long {
        return Err(range_error(
            format!("the range is too long (at most {MAX_DAYS} days by day, {MAX_MONTHS} months by month)"),
            "from",
        ));
    }
    let found = reports.buckets(&ctx.scope, Bucket::REVENUE, &from.to_string(), &to.to_string()).await?;
    let periods: Vec<String> = match interval {
        Interval::Day => from.iter_days().take_while(|d| *d <= to).map(|d| d.to_string()).collect(),
        Interval::Month => {
            months_between(Month::of(day_start(from)), Month::of(day_start(to))).iter().map(Month::to_string).collect()
        }
    };
    let period_of = |bucket: &Bucket| match bucket {
        Bucket::Revenue { day, currency } => Some((
            *currency,
            match interval {
                Interval::Day => day.to_string(),
                Interval::Month => Month::of(day_start(*day)).to_string(),
            },
        )),
        _ => None,
    };
    let currencies: Vec<Value> = per_currency(&found, &periods, period_of)
        .into_iter()
        .map(|(currency, rows, totals)| {
            let series: Vec<Value> =
                rows.iter().map(|(p, c)| row(p, with_net(counters_json(c, &REVENUE), c))).collect();
            json!({"currency": currency, "totals": with_net(counters_json(&totals, &REVENUE), &totals), "series": series})
        })
        .collect();
    Ok(json!({
        "object": "report", "report": "revenue", "interval": interval,
        "from": from.to_string(), "to": to.to_string(), "livemode": ctx.scope.mode == crate::tenant::Mode::Live,
        "currencies": currencies,
    }))
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Invoices now in each status, with their totals, per currency (statuses with none left out).
pub async fn invoices(reports: &dyn ReportRepository, ctx: &Context) -> DomainResult<Value> {
    let found = reports.buckets(&ctx.scope, Bucket::STATUS, "", "~").await?;
    let mut per: BTreeMap<Currency, Vec<Value>> = BTreeMap::new();
    for (bucket, counters) in &found {
        if let Bucket::Status { status, currency } = bucket {
            let count = counters.get(&Counter::Count).copied().unwrap_or(0);
            if count != 0 {
                // A draft's total is still changing: no amount is kept for drafts.
                let amount =
                    (*status != InvoiceStatus::Draft).then(|| counters.get(&Counter::Amount).copied().unwrap_or(0));
                per.entry(*currency)
                    .or_default()
                    .push(json!({"status": status.as_str(), "count": count, "amount": amount}));
            }
        }
    }
    let currencies: Vec<Value> =
        per.into_iter().map(|(currency, statuses)| json!({"currency": currency, "statuses": statuses})).collect();
    Ok(
        json!({"object": "report", "report": "invoices", "livemode": ctx.scope.mode == crate::tenant::Mode::Live, "currencies": currencies}),
    )
}

const RENEWAL: [Counter; 2] = [Counter::Count, Counter::Amount];

const DUNNING: [Counter; 6] = [
    Counter::FirstAttemptFailed,
    Counter::Recovered,
    Counter::FailedForGood,
    Counter::AmountFailed,
    Counter::AmountRecovered,
    Counter::AmountLost,
];

/// The dunning funnel per month of `[from, to]`: first attempts that failed, invoices recovered by
/// a retry, invoices given up on, with their amounts.
pub async fn dunning(
    reports: &dyn ReportRepository,
    ctx: &Context,
    from: Option<&str>,
    to: Option<&str>,
    today: DateTime<Utc>,
) -> DomainResult<Value> {
    let to = to.map(|t| Month::parse(t, "to")).transpose()?.unwrap_or(Month::of(today));
    let from = from.map(|f| Month::parse(f, "from")).transpose()?.unwrap_or(month_back(to, 5));
    if from > to {
        return Err(range_error("from must not be after to".into(), "from"));
    }
    let months = months_between(from, to);
    if months.len() > MAX_MONTHS {
        return Err(range_error(format!("the range is too long (at most {MAX_MONTHS} months)"), "from"));
    }
    let found = reports.buckets(&ctx.scope, Bucket::DUNNING, &from.to_string(), &to.to_string()).await?;
    let periods: Vec<String> = months.iter().map(Month::to_string).collect();
    let period_of = |bucket: &Bucket| match bucket {
        Bucket::Dunning { month, currency } => Some((*currency, month.to_string())),
        _ => None,
    };
    let currencies: Vec<Value> = per_currency(&found, &periods, period_of)
        .into_iter()
        .map(|(currency, rows, totals)| {
            let series: Vec<Value> = rows.iter().map(|(p, c)| row(p, counters_json(c, &DUNNING))).collect();
            json!({"currency": currency, "totals": counters_json(&totals, &DUNNING), "series": series})
        })
        .collect();
    Ok(json!({
        "object": "report", "report": "dunning", "from": from.to_string(), "to": to.to_string(),
        "livemode": ctx.scope.mode == crate::tenant::Mode::Live, "currencies": currencies,
    }))
}

/// Debit subscriptions due to renew on each of `days` days from `from` (today by default; a test
/// clock's subscriptions renew on its own dates), with the fixed part of what they will bill.
pub async fn renewals(
    reports: &dyn ReportRepository,
    ctx: &Context,
    from: Option<&str>,
    days: Option<&str>,
    today: DateTime<Utc>,
) -> DomainResult<Value> {
    let days = match days {
        None => 30,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=MAX_RENEWAL_DAYS).contains(d))
            .ok_or_else(|| range_error(format!("days must be from 1 to {MAX_RENEWAL_DAYS}"), "days"))?,
    };
    let from = from.map(|f| date(f, "from")).transpose()?.unwrap_or(today.date_naive());
    let to = from + Duration::days(days - 1);
    let found = reports.buckets(&ctx.scope, Bucket::RENEWAL, &from.to_string(), &to.to_string()).await?;
    let periods: Vec<String> = from.iter_days().take_while(|d| *d <= to).map(|d| d.to_string()).collect();
    let period_of = |bucket: &Bucket| match bucket {
        Bucket::Renewal { day, currency } => Some((*currency, day.to_string())),
        _ => None,
    };
    let currencies: Vec<Value> = per_currency(&found, &periods, period_of)
        .into_iter()
        .map(|(currency, rows, totals)| {
            let series: Vec<Value> = rows.iter().map(|(p, c)| row(p, counters_json(c, &RENEWAL))).collect();
            let mut out = counters_json(&totals, &RENEWAL);
            out.insert("currency".into(), json!(currency));
            out.insert("series".into(), json!(series));
            Value::Object(out)
        })
        .collect();
    Ok(json!({
        "object": "report", "report": "renewals", "from": from.to_string(), "to": to.to_string(),
        "livemode": ctx.scope.mode == crate::tenant::Mode::Live, "currencies": currencies,
    }))
}
