//! Every adapter a function may need, built once per process from its configuration. Building all
//! of them is cheap (they share the SDK clients); each function uses the few it needs.

use crate::config::{Config, MissingVariable};
use billy_aws::audit::DynamoAudit;
use billy_aws::customers::DynamoCustomers;
use billy_aws::events::EventBridgePublisher;
use billy_aws::idempotency::DynamoIdempotency;
use billy_aws::invoices::DynamoInvoices;
use billy_aws::payment_methods::DynamoPaymentMethods;
use billy_aws::plans::DynamoPlans;
use billy_aws::sqs::SqsPublisher;
use billy_aws::subscriptions::DynamoSubscriptions;
use billy_aws::tenants::DynamoTenants;
use billy_aws::test_clocks::DynamoTestClocks;
use billy_aws::transactions::DynamoTransactions;
use billy_aws::unit::DynamoUnitOfWork;
use billy_aws::{AwsClients, Tables};
use billy_core::clock::SystemClock;
use billy_core::ids::RandomIds;
use billy_core::service::Services;

#[derive(Debug)]
pub struct Deps {
    pub aws: AwsClients,
    pub tables: Tables,
    pub tenants: DynamoTenants,
    pub customers: DynamoCustomers,
    pub methods: DynamoPaymentMethods,
    pub plans: DynamoPlans,
    pub subscriptions: DynamoSubscriptions,
    pub invoices: DynamoInvoices,
    pub transactions: DynamoTransactions,
    pub clocks: DynamoTestClocks,
    pub audit: DynamoAudit,
    pub unit: DynamoUnitOfWork,
    pub idempotency: DynamoIdempotency,
    pub queue: SqsPublisher,
    pub bus: EventBridgePublisher,
    pub ids: RandomIds<SystemClock>,
    pub clock: SystemClock,
}

impl Deps {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        let tables = config.tables()?;
        let ddb = || aws.dynamodb.clone();
        Ok(Self {
            tenants: DynamoTenants::new(ddb(), tables.clone()),
            customers: DynamoCustomers::new(ddb(), tables.clone()),
            methods: DynamoPaymentMethods::new(ddb(), tables.clone()),
            plans: DynamoPlans::new(ddb(), tables.clone()),
            subscriptions: DynamoSubscriptions::new(ddb(), tables.clone()),
            invoices: DynamoInvoices::new(ddb(), tables.clone()),
            transactions: DynamoTransactions::new(ddb(), tables.clone()),
            clocks: DynamoTestClocks::new(ddb(), tables.clone()),
            audit: DynamoAudit::new(ddb(), tables.clone()),
            unit: DynamoUnitOfWork::new(ddb(), tables.clone()),
            idempotency: DynamoIdempotency::new(ddb(), tables.clone()),
            queue: SqsPublisher::new(aws.sqs.clone()),
            bus: EventBridgePublisher::new(aws.eventbridge.clone(), config.require("BILLY_EVENT_BUS")?),
            ids: RandomIds::new(SystemClock),
            clock: SystemClock,
            aws: aws.clone(),
            tables,
        })
    }

    /// The payment gateways this deployment is configured for, in routing order. The sandbox is
    /// configured by `SANDBOX_URL` (empty on deployments without it).
    pub fn gateways(config: &Config) -> Vec<billy_aws::sandbox::SandboxGateway> {
        match config.get("SANDBOX_URL").filter(|u| !u.is_empty()) {
            Some(url) => vec![billy_aws::sandbox::SandboxGateway::new(
                url,
                config.get("SANDBOX_API_KEY").unwrap_or_default(),
                config.get("SANDBOX_WEBHOOK_SECRET").unwrap_or_default(),
            )],
            None => Vec::new(),
        }
    }

    pub fn services(&self) -> Services<'_> {
        Services {
            customers: &self.customers,
            methods: &self.methods,
            plans: &self.plans,
            subscriptions: &self.subscriptions,
            invoices: &self.invoices,
            clocks: &self.clocks,
            audit: &self.audit,
            unit: &self.unit,
            bus: &self.bus,
            ids: &self.ids,
            clock: &self.clock,
        }
    }
}
