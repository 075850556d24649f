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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use custos_proto::evidence::CheckStatus;
use custos_proto::evidence::statement::Facts;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use toml::Spanned;

mod cel_value;
mod parse;

use cel_value::*;
use parse::*;

/// The checks the agent runs; a rule for any other id is a load error.
pub const AGENT_CHECKS: [&str; 14] = [
    "firewall",
    "disk_encryption",
    "os_patches",
    "auto_updates",
    "antivirus",
    "screen_lock",
    "password_policy",
    "secure_boot",
    "ssh_server",
    "time_sync",
    "audit_logging",
    "local_admins",
    "os_support",
    "software_inventory",
];

/// Largest policy file accepted; a real one is a few KiB.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

const BUILTIN_TEXT: &str = include_str!("../data/policy.toml");
const BUILTIN_PATH: &str = "server/data/policy.toml";

/// A policy file that cannot be loaded: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for PolicyError {}

/// What a rule may know about the host besides the check's facts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostFacts {
    /// `linux`, `windows` or `macos`, as the agent reports it.
    pub os: String,
    pub tags: Vec<String>,
}

/// The policy's verdict on one check result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: CheckStatus,
    /// Why, when the policy has something to say; `None`: the agent's own
    /// reason stands.
    pub reason: Option<String>,
    /// Whether a rule was evaluated (and so decided, or made it `unknown`).
    pub by_rule: bool,
}

impl Decision {
    fn stands(status: CheckStatus) -> Decision {
        Decision { status, reason: None, by_rule: false }
    }
}

/// One rule as loaded.
#[derive(Debug, Clone)]
pub struct Rule {
    pub check: String,
    pub expr: String,
    /// Why a result fails this rule.
    pub message: String,
    /// The file and line of its `expr`.
    pub source: PathBuf,
    pub line: usize,
    program: Arc<cel::Program>,
}

/// Which controls apply to which hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// Control ids or id prefixes (`bsi-grundschutz:2023/SYS.2.1` covers
    /// `bsi-grundschutz:2023/SYS.2.1.A31`, not `.../SYS.2.10`).
    pub controls: Vec<String>,
    /// The host must carry one of these tags (empty: any host).
    pub tags_any: Vec<String>,
    /// The host must carry none of these tags.
    pub tags_none: Vec<String>,
}

impl Scope {
    fn covers(&self, control_id: &str) -> bool {
        self.controls.iter().any(|c| control_matches(c, control_id))
    }

    fn admits(&self, tags: &[String]) -> bool {
        (self.tags_any.is_empty() || self.tags_any.iter().any(|t| tags.contains(t)))
            && !self.tags_none.iter().any(|t| tags.contains(t))
    }
}

/// Whether `entry` names `control_id` itself or a prefix of it that ends at
/// an id boundary (`.`, `/` or `:`).
fn control_matches(entry: &str, control_id: &str) -> bool {
    let boundary = |c: char| matches!(c, '.' | '/' | ':');
    match control_id.strip_prefix(entry) {
        Some("") => true,
        Some(rest) => entry.ends_with(boundary) || rest.starts_with(boundary),
        None => false,
    }
}

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

impl Policy {
    /// The built-in policy (parsed once; a broken built-in file is a bug the
    /// tests catch, reported here like any other load error).
    pub fn builtin() -> Result<Policy, PolicyError> {
        static BUILTIN: OnceLock<Result<Policy, PolicyError>> = OnceLock::new();
        BUILTIN.get_or_init(|| Policy::from_text(Path::new(BUILTIN_PATH), BUILTIN_TEXT)).clone()
    }

    /// A policy from one file's text alone (the built-in policy is loaded this way).
    pub fn from_text(path: &Path, text: &str) -> Result<Policy, PolicyError> {
        let env = cel_env(path)?;
        let doc = parse(path, text, &env)?;
        let version = doc.version.ok_or_else(|| err(path, None, "`version` is missing"))?;
        let mut params = Map::new();
        for (name, (value, _)) in doc.params {
            params.insert(name, value);
        }
        let rules: BTreeMap<String, Rule> = doc.rules.into_iter().map(|r| (r.check.clone(), r)).collect();
        let policy = assemble(version.0, params, rules, doc.scopes, env)?;
        policy.check_examples(path, &doc.examples)?;
        Ok(policy)
    }

