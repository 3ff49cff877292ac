//! Webhook queue consumer: applies verified gateway events (and look-up results) in event-time
//! order.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billy_aws::AwsClients;
use billy_core::billing::{GATEWAY_EVENT, MESSAGE_VERSION, apply_gateway_events};
use billy_core::gateway::GatewayEvent;
use billy_lambda::SqsFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::sqs::{ConsumedQueue, Decoding, Queues, for_batch};

#[derive(Debug)]
pub struct App {
    deps: Deps,
    queue: ConsumedQueue,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, queue: ConsumedQueue::from_config(config)? })
    }
}

#[async_trait]
impl SqsFunction for App {
    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let p = self.deps.ports();
        let p = &p;
        let queues = Queues { publisher: &self.deps.queue, queue: &self.queue };
        let decoding = Decoding::new(GATEWAY_EVENT, &[MESSAGE_VERSION]);
        let outcome = for_batch(event, decoding, Some(queues), |events: Vec<GatewayEvent>| async move {
            apply_gateway_events(p, &events).await.into_iter().map(|r| r.map(|_| ())).collect()
        })
        .await;
        Ok(outcome.response)
    }
}
