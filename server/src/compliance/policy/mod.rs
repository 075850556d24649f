//! Policy as code: what "compliant" means for each check, written as CEL
//! rules over the facts the agent reports, with named parameters; and which
//! controls apply to which hosts (scopes by host tag).
//!
//! The built-in policy (`server/data/policy.toml`) reproduces the agent's own
//! decisions with the agent's thresholds as parameters, so by itself it
//! changes nothing. An organisation's override file is merged over it: its
//! version replaces the built-in one, its parameters override by name, its
//! rule for a check replaces the built-in rule, its scopes are added.
//!
//! Invariants: never a false pass. A rule only decides results the agent
//! reported `pass` or `fail`; `unknown`, `error` and `not_applicable` stand.
//! A rule that gives `null` says the facts cannot tell: `unknown`. A rule
//! that cannot be evaluated (a missing fact, a wrong type, a result that is
//! not a boolean) gives `unknown` naming the check, the policy version and
//! the CEL error. A file that does not load is refused whole,
//! with its path and line. Pure: the functions take text; nothing here reads
//! files or the clock.

//!
//! One file per concept: `load.rs` (the built-in policy and an override
//! merged over it), `rule.rs` (the CEL rules and the verdicts they give),
//! `scope.rs` (which controls apply to which hosts), `examples.rs` (each
//! rule's examples checked at load), `parse.rs` (reading one file),
//! `cel_value.rs` (JSON as CEL values), `error.rs` (where and why a file
//! is refused).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use custos_proto::evidence::CheckStatus;
use custos_proto::evidence::statement::Facts;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use toml::Spanned;

mod cel_value;
mod error;
mod examples;
mod load;
mod parse;
mod rule;
mod scope;

use cel_value::*;
use error::err;
use parse::*;
use rule::cel_env;

pub use error::PolicyError;
pub use rule::{Decision, HostFacts, Rule};
pub use scope::Scope;

/// Largest policy file accepted; a real one is a few KiB.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

const BUILTIN_TEXT: &str = include_str!("../../../data/policy.toml");
const BUILTIN_PATH: &str = "server/data/policy.toml";

/// A loaded policy: the built-in one, possibly with an override merged in.
/// Cheap to clone.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

struct Inner {
    version: String,
    params: Map<String, Json>,
    params_cel: cel::Value,
    rules: BTreeMap<String, Rule>,
    scopes: Vec<Scope>,
    env: Arc<cel::Env>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("version", &self.inner.version)
            .field("params", &self.inner.params)
            .field("rules", &self.inner.rules.keys().collect::<Vec<_>>())
            .field("scopes", &self.inner.scopes)
            .finish()
    }
}

#[cfg(test)]
mod tests;
