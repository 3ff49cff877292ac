//! Bill queue consumer: creates exactly one invoice per subscription period and asks for its charge.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billy_aws::AwsClients;
use billy_core::billing::{BILL_PERIOD, BillPeriod, GenerateDeps, MESSAGE_VERSION, generate_invoices};
use billy_lambda::SqsFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::sqs::for_batch;

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
impl SqsFunction for App {
    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let d = &self.deps;
        let deps = GenerateDeps {
            subscriptions: &d.subscriptions,
            invoices: &d.invoices,
            clocks: &d.clocks,
            unit: &d.unit,
            queue: &d.queue,
            ids: &d.ids,
            clock: &d.clock,
            charge_queue: &self.charge_queue,
        };
        Ok(for_batch(event, BILL_PERIOD, &[MESSAGE_VERSION], |periods: Vec<BillPeriod>| async move {
            generate_invoices(deps, &periods).await.into_iter().map(|r| r.map(|_| ())).collect()
        })
        .await)
    }
}
