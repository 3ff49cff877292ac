//! Keeps the dashboard's counters from the journal: a second consumer of the audit table's stream
//! (beside the outbox relay) that tallies each new invoice and subscription event into the report
//! counters, each event exactly once however often the stream delivers it: through the shard's
//! checkpoint when the mapping names the shard (it has a tumbling window for that), else through
//! each invoice's guard. A batch that cannot be written resumes from the first record not yet
//! counted.

use async_trait::async_trait;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodb::types::AttributeValue;
use billy_aws::AwsClients;
use billy_aws::dynamo::audit_events_from_item;
use billy_core::DomainResult;
use billy_core::ports::ReportRepository;
use billy_core::report::{Tally, position, tally};
use billy_core::service::reports::{Placed, Stopped, chunks, out_of_time, record, record_in_order};
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::function::resume_at;
use billy_lambda::{StreamBatch, StreamFunction};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long chunks of a batch are begun before it is handed back: two thirds of the function's
/// 30-second timeout.
const COUNTING_TIME: Duration = Duration::from_secs(20);
/// How long the last chunk begun may take on top (its writes time out sooner).
const CHUNK_TIME: Duration = Duration::from_secs(7);

/// The entity types whose events move counters.
const TALLIED: [&str; 2] = ["invoice", "subscription"];

#[derive(Debug)]
pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        config.require("BILLY_REPORT_TABLE")?;
        Ok(Self { deps: Deps::new(config, aws)? })
    }
}

/// The tallies of the events one audit item holds (several, when it holds consecutive versions of
/// one entity), oldest first. Most of the journal moves no counter: an item of another entity type
/// is skipped before it is inflated.
pub fn tallied(item: HashMap<String, AttributeValue>) -> DomainResult<Vec<Tally>> {
    let entity_type = item.get("entity_type").and_then(|a| a.as_s().ok());
    if entity_type.is_some_and(|t| !TALLIED.contains(&t.as_str())) {
        return Ok(Vec::new());
    }
    let tallies = audit_events_from_item(item)?.iter().map(tally).collect::<DomainResult<Vec<_>>>()?;
    Ok(tallies.into_iter().flatten().collect())
}

#[async_trait]
impl StreamFunction for App {
    async fn handle(&self, batch: StreamBatch) -> Result<DynamoDbEventResponse, lambda_runtime::Error> {
        // The tallies in stream order, each with its place in the shard and the sequence number it
        // came from.
        let (mut placed, mut sequences): (Vec<Placed>, Vec<String>) = (Vec::new(), Vec::new());
        // The first record that cannot be counted: the stream resumes there, once everything
        // before it is counted (what is reported as done is never delivered again).
        let mut unreadable: Option<Option<String>> = None;
        let stream = batch.event.records.first().and_then(|r| r.event_source_arn.clone());
        for record in batch.event.records {
            if record.event_name != "INSERT" {
                continue;
            }
            let sequence = record.change.sequence_number.clone();
            let Some(at) = sequence.clone() else {
                // (A stream record always has one: without it, the record's place is unknown, and
                // the batch fails whole, the one case where it does.)
                tracing::error!("stream record without a sequence number; the stream retries it");
                unreadable = Some(sequence);
                break;
            };
            let item: HashMap<String, AttributeValue> = record.change.new_image.into();
            if !item.contains_key("action") {
                // Nothing but audit events belongs on this table; a stray item must not hold up
                // the counting of every event after it.
                tracing::warn!(sequence = ?sequence, "not an audit event; skipped");
                continue;
            }
            match tallied(item) {
                Ok(counted) => {
                    for (index, tally) in counted.into_iter().enumerate() {
                        let position = position(&at, index);
                        placed.push(Placed { tally, position });
                        sequences.push(at.clone());
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, sequence = ?sequence, "audit event not tallied; the stream retries it");
                    unreadable = Some(sequence);
                    break;
                }
            }
        }
        // A named shard is counted through its checkpoint (one write per chunk); a batch of a
        // mapping that names none, through each invoice's guard.
        let shard = batch.shard.map(|shard| format!("{}#{shard}", stream.unwrap_or_default()));
        // A batch is answered before the function's timeout, never left to time out, so Lambda
        // never splits it and hands the shard's records over in order (the checkpoint relies on
        // it): no chunk is begun after COUNTING_TIME, and the batch resumes at the first chunk not
        // counted. A chunk still unanswered a few seconds later is given up on, and the batch
        // resumes at its start, where what was counted is skipped.
        let deadline = Instant::now() + COUNTING_TIME;
        let counting = async {
            match shard {
                Some(shard) => record_in_order(&self.deps.reports, &shard, &placed, deadline).await.map(|_| ()),
                None => {
                    let tallies: Vec<Tally> = placed.iter().map(|p| p.tally.clone()).collect();
                    record_each(&self.deps.reports, &tallies, deadline).await
                }
            }
        };
        let Ok(counted) = tokio::time::timeout(COUNTING_TIME + CHUNK_TIME, counting).await else {
            tracing::warn!("a chunk took too long to count; the stream resumes at the batch's start");
            return Ok(resume_at(sequences.first().cloned()));
        };
        if let Err(stopped) = counted {
            tracing::warn!(error = %stopped.error, "report counters not written; the stream resumes at this chunk");
            return Ok(resume_at(Some(sequences[stopped.at].clone())));
        }
        Ok(unreadable.map_or_else(DynamoDbEventResponse::default, resume_at))
    }
}

