//! Cursor pagination shared by every list: `limit` 1–100 (default 20) and `starting_after`.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use serde::Serialize;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub starting_after: Option<Id>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { limit: DEFAULT_LIMIT, starting_after: None }
    }
}

impl PageRequest {
    /// Validates raw query values; `starting_after` must be an id of the listed kind.
    pub fn parse(limit: Option<&str>, starting_after: Option<&str>, kind: crate::ids::IdKind) -> DomainResult<Self> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(raw) => raw.parse::<usize>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
                DomainError::invalid(
                    "parameter_invalid",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                    Some("limit"),
                )
            })?,
        };
        let starting_after = starting_after.map(|raw| Id::parse(kind, raw, "starting_after")).transpose()?;
        Ok(Self { limit, starting_after })
    }
}

/// One page of a list, in the API's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { data: self.data.into_iter().map(f).collect(), has_more: self.has_more, next_cursor: self.next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdKind;

    #[test]
    fn limit_defaults_to_20_and_is_bounded() {
        assert_eq!(PageRequest::parse(None, None, IdKind::Customer).unwrap().limit, 20);
        assert_eq!(PageRequest::parse(Some("100"), None, IdKind::Customer).unwrap().limit, 100);
        for bad in ["0", "101", "-1", "ten", ""] {
            let err = PageRequest::parse(Some(bad), None, IdKind::Customer).unwrap_err();
            assert!(matches!(err, DomainError::Invalid { param: Some(ref p), .. } if p == "limit"), "{bad}");
        }
    }

    #[test]
    fn cursor_must_be_an_id_of_the_listed_kind() {
        let err = PageRequest::parse(None, Some("inv_x"), IdKind::Customer).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { param: Some(ref p), .. } if p == "starting_after"));
    }
}
