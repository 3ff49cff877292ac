//! Payout queue consumer: makes one attempt to pay a payout invoice out to the customer's default
//! payout destination, through the gateway's `payout` with the transaction's idempotency key. Its
//! messages come from the retry sweeper and, relayed by the outbox, from the payout invoices' own
//! announcements (`invoice.finalized`, `payout.failed`); the outcome arrives by signed webhook
//! (`payout.paid` / `payout.failed`).

use billy_aws::AwsClients;
use billy_core::plan::Direction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::money::MoneyStep;

pub type App = MoneyStep;

pub fn app(config: &Config, aws: &AwsClients) -> Result<App, MissingVariable> {
    MoneyStep::new(config, aws, Direction::Payout)
}