    /// `builtin` merged with an override file's text: version replaced
    /// (required in the override), params overridden by name (of the same
    /// kind: number, boolean, string, list; a param the builtin lacks is
    /// allowed), a rule for a check replaces the builtin's rule for that
    /// check, `[[scope]]` lists appended. The override's examples are
    /// checked against the merged policy.
    pub fn with_override(builtin: &Policy, path: &Path, text: &str) -> Result<Policy, PolicyError> {
        let env = Arc::clone(&builtin.inner.env);
        let doc = parse(path, text, &env)?;
        let (version, _) = doc
            .version
            .ok_or_else(|| err(path, None, "`version` is missing: an override must name its version"))?;
        let mut params = builtin.inner.params.clone();
        for (name, (value, line)) in doc.params {
            if let Some(old) = params.get(&name)
                && kind(old) != kind(&value)
            {
                return Err(err(
                    path,
                    Some(line),
                    format!(
                        "param {name} must be a {} like the built-in one, not a {}",
                        kind(old),
                        kind(&value)
                    ),
                ));
            }
            params.insert(name, value);
        }
        let mut rules = builtin.inner.rules.clone();
        for r in doc.rules {
            rules.insert(r.check.clone(), r);
        }
        let mut scopes = builtin.inner.scopes.clone();
        scopes.extend(doc.scopes);
        let policy = assemble(version, params, rules, scopes, env)?;
        policy.check_examples(path, &doc.examples)?;
        Ok(policy)
    }

    /// Like [`Policy::with_override`], where `None` means the override file
    /// does not exist (or no longer does): the built-in policy alone.
    pub fn with_optional_override(
        builtin: &Policy,
        path: &Path,
        text: Option<&str>,
    ) -> Result<Policy, PolicyError> {
        match text {
            Some(text) => Policy::with_override(builtin, path, text),
            None => Ok(builtin.clone()),
        }
    }

    /// The version results decided by this policy name.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// Every parameter with its value, for the API to show.
    pub fn params(&self) -> &Map<String, Json> {
        &self.inner.params
    }

