//! The sweeper: asks for the next attempt of every invoice whose dunning retry is due, and looks
//! up at their gateways the transactions whose outcome was lost (on its schedule across all
//! shards; on a `test_clock.advanced` announcement, for that clock).

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billy_aws::AwsClients;
use billy_aws::dynamo::DUE_SHARDS;
use billy_core::DomainResult;
use billy_core::billing::{sweep_retries, sweep_unknown};
use billy_core::events::EventType;
use billy_core::ports::{Clock, InvoiceRepository, TestClockRepository, TransactionRepository};
use billy_lambda::EventFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::function::{announcement, subject};

const PER_SHARD: usize = 1000;

#[derive(Debug)]
pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)? })
    }

    async fn sweep(&self, event: &EventBridgeEvent) -> DomainResult<(usize, usize)> {
        let d = &self.deps;
        let p = d.ports();
        if let Some(announced) = announcement(event) {
            if announced.kind != EventType::TestClockAdvanced {
                return Ok((0, 0));
            }
            let Some(id) = subject(&announced) else { return Ok((0, 0)) };
            let Some(clock) = d.clocks.get(&announced.scope, &id).await? else { return Ok((0, 0)) };
            let retries = d.clocks.due_retries(&clock.id, clock.frozen_time).await?;
            let rechecks = d.clocks.due_rechecks(&clock.id, clock.frozen_time).await?;
            return Ok((
                sweep_retries(&p, &retries, clock.frozen_time).await?,
                sweep_unknown(&p, &rechecks, clock.frozen_time).await?,
            ));
        }
        let now = d.clock.now();
        let (mut asked, mut looked_up) = (0, 0);
        for shard in 0..DUE_SHARDS {
            let swept = async {
                let retries = d.invoices.retries_due(shard, now, PER_SHARD).await?;
                let rechecks = d.transactions.rechecks_due(shard, now, PER_SHARD).await?;
                Ok::<_, billy_core::DomainError>((
                    sweep_retries(&p, &retries, now).await?,
                    sweep_unknown(&p, &rechecks, now).await?,
                ))
            };
            match swept.await {
                Ok((a, l)) => {
                    asked += a;
                    looked_up += l;
                }
                Err(e) => tracing::warn!(shard, error = %e, "shard not swept; the next sweep retries it"),
            }
        }
        Ok((asked, looked_up))
    }
}

#[async_trait]
impl EventFunction for App {
    async fn handle(&self, event: EventBridgeEvent) -> Result<(), lambda_runtime::Error> {
        let (retries, lookups) = self.sweep(&event).await?;
        tracing::info!(retries, lookups, "sweep done");
        Ok(())
    }
}
