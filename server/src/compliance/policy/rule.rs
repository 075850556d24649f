//! The CEL rules: what a rule may read (the check's facts, the parameters,
//! the agent's status, the host's OS and tags) and the verdict it gives on
//! one check result.
//!
//! Invariants: never a false pass. Only `pass` and `fail` results are
//! decided; `null` is `unknown` (the facts cannot tell); a rule that cannot
//! be evaluated gives `unknown` naming the check, the policy version and
//! the CEL error.

use super::*;

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
    pub(super) fn stands(status: CheckStatus) -> Decision {
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
    pub(super) program: Arc<cel::Program>,
}

/// Why a rule gave no verdict.
pub(super) enum Unevaluated {
    /// The rule gave `null`: the facts cannot tell.
    CannotTell,
    /// It failed or gave something else than a boolean; the reason.
    Failed(String),
}

impl Policy {
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

    /// The policy's verdict on a stored result, whose facts are the JSON
    /// text stored with it (`None`: none were stored); `None` when no rule
    /// covers the check. Facts that cannot be read give `unknown` saying so
    /// rather than a verdict on an empty map: "no such key" would blame a
    /// fact that is there.
    pub fn decide_stored(
        &self,
        check: &str,
        agent_status: CheckStatus,
        facts: Option<&str>,
        host: &HostFacts,
    ) -> Option<Decision> {
        self.rule(check)?;
        let facts = match facts.map(serde_json::from_str::<Facts>) {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                return Some(Decision {
                    status: CheckStatus::Unknown,
                    reason: Some(format!("the stored facts of {check} cannot be read: {e}")),
                    by_rule: true,
                });
            }
            None => Facts::new(),
        };
        Some(self.decide(check, agent_status, &facts, host))
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
}

/// The CEL environment: the standard library plus the strings extension
/// (`lowerAscii`, `split`, `trim`, ...), shared by every policy.
pub(super) fn cel_env(path: &Path) -> Result<Arc<cel::Env>, PolicyError> {
    static ENV: OnceLock<Result<Arc<cel::Env>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        env.add_extension(cel::extensions::strings).map_err(|e| e.to_string())?;
        Ok(Arc::new(env))
    })
    .clone()
    .map_err(|e| err(path, None, format!("the CEL environment could not be built: {e}")))
}
