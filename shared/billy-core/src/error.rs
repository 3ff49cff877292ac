//! The domain's typed errors; one place (billy-lambda) maps them to HTTP.

use thiserror::Error;

pub type DomainResult<T> = Result<T, DomainError>;

/// Every error a use case can return. Codes are stable: clients branch on them.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DomainError {
    /// Bad input: nothing was changed.
    #[error("{message}")]
    Invalid { code: &'static str, message: String, param: Option<String> },
    /// The object does not exist for this tenant and mode (other tenants' objects look the same).
    #[error("no such {entity}: '{id}'")]
    NotFound { entity: &'static str, id: String },
    /// A concurrent change won, or the request conflicts with the current state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A lifecycle transition that the state machine does not allow.
    #[error("cannot {action} a {entity} that is {from}")]
    IllegalTransition { entity: &'static str, from: String, action: String },
    #[error("{0}")]
    Unauthenticated(String),
    /// A payment gateway could not be reached or did not answer: try again later (503).
    #[error("{0}")]
    Unavailable(String),
    /// A dependency failed; the message is for logs, never for API clients.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

impl DomainError {
    pub fn invalid(code: &'static str, message: impl Into<String>, param: Option<&str>) -> Self {
        Self::Invalid { code, message: message.into(), param: param.map(str::to_owned) }
    }

    pub fn not_found(entity: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound { entity, id: id.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }

    pub fn unexpected(message: impl std::fmt::Display) -> Self {
        Self::Unexpected(message.to_string())
    }

    /// Whether doing the same thing again may succeed: a lost race or a failing dependency may
    /// pass next time; bad input, a missing object or an illegal transition never will.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::Unexpected(_) | Self::Unavailable(_))
    }
}
