//! The billing tick: on its schedule, bills every subscription due now across all shards; on a
//! `test_clock.advanced` announcement, bills that clock's due subscriptions at the clock's time;
//! on a `subscription.created` one, bills that subscription's first period at once. A subscription
//! that cannot be billed is logged by id (and recorded on its test clock) and never stops the
//! others.

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billy_aws::AwsClients;
use billy_aws::dynamo::DUE_SHARDS;
use billy_core::DomainResult;
use billy_core::billing::{TickReport, bill_clock, bill_due_subscriptions, now_for};
use billy_core::events::EventType;
use billy_core::ports::{Clock, SubscriptionRepository, TestClockRepository};
use billy_lambda::EventFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::function::{announcement, subject};

/// Subscriptions taken from one shard per tick; the rest wait for the next tick.
const PER_SHARD: usize = 1000;

#[derive(Debug)]
pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)? })
    }

    async fn tick(&self, event: &EventBridgeEvent) -> DomainResult<TickReport> {
        let d = &self.deps;
        let p = d.ports();
        let Some(announced) = announcement(event) else {
            // The schedule: every shard, each on its own, so one shard's trouble stops no other.
            let now = d.clock.now();
            let mut report = TickReport::default();
            for shard in 0..DUE_SHARDS {
                let billed = match d.subscriptions.due(shard, now, PER_SHARD).await {
                    Ok(due) => bill_due_subscriptions(&p, &due, now).await,
                    Err(e) => Err(e),
                };
                match billed {
                    Ok(r) => {
                        report.periods += r.periods;
                        report.failed.extend(r.failed);
                    }
                    Err(e) => tracing::warn!(shard, error = %e, "shard not billed; the next tick retries it"),
                }
            }
            return Ok(report);
        };
        let Some(id) = subject(&announced) else { return Ok(TickReport::default()) };
        let scope = &announced.scope;
        match announced.kind {
            EventType::TestClockAdvanced => match d.clocks.get(scope, &id).await? {
                Some(clock) => bill_clock(&p, &clock, scope).await,
                None => Ok(TickReport::default()),
            },
            EventType::SubscriptionCreated => {
                let Some(sub) = d.subscriptions.get(scope, &id).await? else { return Ok(TickReport::default()) };
                let now = now_for(&d.clocks, &d.clock, scope, sub.test_clock.as_ref()).await?;
                bill_due_subscriptions(&p, &[(scope.clone(), id)], now).await
            }
            _ => Ok(TickReport::default()),
        }
    }
}

#[async_trait]
impl EventFunction for App {
    async fn handle(&self, event: EventBridgeEvent) -> Result<(), lambda_runtime::Error> {
        let report = self.tick(&event).await?;
        for failure in &report.failed {
            failure.log("billing-tick");
        }
        tracing::info!(periods = report.periods, failed = report.failed.len(), "billing tick done");
        // An announcement is delivered again when its invocation fails: worth it for a failure
        // that may pass (the schedule comes back by itself every minute).
        if announcement(&event).is_some() && report.failed.iter().any(|f| f.error.is_retryable()) {
            return Err("some subscriptions could not be billed for now; retrying".into());
        }
        Ok(())
    }
}
