//! The step both money pipelines share: one attempt per queued request to move an invoice's money
//! through the gateways, a charge on the debit pipeline (`charge-invoice`) and a payout on the
//! payout pipeline (`pay-out`). Each pipeline has its own queue, dead-letter queue and function,
//! and takes only its own direction's invoices.

use crate::SqsFunction;
use crate::config::{Config, MissingVariable};
use crate::deps::Deps;
use crate::sqs::{ConsumedQueue, Decoding, Queues, for_batch};
use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billy_aws::AwsClients;
use billy_core::billing::{
    CHARGE_INVOICE, ChargeRequest, MESSAGE_VERSION, PAY_OUT_INVOICE, charge_invoices, pay_out_invoices,
    record_clock_failure,
};
use billy_core::plan::Direction;
use billy_core::ports::InvoiceRepository;

#[derive(Debug)]
pub struct MoneyStep {
    deps: Deps,
    queue: ConsumedQueue,
    direction: Direction,
}

impl MoneyStep {
    pub fn new(config: &Config, aws: &AwsClients, direction: Direction) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, queue: ConsumedQueue::from_config(config)?, direction })
    }

    const fn names(&self) -> (&'static str, &'static str) {
        match self.direction {
            Direction::Debit => (CHARGE_INVOICE, "charge-invoice"),
            Direction::Payout => (PAY_OUT_INVOICE, "pay-out"),
        }
    }
}

#[async_trait]
impl SqsFunction for MoneyStep {
    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let p = self.deps.ports();
        let p = &p;
        let (kind, function) = self.names();
        let direction = self.direction;
        let queues = Queues { publisher: &self.deps.queue, queue: &self.queue };
        let decoding = Decoding::new(kind, &[MESSAGE_VERSION]);
        let outcome = for_batch(event, decoding, Some(queues), |requests: Vec<ChargeRequest>| async move {
            let outcomes = match direction {
                Direction::Debit => charge_invoices(p, &requests).await,
                Direction::Payout => pay_out_invoices(p, &requests).await,
            };
            outcomes.into_iter().map(|r| r.map(|_| ())).collect()
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
                    record_clock_failure(p, &request.scope, &clock, function, &request.invoice, &reason).await
            {
                tracing::error!(error = %e, invoice = %request.invoice, "clock failure not recorded");
            }
        }
        Ok(outcome.response)
    }
}
