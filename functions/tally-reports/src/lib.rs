//! Keeps the dashboard's counters from the journal: a second consumer of the audit table's stream
//! (beside the outbox relay) that tallies each new invoice and subscription event into the report
//! counters, each event exactly once however often the stream delivers it. A batch that cannot be
//! written resumes from the first record not yet counted.

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use billy_aws::AwsClients;
use billy_aws::dynamo::audit_events_from_item;
use billy_core::report::{Tally, tally};
use billy_core::service::reports::{chunks, record};
use billy_lambda::StreamFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::function::resume_at;
use std::collections::HashMap;

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

#[async_trait]
impl StreamFunction for App {
    async fn handle(&self, event: DynamoDbEvent) -> Result<DynamoDbEventResponse, lambda_runtime::Error> {
        // The tallies in stream order, and the sequence number each came from.
        let (mut tallies, mut sequences): (Vec<Tally>, Vec<Option<String>>) = (Vec::new(), Vec::new());
        // The first record that cannot be counted: the stream resumes there, once everything
        // before it is counted (what is reported as done is never delivered again).
        let mut unreadable: Option<Option<String>> = None;
        for record in event.records {
            if record.event_name != "INSERT" {
                continue;
            }
            let sequence = record.change.sequence_number.clone();
            let item: HashMap<String, aws_sdk_dynamodb::types::AttributeValue> = record.change.new_image.into();
            if !item.contains_key("action") {
                // Nothing but audit events belongs on this table; a stray item must not hold up
                // the counting of every event after it.
                tracing::warn!(sequence = ?sequence, "not an audit event; skipped");
                continue;
            }
            // Most of the journal moves no counter: skip it before inflating its snapshots.
            let entity_type = item.get("entity_type").and_then(|a| a.as_s().ok());
            if entity_type.is_some_and(|t| !TALLIED.contains(&t.as_str())) {
                continue;
            }
            // (An item may hold several events of one entity: each is tallied.)
            let counted = audit_events_from_item(item)
                .and_then(|events| events.iter().map(tally).collect::<billy_core::DomainResult<Vec<_>>>());
            match counted {
                Ok(counted) => {
                    for t in counted.into_iter().flatten() {
                        tallies.push(t);
                        sequences.push(sequence.clone());
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, sequence = ?sequence, "audit event not tallied; the stream retries it");
                    unreadable = Some(sequence);
                    break;
                }
            }
        }
        let mut done = 0;
        for chunk in chunks(&tallies) {
            if let Err(e) = record(&self.deps.reports, chunk).await {
                tracing::warn!(error = %e, "report counters not written; the stream resumes at this chunk");
                return Ok(resume_at(sequences[done].clone()));
            }
            done += chunk.len();
        }
        Ok(unreadable.map_or_else(DynamoDbEventResponse::default, resume_at))
    }
}
