//! Billy's domain: every business rule, with no AWS or Lambda dependency, behind small ports.

pub mod audit;
pub mod billing;
pub mod clock;
pub mod coupon;
pub mod credit;
pub mod customer;
pub mod dunning;
pub mod error;
pub mod events;
pub mod gateway;
pub mod gateway_account;
pub mod ids;
pub mod invoice;
pub mod journal;
pub mod ledger;
pub mod money;
pub mod page;
pub mod payment_method;
pub mod plan;
pub mod ports;
pub mod report;
pub mod routing;
pub mod schedule;
pub mod service;
pub mod session;
pub mod settings;
pub mod settlement;
pub mod subscription;
pub mod summary;
pub mod tenant;
pub mod test_clock;
pub mod transaction;
pub mod usage;
pub mod verification;
pub mod webhook;

pub use error::{DomainError, DomainResult};