    /// The rules, by check id.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.inner.rules.values()
    }

    /// The rule for a check, if the policy has one.
    pub fn rule(&self, check: &str) -> Option<&Rule> {
        self.inner.rules.get(check)
    }

    pub fn scopes(&self) -> &[Scope] {
        &self.inner.scopes
    }

    /// The policy's verdict on one check result.
    pub fn decide(
        &self,
        check: &str,
        agent_status: CheckStatus,
        facts: &Facts,
        host: &HostFacts,
    ) -> Decision {
        let Some(rule) = self.inner.rules.get(check) else {
            return Decision::stands(agent_status);
        };
        // A rule never turns "could not tell" or "does not apply" into a verdict.
        if !matches!(agent_status, CheckStatus::Pass | CheckStatus::Fail) {
            return Decision::stands(agent_status);
        }
        let version = &self.inner.version;
        match self.evaluate(rule, agent_status, facts, host) {
            Ok(true) => Decision {
                status: CheckStatus::Pass,
                reason: (agent_status == CheckStatus::Fail).then(|| {
                    format!(
                        "policy {version} accepts this {check} result, which the agent's own limits failed"
                    )
                }),
                by_rule: true,
            },
            Ok(false) => Decision {
                status: CheckStatus::Fail,
                reason: Some(format!("{} (policy {version})", rule.message)),
                by_rule: true,
            },
            Err(Unevaluated::CannotTell) => Decision {
                status: CheckStatus::Unknown,
                reason: Some(format!(
                    "policy {version}: the facts cannot tell whether the {check} result meets the rule ({})",
                    rule.message
                )),
                by_rule: true,
            },
            Err(Unevaluated::Failed(e)) => Decision {
                status: CheckStatus::Unknown,
                reason: Some(format!("policy {version}: the rule for {check} could not be evaluated: {e}")),
                by_rule: true,
            },
        }
    }

    /// Whether a control applies to a host with these tags: a control that
    /// no scope names applies everywhere; otherwise one of the scopes naming
    /// it must admit the host.
    pub fn applies(&self, control_id: &str, tags: &[String]) -> bool {
        let mut named = false;
        for scope in self.inner.scopes.iter().filter(|s| s.covers(control_id)) {
            named = true;
            if scope.admits(tags) {
                return true;
            }
        }
        !named
    }

    fn evaluate(
        &self,
        rule: &Rule,
        agent_status: CheckStatus,
        facts: &Facts,
        host: &HostFacts,
    ) -> Result<bool, Unevaluated> {
        let mut ctx = cel::Context::with_env(Arc::clone(&self.inner.env));
        ctx.add_variable_from_value("facts", map_to_cel(facts));
        ctx.add_variable_from_value("params", self.inner.params_cel.clone());
        ctx.add_variable_from_value("status", agent_status.as_str());
        let host_map: HashMap<String, cel::Value> = HashMap::from([
            ("os".to_string(), cel::Value::from(host.os.as_str())),
            (
                "tags".to_string(),
                cel::Value::List(Arc::new(host.tags.iter().map(|t| t.as_str().into()).collect())),
            ),
        ]);
        ctx.add_variable_from_value("host", host_map);
        match rule.program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(cel::Value::Null) => Err(Unevaluated::CannotTell),
            Ok(other) => Err(Unevaluated::Failed(format!(
                "the rule gave {} instead of true or false",
                describe(&other)
            ))),
            Err(e) => Err(Unevaluated::Failed(e.to_string())),
        }
    }

    /// Runs the examples of the rules a file defined against this policy,
    /// each with its own `params` (if any) merged over the policy's.
    fn check_examples(&self, path: &Path, examples: &[Example]) -> Result<(), PolicyError> {
        for ex in examples {
            let d = if ex.params.is_empty() {
                self.decide(&ex.check, ex.status, &ex.facts, &ex.host)
            } else {
                let mut params = self.inner.params.clone();
                for (name, value) in &ex.params {
                    match params.get(name) {
                        None => {
                            return Err(err(
                                path,
                                Some(ex.line),
                                format!(
                                    "example for {} sets params.{name}, which the policy does not define",
                                    ex.check
                                ),
                            ));
                        }
                        Some(old) if kind(old) != kind(value) => {
                            return Err(err(
                                path,
                                Some(ex.line),
                                format!(
                                    "example for {} sets params.{name} to a {}, not a {} like the policy",
                                    ex.check,
                                    kind(value),
                                    kind(old)
                                ),
                            ));
                        }
                        Some(_) => {}
                    }
                    params.insert(name.clone(), value.clone());
                }
                let with = Policy {
                    inner: Arc::new(Inner {
                        version: self.inner.version.clone(),
                        params_cel: map_to_cel(&params),
                        params,
                        rules: self.inner.rules.clone(),
                        scopes: Vec::new(),
                        env: Arc::clone(&self.inner.env),
                    }),
                };
                with.decide(&ex.check, ex.status, &ex.facts, &ex.host)
            };
            if d.status != ex.expect {
                let why = d.reason.map(|r| format!(" ({r})")).unwrap_or_default();
                return Err(err(
                    path,
                    Some(ex.line),
                    format!(
                        "example for {} expects {} but the policy decides {}{why}",
                        ex.check, ex.expect, d.status
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Why a rule gave no verdict.
enum Unevaluated {
    /// The rule gave `null`: the facts cannot tell.
    CannotTell,
    /// It failed or gave something else than a boolean; the reason.
    Failed(String),
}

fn err(path: &Path, line: Option<usize>, message: impl Into<String>) -> PolicyError {
    PolicyError { path: path.to_path_buf(), line, message: message.into() }
}

/// The CEL environment: the standard library plus the strings extension
/// (`lowerAscii`, `split`, `trim`, ...), shared by every policy.
fn cel_env(path: &Path) -> Result<Arc<cel::Env>, PolicyError> {
    static ENV: OnceLock<Result<Arc<cel::Env>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        env.add_extension(cel::extensions::strings).map_err(|e| e.to_string())?;
        Ok(Arc::new(env))
    })
    .clone()
    .map_err(|e| err(path, None, format!("the CEL environment could not be built: {e}")))
}

#[cfg(test)]
mod tests;
