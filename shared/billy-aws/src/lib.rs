//! Adapters of Billy's ports over the real AWS SDK: DynamoDB repositories and the audit journal,
//! SQS and EventBridge publishers, and the health probe.

pub mod adyen;
pub mod audit;
pub mod clients;
pub mod credits;
pub mod customers;
pub mod directory;
pub mod dynamo;
pub mod events;
pub mod exports;
pub mod gateway_accounts;
pub mod health;
pub mod idempotency;
pub mod invoices;
pub mod items;
pub mod kms;
pub mod metering;
pub mod payment_methods;
pub mod plans;
pub mod reports;
pub mod sandbox;
pub mod settings;
pub mod settlements;
pub mod sqs;
pub mod store;
pub mod stripe;
pub mod subscriptions;
pub mod tenants;
pub mod test_clocks;
pub mod transactions;
pub mod unit;
pub mod usage;
pub mod verifications;
pub mod webhooks;

pub use clients::{AwsClients, LocalEndpoints, Tables};
