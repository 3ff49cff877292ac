//! Billy's domain: every business rule, with no AWS or Lambda dependency, behind small ports.

pub mod audit;
pub mod clock;
pub mod customer;
pub mod error;
pub mod ids;
pub mod memory;
pub mod page;
pub mod ports;
pub mod tenant;

pub use error::{DomainError, DomainResult};
