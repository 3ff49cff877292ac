//! The verification job. On a `verification.created` announcement it runs that verification; on
//! its nightly schedule it asks for one of the current month for every tenant mode with a
//! subscription to bill or a month to settle (each then runs on its own announcement).

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billy_aws::AwsClients;
use billy_core::audit::{Actor, Context};
use billy_core::billing::{request_verification, run_verification};
use billy_core::events::EventType;
use billy_core::ports::{Clock, SettlementRepository, SubscriptionRepository};
use billy_core::settlement::Month;
use billy_lambda::EventFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::function::{announcement, subject};

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
    async fn handle(&self, event: EventBridgeEvent) -> Result<(), lambda_runtime::Error> {
        let d = &self.deps;
        let p = d.ports();
        if let Some(announced) = announcement(&event) {
            if announced.kind != EventType::VerificationCreated {
                return Ok(());
            }
            let Some(id) = subject(&announced) else { return Ok(()) };
            let v = run_verification(&p, &announced.scope, &id).await?;
            tracing::info!(verification = %v.id, status = ?v.status, mismatches = v.mismatch_count, invoices = v.invoices_checked, "verified");
            return Ok(());
        }
        let month = Month::of(d.clock.now());
        let mut scopes = d.subscriptions.scopes_billing().await?;
        for scope in d.settlements.scopes_settling().await? {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        for scope in scopes {
            let ctx = Context::new(scope.clone(), Actor::System { function: "verify-month".into() }, None);
            if let Err(e) = request_verification(&p, &ctx, month, "schedule").await {
                tracing::warn!(scope = %scope.key(), error = %e, "verification not asked for; the next night asks again");
            }
        }
        Ok(())
    }
}
