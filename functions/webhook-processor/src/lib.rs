//! Webhook queue consumer: applies verified gateway events in event-time order.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billy_aws::AwsClients;
use billy_core::billing::{EventDeps, GATEWAY_EVENT, MESSAGE_VERSION, apply_gateway_events};
use billy_core::dunning::DunningPolicy;
use billy_core::gateway::GatewayEvent;
use billy_lambda::SqsFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::sqs::for_batch;

#[derive(Debug)]
pub struct App {
    deps: Deps,
    dunning: DunningPolicy,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, dunning: DunningPolicy::default() })
    }
}

#[async_trait]
impl SqsFunction for App {
    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let d = &self.deps;
        let deps = EventDeps {
            invoices: &d.invoices,
            subscriptions: &d.subscriptions,
            transactions: &d.transactions,
            clocks: &d.clocks,
            unit: &d.unit,
            bus: &d.bus,
            ids: &d.ids,
            clock: &d.clock,
            dunning: &self.dunning,
        };
        Ok(for_batch(event, GATEWAY_EVENT, &[MESSAGE_VERSION], |events: Vec<GatewayEvent>| async move {
            apply_gateway_events(deps, &events).await.into_iter().map(|r| r.map(|_| ())).collect()
        })
        .await)
    }
}
