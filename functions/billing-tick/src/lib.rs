//! The billing tick: on its schedule, bills every subscription due now across all shards; on a
//! `test_clock.advanced` event, bills that clock's due subscriptions at the clock's time.

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billy_aws::AwsClients;
use billy_aws::dynamo::DUE_SHARDS;
use billy_core::billing::{TickDeps, bill_due_subscriptions};
use billy_core::ids::Id;
use billy_core::ports::{Clock, SubscriptionRepository, TestClockRepository};
use billy_core::tenant::Scope;
use billy_core::{DomainError, DomainResult};
use billy_lambda::EventFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::function::clock_of;
use chrono::{DateTime, Utc};

/// Subscriptions taken from one shard per tick; the rest wait for the next tick.
const PER_SHARD: usize = 1000;

#[derive(Debug)]
pub struct App {
    deps: Deps,
    bill_queue: String,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, bill_queue: config.require("BILL_QUEUE_URL")?.to_owned() })
    }

    async fn bill_all(&self, due: Vec<(Scope, Id)>, now: DateTime<Utc>) -> DomainResult<usize> {
        let d = &self.deps;
        let deps = TickDeps {
            subscriptions: &d.subscriptions,
            unit: &d.unit,
            queue: &d.queue,
            ids: &d.ids,
            bill_queue: &self.bill_queue,
        };
        let report = bill_due_subscriptions(deps, &due, now).await?;
        if report.failures > 0 {
            tracing::warn!(
                failures = report.failures,
                "some due subscriptions were not billed; the next tick retries them"
            );
            return Err(DomainError::unexpected(format!("{} subscriptions could not be billed", report.failures)));
        }
        Ok(report.periods)
    }
}

#[async_trait]
impl EventFunction for App {
    async fn handle(&self, event: EventBridgeEvent) -> Result<(), lambda_runtime::Error> {
        let d = &self.deps;
        let sent = if let Some((scope, clock_id)) = clock_of(&event) {
            let clock = d
                .clocks
                .get(&scope, &clock_id)
                .await?
                .ok_or_else(|| DomainError::not_found("test_clock", clock_id.to_string()))?;
            let due = d.clocks.due_subscriptions(&clock.id, clock.frozen_time).await?;
            self.bill_all(due, clock.frozen_time).await?
        } else {
            let now = d.clock.now();
            let mut sent = 0;
            for shard in 0..DUE_SHARDS {
                let due = d.subscriptions.due(shard, now, PER_SHARD).await?;
                sent += self.bill_all(due, now).await?;
            }
            sent
        };
        tracing::info!(periods = sent, "billing tick done");
        Ok(())
    }
}
