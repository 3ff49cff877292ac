//! Bill queue consumer: creates exactly one invoice per subscription period (its charge follows
//! from the invoice's own announcement). A period that can never be billed is dead-lettered with
//! its reason, and its test clock, if any, says so.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billy_aws::AwsClients;
use billy_core::billing::{BILL_PERIOD, BillPeriod, MESSAGE_VERSION, generate_invoices, record_clock_failure};
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
        let decoding = Decoding::new(BILL_PERIOD, &[MESSAGE_VERSION]);
        let outcome = for_batch(event, decoding, Some(queues), |periods: Vec<BillPeriod>| async move {
            generate_invoices(p, &periods).await.into_iter().map(|r| r.map(|_| ())).collect()
        })
        .await;
        for (period, reason) in outcome.dead {
            if let Some(period) = period
                && let Some(clock) = &period.test_clock
                && let Err(e) =
                    record_clock_failure(p, &period.scope, clock, "generate-invoice", &period.subscription, &reason)
                        .await
            {
                tracing::error!(error = %e, subscription = %period.subscription, "clock failure not recorded");
            }
        }
        Ok(outcome.response)
    }
}
