//! Every adapter a function may need, built once per process from its configuration and lent to
//! each invocation as one set of ports. Building all of them is cheap (they share the SDK
//! clients); each function uses the few it needs.

use crate::config::{Config, MissingVariable};
use billy_aws::audit::DynamoAudit;
use billy_aws::credits::{DynamoCoupons, DynamoCredits};
use billy_aws::customers::DynamoCustomers;
use billy_aws::directory::{AwsGatewayDirectory, GatewayEndpoints};
use billy_aws::events::EventBridgePublisher;
use billy_aws::exports::DynamoExports;
use billy_aws::gateway_accounts::DynamoGatewayAccounts;
use billy_aws::idempotency::DynamoIdempotency;
use billy_aws::invoices::DynamoInvoices;
use billy_aws::kms::{KmsSecretBox, KmsSessionSigner};
use billy_aws::payment_methods::DynamoPaymentMethods;
use billy_aws::plans::DynamoPlans;
use billy_aws::reports::DynamoReports;
use billy_aws::sandbox::SandboxGateway;
use billy_aws::settings::DynamoSettings;
use billy_aws::settlements::DynamoSettlements;
use billy_aws::sqs::SqsPublisher;
use billy_aws::subscriptions::DynamoSubscriptions;
use billy_aws::tenants::DynamoTenants;
use billy_aws::test_clocks::DynamoTestClocks;
use billy_aws::transactions::DynamoTransactions;
use billy_aws::unit::{AttemptClaims, DynamoUnitOfWork};
use billy_aws::usage::DynamoUsage;
use billy_aws::verifications::DynamoVerifications;
use billy_aws::webhooks::DynamoWebhooks;
use billy_aws::{AwsClients, Tables};
use billy_core::clock::SystemClock;
use billy_core::gateway::GatewayRegistry;
use billy_core::ids::RandomIds;
use billy_core::ports::{Ports, QueueUrls};
use billy_core::routing::CircuitBreaker;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Deps {
    pub aws: AwsClients,
    pub tables: Tables,
    pub tenants: DynamoTenants,
    pub customers: DynamoCustomers,
    pub methods: DynamoPaymentMethods,
    pub destinations: DynamoPaymentMethods,
    pub plans: DynamoPlans,
    pub subscriptions: DynamoSubscriptions,
    pub invoices: DynamoInvoices,
    pub transactions: DynamoTransactions,
    pub clocks: DynamoTestClocks,
    pub audit: DynamoAudit,
    pub settings: DynamoSettings,
    pub exports: DynamoExports,
    pub usage: DynamoUsage,
    pub credits: DynamoCredits,
    pub coupons: DynamoCoupons,
    pub settlements: DynamoSettlements,
    pub verifications: DynamoVerifications,
    pub unit: DynamoUnitOfWork,
    pub idempotency: DynamoIdempotency,
    pub queue: SqsPublisher,
    pub queues: QueueUrls,
    pub bus: EventBridgePublisher,
    pub gateways: AwsGatewayDirectory,
    pub breaker: CircuitBreaker,
    pub accounts: DynamoGatewayAccounts,
    pub webhooks: DynamoWebhooks,
    pub reports: DynamoReports,
    /// Signs browser sessions: only where `BILLY_SESSION_KEY` is set (the dashboard, the portal
    /// links, and the read routes the dashboard calls); elsewhere a session cookie is ignored.
    pub sessions: Option<KmsSessionSigner>,
    pub secrets: Arc<KmsSecretBox>,
    pub ids: RandomIds<SystemClock>,
    pub clock: SystemClock,
}

