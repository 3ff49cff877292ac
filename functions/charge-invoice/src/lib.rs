//! Charge queue consumer: makes one attempt to collect a debit invoice through the gateways. Its
//! messages come from the retry sweeper and, relayed by the outbox, from the invoices' own
//! announcements (`invoice.finalized`, `invoice.payment_failed`). The step itself is shared with
//! the payout pipeline (`billy_lambda::money`).

use billy_aws::AwsClients;
use billy_core::plan::Direction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::money::MoneyStep;

pub type App = MoneyStep;

pub fn app(config: &Config, aws: &AwsClients) -> Result<App, MissingVariable> {
    MoneyStep::new(config, aws, Direction::Debit)
}
