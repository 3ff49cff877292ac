//! Function configuration: the environment variables `template.yaml` gives each function.
//! The local runner builds the same map from the template instead of the process environment.

use billy_aws::Tables;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("missing configuration variable {0}")]
pub struct MissingVariable(pub String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    vars: BTreeMap<String, String>,
}

impl Config {
    pub fn from_env() -> Self {
        Self { vars: std::env::vars().collect() }
    }

    pub fn from_map(vars: BTreeMap<String, String>) -> Self {
        Self { vars }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, MissingVariable> {
        self.get(name).ok_or_else(|| MissingVariable(name.to_owned()))
    }

    pub fn tables(&self) -> Result<Tables, MissingVariable> {
        Ok(Tables {
            main: self.require("BILLY_TABLE")?.to_owned(),
            audit: self.require("BILLY_AUDIT_TABLE")?.to_owned(),
        })
    }

    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }
}