impl Deps {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        let tables = config.tables()?;
        let ddb = || aws.dynamodb.clone();
        let queue = |name: &str| config.get(name).filter(|u| !u.is_empty()).map(str::to_owned);
        let secrets = Arc::new(KmsSecretBox::new(aws.kms.clone(), config.get("BILLY_SECRETS_KEY").unwrap_or_default()));
        let accounts = DynamoGatewayAccounts::new(ddb(), tables.clone());
        let defaults = GatewayEndpoints::default();
        let endpoints = GatewayEndpoints {
            stripe: config.get("STRIPE_API_BASE").filter(|u| !u.is_empty()).map_or(defaults.stripe, str::to_owned),
            adyen: config.get("ADYEN_API_BASE").filter(|u| !u.is_empty()).map_or(defaults.adyen, str::to_owned),
            timeout: config
                .get("GATEWAY_TIMEOUT_MS")
                .and_then(|t| t.parse().ok())
                .map_or(defaults.timeout, Duration::from_millis),
        };
        let secret_box: Arc<dyn billy_core::ports::SecretBox> = secrets.clone();
        Ok(Self {
            tenants: DynamoTenants::with_key_ttl(
                ddb(),
                tables.clone(),
                config
                    .get("BILLY_KEY_CACHE_SECONDS")
                    .and_then(|s| s.parse().ok())
                    .map_or(billy_aws::tenants::KEY_CACHE_TTL, Duration::from_secs),
                Arc::new(SystemClock),
            ),
            customers: DynamoCustomers::new(ddb(), tables.clone()),
            methods: DynamoPaymentMethods::new(ddb(), tables.clone()),
            destinations: DynamoPaymentMethods::destinations(ddb(), tables.clone()),
            plans: DynamoPlans::new(ddb(), tables.clone()),
            subscriptions: DynamoSubscriptions::new(ddb(), tables.clone()),
            invoices: DynamoInvoices::new(ddb(), tables.clone()),
            transactions: DynamoTransactions::new(ddb(), tables.clone()),
            clocks: DynamoTestClocks::new(ddb(), tables.clone()),
            audit: DynamoAudit::new(ddb(), tables.clone()),
            settings: DynamoSettings::new(ddb(), tables.clone()),
            exports: DynamoExports::new(ddb(), tables.clone()),
            usage: DynamoUsage::new(ddb(), tables.clone()),
            credits: DynamoCredits::new(ddb(), tables.clone()),
            coupons: DynamoCoupons::new(ddb(), tables.clone()),
            settlements: DynamoSettlements::new(ddb(), tables.clone()),
            verifications: DynamoVerifications::new(ddb(), tables.clone()),
            unit: DynamoUnitOfWork::new(ddb(), tables.clone())
                .with_attempt_claims(AttemptClaims::from_setting(config.get("BILLY_ATTEMPT_CLAIMS"))),
            idempotency: DynamoIdempotency::new(ddb(), tables.clone()),
            queue: SqsPublisher::new(aws.sqs.clone()),
            queues: QueueUrls {
                bill: queue("BILL_QUEUE_URL"),
                charge: queue("CHARGE_QUEUE_URL"),
                payout: queue("PAYOUT_QUEUE_URL"),
                webhook: queue("WEBHOOK_QUEUE_URL"),
            },
            bus: EventBridgePublisher::new(aws.eventbridge.clone(), config.require("BILLY_EVENT_BUS")?),
            gateways: AwsGatewayDirectory::new(Self::gateways(config), accounts.clone(), secret_box, endpoints),
            breaker: CircuitBreaker::default(),
            accounts,
            webhooks: DynamoWebhooks::new(ddb(), tables.clone()),
            reports: DynamoReports::new(ddb(), config.get("BILLY_REPORT_TABLE").unwrap_or_default()),
            sessions: config
                .get("BILLY_SESSION_KEY")
                .filter(|k| !k.is_empty())
                .map(|key| KmsSessionSigner::new(aws.kms.clone(), key)),
            secrets,
            ids: RandomIds::new(SystemClock),
            clock: SystemClock,
            aws: aws.clone(),
            tables,
        })
    }

    /// The payment gateways this deployment is configured for, by name, in routing order. The
    /// sandbox is configured by `SANDBOX_URL` (empty on deployments without it);
    /// `SANDBOX_TIMEOUT_MS` bounds its calls (5 s by default).
    pub fn gateways(config: &Config) -> GatewayRegistry {
        let mut registry = GatewayRegistry::new();
        if let Some(url) = config.get("SANDBOX_URL").filter(|u| !u.is_empty()) {
            let timeout = config
                .get("SANDBOX_TIMEOUT_MS")
                .and_then(|t| t.parse().ok())
                .map_or(billy_aws::sandbox::DEFAULT_TIMEOUT, Duration::from_millis);
            registry.register(Arc::new(SandboxGateway::named(
                billy_aws::sandbox::NAME,
                url,
                config.get("SANDBOX_API_KEY").unwrap_or_default(),
                config.get("SANDBOX_WEBHOOK_SECRET").unwrap_or_default(),
                timeout,
            )));
        }
        registry
    }

    /// The ports every use case takes, lent for one invocation.
    pub fn ports(&self) -> Ports<'_> {
        Ports {
            tenants: &self.tenants,
            customers: &self.customers,
            methods: &self.methods,
            destinations: &self.destinations,
            plans: &self.plans,
            subscriptions: &self.subscriptions,
            invoices: &self.invoices,
            transactions: &self.transactions,
            clocks: &self.clocks,
            audit: &self.audit,
            settings: &self.settings,
            exports: &self.exports,
            usage: &self.usage,
            credits: &self.credits,
            coupons: &self.coupons,
            settlements: &self.settlements,
            verifications: &self.verifications,
            unit: &self.unit,
            queue: &self.queue,
            queues: &self.queues,
            gateways: &self.gateways,
            breaker: &self.breaker,
            accounts: &self.accounts,
            webhooks: &self.webhooks,
            secrets: self.secrets.as_ref(),
            ids: &self.ids,
            clock: &self.clock,
        }
    }
}
