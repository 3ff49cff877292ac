//! Charge queue consumer: makes one attempt to collect an invoice (or pay one out) through the
//! gateways. Its messages come from the retry sweeper and, relayed by the outbox, from the
//! invoices' own announcements (`invoice.finalized`, `invoice.payment_failed`).

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billy_aws::AwsClients;
use billy_core::billing::{CHARGE_INVOICE, ChargeRequest, MESSAGE_VERSION, charge_invoices, record_clock_failure};
use billy_core::ports::InvoiceRepository;
use billy_lambda::SqsFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::sqs::{DeadLetters, Decoding, for_batch};

#[derive(Debug)]
pub struct App {
    deps: Deps,
    dead_letters: String,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, dead_letters: config.require("DEAD_LETTER_QUEUE_URL")?.to_owned() })
    }
}

#[async_trait]
impl SqsFunction for App {
    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let p = self.deps.ports();
        let p = &p;
        let dead = DeadLetters { publisher: &self.deps.queue, queue: &self.dead_letters };
        let decoding = Decoding::new(CHARGE_INVOICE, &[MESSAGE_VERSION]);
        let outcome = for_batch(event, decoding, Some(dead), |requests: Vec<ChargeRequest>| async move {
            charge_invoices(p, &requests).await.into_iter().map(|r| r.map(|_| ())).collect()
        })
        .await;
        for (request, reason) in outcome.dead {
            let Some(request) = request else { continue };
            let clock = match self.deps.invoices.get(&request.scope, &request.invoice).await {
                Ok(Some(inv)) => inv.test_clock,
                _ => None,
            };
            if let Some(clock) = clock
                && let Err(e) =
                    record_clock_failure(p, &request.scope, &clock, "charge-invoice", &request.invoice, &reason).await
            {
                tracing::error!(error = %e, invoice = %request.invoice, "clock failure not recorded");
            }
        }
        Ok(outcome.response)
    }
}
