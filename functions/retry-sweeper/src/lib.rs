//! The retry sweeper: asks for the next attempt of every invoice whose dunning retry is due (on
//! its schedule across all shards; on a `test_clock.advanced` event, for that clock).

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billy_aws::AwsClients;
use billy_aws::dynamo::DUE_SHARDS;
use billy_core::DomainError;
use billy_core::billing::sweep_retries;
use billy_core::ports::{Clock, InvoiceRepository, TestClockRepository};
use billy_lambda::EventFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::function::clock_of;

const PER_SHARD: usize = 1000;

#[derive(Debug)]
pub struct App {
    deps: Deps,
    charge_queue: String,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, charge_queue: config.require("CHARGE_QUEUE_URL")?.to_owned() })
    }
}

#[async_trait]
impl EventFunction for App {
    async fn handle(&self, event: EventBridgeEvent) -> Result<(), lambda_runtime::Error> {
        let d = &self.deps;
        let asked = if let Some((scope, clock_id)) = clock_of(&event) {
            let clock = d
                .clocks
                .get(&scope, &clock_id)
                .await?
                .ok_or_else(|| DomainError::not_found("test_clock", clock_id.to_string()))?;
            let due = d.clocks.due_retries(&clock.id, clock.frozen_time).await?;
            sweep_retries(&d.invoices, &d.queue, &self.charge_queue, &due, clock.frozen_time).await?
        } else {
            let now = d.clock.now();
            let mut asked = 0;
            for shard in 0..DUE_SHARDS {
                let due = d.invoices.retries_due(shard, now, PER_SHARD).await?;
                asked += sweep_retries(&d.invoices, &d.queue, &self.charge_queue, &due, now).await?;
            }
            asked
        };
        tracing::info!(retries = asked, "retry sweep done");
        Ok(())
    }
}
