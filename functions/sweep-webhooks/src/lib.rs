//! The webhook sweeper (every minute): asks for every delivery attempt that is due. Retries are
//! minutes to hours apart, beyond what a queue's delay can hold, so each waits in the due index
//! until this asks for it; a first or manual attempt whose own message was lost is asked for
//! again a minute later. Real time only: endpoints are not on test clocks.

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billy_aws::AwsClients;
use billy_aws::dynamo::DUE_SHARDS;
use billy_core::ports::{Clock, QueuePublisher, WebhookRepository};
use billy_core::service::webhooks::due_attempts;
use billy_lambda::EventFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;

const PER_SHARD: usize = 1000;

#[derive(Debug)]
pub struct App {
    deps: Deps,
    delivery_queue: String,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, delivery_queue: config.require("DELIVERY_QUEUE_URL")?.to_owned() })
    }

    /// Every due attempt of every shard, as messages to the delivery queue; a shard that fails is
    /// swept again next minute and never stops the others.
    async fn sweep(&self) -> usize {
        let p = self.deps.ports();
        let now = self.deps.clock.now();
        let mut asked = 0;
        for shard in 0..DUE_SHARDS {
            let swept = async {
                let due = self.deps.webhooks.deliveries_due(shard, now, PER_SHARD).await?;
                let messages = due_attempts(&p, &due, now).await?;
                self.deps.queue.send(&self.delivery_queue, &messages).await?;
                Ok::<_, billy_core::DomainError>(messages.len())
            };
            match swept.await {
                Ok(n) => asked += n,
                Err(e) => tracing::warn!(shard, error = %e, "deliveries not swept; the next sweep retries them"),
            }
        }
        asked
    }
}

#[async_trait]
impl EventFunction for App {
    async fn handle(&self, _event: EventBridgeEvent) -> Result<(), lambda_runtime::Error> {
        let asked = self.sweep().await;
        tracing::info!(asked, "webhook sweep done");
        Ok(())
    }
}