/// Counts the tallies chunk by chunk through each invoice's guard, beginning none after
/// `deadline`; where a chunk could not be written, the stream resumes.
async fn record_each(reports: &dyn ReportRepository, tallies: &[Tally], deadline: Instant) -> Result<(), Stopped> {
    let mut done = 0;
    for chunk in chunks(tallies) {
        if Instant::now() >= deadline {
            return Err(Stopped { at: done, error: out_of_time() });
        }
        record(reports, chunk).await.map_err(|error| Stopped { at: done, error })?;
        done += chunk.len();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use billy_core::audit::{Actor, Context};
    use billy_core::ids::{IdGenerator, IdKind, RandomIds};
    use billy_core::invoice::{Invoice, InvoiceAction, InvoiceItem};
    use billy_core::journal::{InvoiceChange, transition};
    use billy_core::report::Guard;
    use billy_core::tenant::{Mode, Scope};

    #[test]
    fn an_invoice_created_and_finalized_in_one_item_is_tallied_as_both_events() {
        let ids = RandomIds::new(billy_core::clock::SystemClock);
        let ctx = Context::new(
            Scope::new(ids.next(IdKind::Tenant), Mode::Test),
            Actor::System { function: "generate-invoice".into() },
            None,
        );
        let at = chrono::Utc::now();
        let usd = billy_core::money::Currency::parse("usd", "currency").unwrap();
        let draft = Invoice::draft(
            ids.next(IdKind::Invoice),
            ids.next(IdKind::Customer),
            None,
            billy_core::plan::Direction::Debit,
            usd,
            None,
            at,
            false,
        );
        let mut inv = draft.with_items(vec![InvoiceItem::new("Seat", 1, 1000).unwrap()]).unwrap();
        inv.version = 1;
        let mut created = ctx.snapshot(&ids, at, "invoice.created", &inv);
        created.change = serde_json::to_value(InvoiceChange::Created { invoice: Box::new(inv.clone()) }).ok();
        let change = transition(&mut inv, InvoiceAction::Finalize, at).unwrap();
        let mut finalized = ctx.snapshot(&ids, at, "invoice.finalized", &inv);
        finalized.change = serde_json::to_value(change).ok();
        let items = billy_aws::dynamo::audit_items(&[created.clone(), finalized.clone()]).unwrap();
        assert_eq!(items.len(), 1);

        let tallies = tallied(items.into_iter().next().unwrap()).unwrap();
        // Each event is counted under its own version, as when they were two items
        let guards: Vec<&Guard> = tallies.iter().map(|t| &t.guard).collect();
        let version = |version| Guard::Version { entity: inv.id.clone(), version };
        assert_eq!(guards, [&version(1), &version(2)]);
        let events: Vec<_> = tallies.iter().map(|t| t.event.clone()).collect();
        assert_eq!(events, [created.id.clone(), finalized.id.clone()]);
        let one_by_one: Vec<Tally> = [created, finalized].iter().filter_map(|e| tally(e).unwrap()).collect();
        assert_eq!(tallies, one_by_one);
    }
}
