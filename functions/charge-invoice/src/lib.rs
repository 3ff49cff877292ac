//! Charge queue consumer: makes one attempt to collect an invoice through the gateways.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billy_aws::AwsClients;
use billy_aws::sandbox::SandboxGateway;
use billy_core::billing::{CHARGE_INVOICE, ChargeDeps, ChargeRequest, MESSAGE_VERSION, charge_invoices};
use billy_core::dunning::DunningPolicy;
use billy_core::gateway::PaymentGateway;
use billy_lambda::SqsFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::sqs::for_batch;

#[derive(Debug)]
pub struct App {
    deps: Deps,
    gateways: Vec<SandboxGateway>,
    dunning: DunningPolicy,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, gateways: Deps::gateways(config), dunning: DunningPolicy::default() })
    }
}

#[async_trait]
impl SqsFunction for App {
    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let d = &self.deps;
        let gateways: Vec<&dyn PaymentGateway> = self.gateways.iter().map(|g| g as &dyn PaymentGateway).collect();
        let deps = ChargeDeps {
            invoices: &d.invoices,
            subscriptions: &d.subscriptions,
            customers: &d.customers,
            methods: &d.methods,
            transactions: &d.transactions,
            unit: &d.unit,
            bus: &d.bus,
            ids: &d.ids,
            gateways: &gateways,
            dunning: &self.dunning,
            clocks: &d.clocks,
            clock: &d.clock,
        };
        Ok(for_batch(event, CHARGE_INVOICE, &[MESSAGE_VERSION], |requests: Vec<ChargeRequest>| async move {
            charge_invoices(deps, &requests).await.into_iter().map(|r| r.map(|_| ())).collect()
        })
        .await)
    }
}
