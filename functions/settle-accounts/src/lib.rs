//! The nightly settlement job: for every tenant mode with invoices waiting in monthly settlements
//! or months not yet settled, keeps the open months' figures up to date, closes the months that
//! are over (never touching a closed one again) and moves each closed month's net when it is due
//! (a charge on the 1st, a payout on the 15th). Each tenant's run is recorded with what it changed.

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billy_aws::AwsClients;
use billy_core::billing::run_settlements;
use billy_core::ports::SettlementRepository;
use billy_lambda::EventFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;

#[derive(Debug)]
pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)? })
    }
}

#[async_trait]
impl EventFunction for App {
    async fn handle(&self, _event: EventBridgeEvent) -> Result<(), lambda_runtime::Error> {
        let p = self.deps.ports();
        let scopes = self.deps.settlements.scopes_settling().await?;
        let (mut changes, mut failed) = (0, 0);
        for scope in &scopes {
            // One tenant's failure never holds up the others; its work waits for the next run.
            match run_settlements(&p, scope, "schedule").await {
                Ok(run) => changes += run.changes.len(),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(scope = %scope.key(), error = %e, "tenant not settled; the next run retries it");
                }
            }
        }
        tracing::info!(tenants = scopes.len(), changes, failed, "settlement run done");
        Ok(())
    }
}
