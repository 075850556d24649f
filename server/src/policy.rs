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

// ------------------------------------------------------------------ parsing

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    version: Option<Spanned<String>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleDoc>,
    #[serde(default, rename = "scope")]
    scopes: Vec<Spanned<ScopeDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    check: Spanned<String>,
    expr: Spanned<String>,
    message: Spanned<String>,
    #[serde(default, rename = "example")]
    examples: Vec<Spanned<ExampleDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleDoc {
    /// The check's facts as a JSON object (TOML has no null).
    facts: String,
    /// The agent's status (default `pass`).
    #[serde(default)]
    status: Option<String>,
    /// What the policy must decide.
    expect: String,
    /// Parameters of this example only, merged over the policy's.
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    os: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeDoc {
    controls: Vec<String>,
    #[serde(default)]
    tags_any: Vec<String>,
    #[serde(default)]
    tags_none: Vec<String>,
}

struct Example {
    check: String,
    line: usize,
    status: CheckStatus,
    expect: CheckStatus,
    facts: Facts,
    host: HostFacts,
    /// The example's own parameters.
    params: Map<String, Json>,
}

struct Parsed {
    version: Option<(String, usize)>,
    /// name → (value, line)
    params: BTreeMap<String, (Json, usize)>,
    rules: Vec<Rule>,
    scopes: Vec<Scope>,
    examples: Vec<Example>,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// Parses and checks one file on its own: syntax, unknown keys, parameter
/// values, rule check ids, duplicate rules, CEL that does not compile,
/// scopes without controls.
fn parse(path: &Path, text: &str, env: &cel::Env) -> Result<Parsed, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(err(
            path,
            None,
            format!("{} bytes, more than the limit of {MAX_POLICY_BYTES}", text.len()),
        ));
    }
    let doc: FileDoc = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        err(path, line, e.message().trim().to_string())
    })?;
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);

    let version = match doc.version {
        Some(v) if v.get_ref().trim().is_empty() => {
            return Err(err(path, Some(at(v.span())), "`version` is empty"));
        }
        Some(v) => Some((v.get_ref().clone(), at(v.span()))),
        None => None,
    };

    let mut params = BTreeMap::new();
    for (name, value) in doc.params {
        let line = at(value.span());
        if !is_identifier(&name) {
            return Err(err(
                path,
                Some(line),
                format!(
                    "param name {name:?} is not an identifier (letters, digits, _), so rules cannot read it"
                ),
            ));
        }
        let json =
            toml_to_json(value.get_ref()).map_err(|m| err(path, Some(line), format!("param {name}: {m}")))?;
        params.insert(name, (json, line));
    }

    let mut rules: Vec<Rule> = Vec::new();
    let mut examples = Vec::new();
    for r in doc.rules {
        let check = r.check.get_ref().clone();
        let check_line = at(r.check.span());
        if !AGENT_CHECKS.contains(&check.as_str()) {
            return Err(err(
                path,
                Some(check_line),
                format!("rule for unknown check {check:?} (the agent's checks: {})", AGENT_CHECKS.join(", ")),
            ));
        }
        if rules.iter().any(|r| r.check == check) {
            return Err(err(path, Some(check_line), format!("a second rule for check {check} in this file")));
        }
        if r.message.get_ref().trim().is_empty() {
            return Err(err(
                path,
                Some(at(r.message.span())),
                format!("rule for {check} has an empty message"),
            ));
        }
        let expr_line = at(r.expr.span());
        // A multi-line literal drops the newline right after its opening quotes.
        let raw = &text[r.expr.span().start.min(text.len())..];
        let first_line =
            if raw.starts_with("'''\n") || raw.starts_with("\"\"\"\n") { expr_line + 1 } else { expr_line };
        let program = env.compile(r.expr.get_ref()).map_err(|e| {
            let (line, msg) = match e.errors.first() {
                Some(pe) => (first_line + usize::try_from(pe.pos.0.max(1) - 1).unwrap_or(0), pe.msg.clone()),
                None => (expr_line, e.to_string()),
            };
            err(path, Some(line), format!("rule for {check}: CEL does not compile: {msg}"))
        })?;
        for ex in r.examples {
            let line = at(ex.span());
            let ex = ex.into_inner();
            let bad = |m: String| err(path, Some(line), format!("example for {check}: {m}"));
            let facts: Facts = serde_json::from_str(&ex.facts)
                .map_err(|e| bad(format!("facts are not a JSON object: {e}")))?;
            let status_text = ex.status.as_deref().unwrap_or("pass");
            let status = CheckStatus::parse(status_text)
                .ok_or_else(|| bad(format!("status {status_text:?} is not a check status")))?;
            let expect = CheckStatus::parse(&ex.expect)
                .ok_or_else(|| bad(format!("expect {:?} is not a check status", ex.expect)))?;
            let mut params = Map::new();
            for (name, value) in &ex.params {
                let json = toml_to_json(value).map_err(|m| bad(format!("params.{name}: {m}")))?;
                params.insert(name.clone(), json);
            }
            examples.push(Example {
                check: check.clone(),
                line,
                status,
                expect,
                facts,
                host: HostFacts { os: ex.os, tags: ex.tags },
                params,
            });
        }
        rules.push(Rule {
            check,
            expr: r.expr.get_ref().clone(),
            message: r.message.into_inner(),
            source: path.to_path_buf(),
            line: expr_line,
            program: Arc::new(program),
        });
    }

    let mut scopes = Vec::new();
    for s in doc.scopes {
        let line = at(s.span());
        let s = s.into_inner();
        if s.controls.is_empty() {
            return Err(err(path, Some(line), "scope with an empty control list"));
        }
        if let Some(empty) =
            s.controls.iter().chain(&s.tags_any).chain(&s.tags_none).find(|c| c.trim().is_empty())
        {
            return Err(err(path, Some(line), format!("scope with an empty control id or tag {empty:?}")));
        }
        scopes.push(Scope { controls: s.controls, tags_any: s.tags_any, tags_none: s.tags_none });
    }
    Ok(Parsed { version, params, rules, scopes, examples })
}

/// Builds the policy and checks that every rule reads only parameters it has.
fn assemble(
    version: String,
    params: Map<String, Json>,
    rules: BTreeMap<String, Rule>,
    scopes: Vec<Scope>,
    env: Arc<cel::Env>,
) -> Result<Policy, PolicyError> {
    for rule in rules.values() {
        if let Some(missing) = param_references(&rule.expr).into_iter().find(|p| !params.contains_key(p)) {
            return Err(err(
                &rule.source,
                Some(rule.line),
                format!("rule for {} reads params.{missing}, which the policy does not define", rule.check),
            ));
        }
    }
    let params_cel = map_to_cel(&params);
    Ok(Policy { inner: Arc::new(Inner { version, params, params_cel, rules, scopes, env }) })
}

/// The names read as `params.<name>` in an expression.
fn param_references(expr: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("params.") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "params.".len()..];
        if !before.is_some_and(|c| ident(c) || c == '.') {
            let name: String = after.chars().take_while(|c| ident(*c)).collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
        rest = after;
    }
    out
}

fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What kind of value a parameter is, for override checks.
fn kind(v: &Json) -> &'static str {
    match v {
        Json::Number(_) => "number",
        Json::Bool(_) => "boolean",
        Json::String(_) => "string",
        Json::Array(_) => "list",
        Json::Object(_) => "table",
        Json::Null => "null",
    }
}

fn toml_to_json(v: &toml::Value) -> Result<Json, String> {
    Ok(match v {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("{f} is not a finite number"))?,
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => return Err(format!("dates ({d}) are not supported as parameters")),
        toml::Value::Array(a) => Json::Array(a.iter().map(toml_to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(t) => Json::Object(
            t.iter().map(|(k, v)| Ok((k.clone(), toml_to_json(v)?))).collect::<Result<_, String>>()?,
        ),
    })
}

// --------------------------------------------------------------- CEL values

/// A JSON value as CEL sees it. Written out rather than through
/// `cel::to_value`, which turns every non-negative JSON integer into an
/// unsigned one; CEL's arithmetic does not mix `uint` with the `int`
/// literals and parameters of the rules.
fn to_cel(v: &Json) -> cel::Value {
    match v {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            (None, None) => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Json::Object(m) => map_to_cel(m),
    }
}

fn map_to_cel(m: &Map<String, Json>) -> cel::Value {
    let map: HashMap<String, cel::Value> = m.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
    cel::Value::from(map)
}

/// A short description of a non-boolean result, for the reason.
fn describe(v: &cel::Value) -> String {
    match v {
        cel::Value::Null => "null".into(),
        cel::Value::Int(i) => format!("the int {i}"),
        cel::Value::UInt(u) => format!("the uint {u}"),
        cel::Value::Float(f) => format!("the double {f}"),
        cel::Value::String(s) => format!("the string {s:?}"),
        cel::Value::List(l) => format!("a list of {}", l.len()),
        cel::Value::Map(_) => "a map".into(),
        _ => "a value".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(v: Json) -> Facts {
        match v {
            Json::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn host() -> HostFacts {
        HostFacts { os: "linux".into(), tags: vec![] }
    }

    fn load_err(text: &str) -> PolicyError {
        let builtin = Policy::builtin().unwrap();
        Policy::with_override(&builtin, Path::new("org/policy.toml"), text).unwrap_err()
    }

    #[test]
    fn the_builtin_policy_loads_with_a_rule_for_every_check_but_the_inventory() {
        // Shared by the server's tasks behind an `Arc`.
        fn shared<T: Send + Sync + Clone>() {}
        shared::<Policy>();
        let p = Policy::builtin().unwrap();
        assert_eq!(p.version(), "custos-default-2026.11");
        let checks: Vec<&str> = p.rules().map(|r| r.check.as_str()).collect();
        let mut want: Vec<&str> =
            AGENT_CHECKS.iter().copied().filter(|c| *c != "software_inventory").collect();
        want.sort();
        assert_eq!(checks, want);
        assert_eq!(p.params()["max_signature_age_hours"], json!(72));
        assert!(p.scopes().is_empty());
    }

    #[test]
    fn only_pass_and_fail_are_decided_by_a_rule() {
        let p = Policy::builtin().unwrap();
        // Facts that would satisfy the rule: still never a pass.
        let good = facts(json!({"uefi": true, "secure_boot": true}));
        for s in [CheckStatus::Unknown, CheckStatus::Error, CheckStatus::NotApplicable] {
            assert_eq!(p.decide("secure_boot", s, &good, &host()), Decision::stands(s));
        }
        // No rule: the agent's status stands.
        let d = p.decide("software_inventory", CheckStatus::Fail, &Facts::new(), &host());
        assert_eq!(d, Decision::stands(CheckStatus::Fail));
        let d = p.decide("secure_boot", CheckStatus::Pass, &good, &host());
        assert_eq!(d, Decision { status: CheckStatus::Pass, reason: None, by_rule: true });
        let bad = facts(json!({"uefi": true, "secure_boot": false}));
        let d = p.decide("secure_boot", CheckStatus::Pass, &bad, &host());
        assert_eq!(d.status, CheckStatus::Fail);
        assert!(d.reason.unwrap().contains("Secure Boot is off or lowered (policy custos-default-2026.11)"));
    }

    #[test]
    fn a_rule_that_cannot_be_evaluated_gives_unknown_with_the_reason() {
        let p = Policy::builtin().unwrap();
        // Missing fact.
        let d = p.decide("secure_boot", CheckStatus::Pass, &Facts::new(), &host());
        assert_eq!(d.status, CheckStatus::Unknown);
        let r = d.reason.unwrap();
        assert!(
            r.contains("rule for secure_boot")
                && r.contains("custos-default-2026.11")
                && r.contains("No such key"),
            "{r}"
        );
        // Wrong type.
        let d = p.decide(
            "ssh_server",
            CheckStatus::Pass,
            &facts(json!({"permit_root_login": 3, "permit_empty_passwords": "no"})),
            &host(),
        );
        assert_eq!(d.status, CheckStatus::Unknown, "{:?}", d.reason);
        // A result that is not a boolean.
        let o = "version = \"org-1\"\n[[rule]]\ncheck = \"secure_boot\"\nexpr = 'facts.secure_boot'\nmessage = \"off\"\n";
        let p = Policy::with_override(&p, Path::new("org.toml"), o).unwrap();
        let d = p.decide("secure_boot", CheckStatus::Pass, &facts(json!({"secure_boot": "yes"})), &host());
        assert_eq!(d.status, CheckStatus::Unknown);
        assert!(d.reason.unwrap().contains("instead of true or false"));
    }

    #[test]
    fn an_override_merges_version_params_rules_and_scopes() {
        let builtin = Policy::builtin().unwrap();
        let text = r#"
version = "acme-2026.12"
[params]
max_signature_age_hours = 168
max_offset_ms = 250
acme_min_tags = 1
[[rule]]
check = "secure_boot"
expr = 'facts.secure_boot == true && size(host.tags) >= params.acme_min_tags'
message = "Secure Boot off or host untagged"
[[scope]]
controls = ["bsi-grundschutz:2023/SYS.2.1"]
tags_any = ["client"]
tags_none = ["kiosk"]
"#;
        let p = Policy::with_override(&builtin, Path::new("acme.toml"), text).unwrap();
        assert_eq!(p.version(), "acme-2026.12");
        assert_eq!(p.params()["max_signature_age_hours"], json!(168));
        assert_eq!(p.params()["max_offset_ms"], json!(250));
        assert_eq!(p.params()["min_password_length"], json!(12), "untouched params stay");
        assert_eq!(p.rule("secure_boot").unwrap().source, PathBuf::from("acme.toml"));
        assert_eq!(p.rule("firewall").unwrap().source, PathBuf::from(BUILTIN_PATH));
        let on = facts(json!({"secure_boot": true}));
        let tagged = HostFacts { os: "linux".into(), tags: vec!["client".into()] };
        assert_eq!(p.decide("secure_boot", CheckStatus::Pass, &on, &tagged).status, CheckStatus::Pass);
        assert_eq!(p.decide("secure_boot", CheckStatus::Pass, &on, &host()).status, CheckStatus::Fail);
        // Scopes: prefix at an id boundary, tags_any and tags_none.
        let client = vec!["client".to_string()];
        assert!(p.applies("bsi-grundschutz:2023/SYS.2.1.A31", &client));
        assert!(!p.applies("bsi-grundschutz:2023/SYS.2.1.A31", &["server".to_string()]));
        assert!(!p.applies("bsi-grundschutz:2023/SYS.2.1", &["client".to_string(), "kiosk".to_string()]));
        assert!(
            p.applies("bsi-grundschutz:2023/SYS.2.10", &[]),
            "not a prefix at a boundary: no scope names it"
        );
        assert!(p.applies("iso27001:2022/A.8.1", &[]), "a control no scope names applies everywhere");
        // The built-in policy itself is unchanged.
        assert_eq!(builtin.version(), "custos-default-2026.11");
        assert_eq!(builtin.params()["max_signature_age_hours"], json!(72));
    }

    #[test]
    fn several_scopes_naming_a_control_admit_a_host_through_any_of_them() {
        let builtin = Policy::builtin().unwrap();
        let text = "version = \"v\"\n[[scope]]\ncontrols = [\"iso27001:2022/A.8\"]\ntags_any = [\"laptop\"]\n\
                    [[scope]]\ncontrols = [\"iso27001:2022/A.8.1\"]\ntags_any = [\"server\"]\n";
        let p = Policy::with_override(&builtin, Path::new("o.toml"), text).unwrap();
        assert!(p.applies("iso27001:2022/A.8.1", &["server".into()]));
        assert!(p.applies("iso27001:2022/A.8.1", &["laptop".into()]));
        assert!(!p.applies("iso27001:2022/A.8.1", &["desktop".into()]));
        assert!(!p.applies("iso27001:2022/A.8.20", &["server".into()]));
    }

    #[test]
    fn load_errors_name_the_file_the_line_and_the_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("version = \"v\"\n[params\n", 2, ""),
            ("version = \"v\"\nflavour = 1\n", 2, "unknown field `flavour`"),
            (
                "version = \"v\"\n\n[[rule]]\ncheck = \"firewall\"\nexpr = 'facts.a &&'\nmessage = \"m\"\n",
                5,
                "CEL does not compile",
            ),
            (
                "version = \"v\"\n[[rule]]\ncheck = \"fire_wall\"\nexpr = 'true'\nmessage = \"m\"\n",
                3,
                "unknown check \"fire_wall\"",
            ),
            (
                "version = \"v\"\n[[rule]]\ncheck = \"firewall\"\nexpr = 'true'\nmessage = \"m\"\n[[rule]]\ncheck = \"firewall\"\nexpr = 'false'\nmessage = \"m\"\n",
                7,
                "a second rule for check firewall",
            ),
            ("version = \"v\"\n[[scope]]\ncontrols = []\n", 2, "empty control list"),
            (
                "version = \"v\"\n[[rule]]\ncheck = \"firewall\"\nexpo = 'true'\nmessage = \"m\"\n",
                4,
                "unknown field `expo`",
            ),
            ("version = \"v\"\n[params]\nmax_idle_seconds = \"15 minutes\"\n", 3, "must be a number"),
            ("version = \"v\"\n[params]\nwhen = 2026-01-01\n", 3, "dates"),
            (
                "version = \"v\"\n[[rule]]\ncheck = \"firewall\"\nexpr = 'params.nope > 1'\nmessage = \"m\"\n",
                4,
                "params.nope",
            ),
            (
                "version = \"v\"\n[[rule]]\ncheck = \"secure_boot\"\nexpr = 'facts.secure_boot == true'\nmessage = \"m\"\n[[rule.example]]\nfacts = '{\"secure_boot\": false}'\nexpect = \"pass\"\n",
                6,
                "expects pass but the policy decides fail",
            ),
            (
                "version = \"v\"\n[[rule]]\ncheck = \"secure_boot\"\nexpr = 'true'\nmessage = \"m\"\n[[rule.example]]\nfacts = '[1]'\nexpect = \"pass\"\n",
                6,
                "not a JSON object",
            ),
        ];
        for (text, line, want) in cases {
            let e = load_err(text);
            assert_eq!(e.path, PathBuf::from("org/policy.toml"), "{text}");
            assert_eq!(e.line, Some(*line), "{text}: {e}");
            assert!(e.message.contains(want), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("org/policy.toml:{line}: ")), "{e}");
        }
        let e = load_err("[params]\nmax_idle_seconds = 600\n");
        assert_eq!(e.line, None);
        assert!(e.to_string().contains("`version` is missing"), "{e}");
        let e = Policy::from_text(Path::new("x.toml"), "").unwrap_err();
        assert!(e.to_string().contains("`version` is missing"), "{e}");
    }

    #[test]
    fn a_multi_line_expression_error_points_at_its_own_line() {
        let text = "version = \"v\"\n[[rule]]\ncheck = \"firewall\"\nmessage = \"m\"\nexpr = '''\nfacts.a\n  && facts.b +* 2\n  && true\n'''\n";
        let e = load_err(text);
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn hostile_input_is_refused_with_a_reason_not_a_panic() {
        let huge = format!("version = \"v\"\n# {}\n", "x".repeat(MAX_POLICY_BYTES));
        assert!(load_err(&huge).message.contains("limit"));
        let e = load_err("version = \"v\"\n[params]\n\"not an ident\" = 1\n");
        assert!(e.message.contains("not an identifier"), "{e}");
        assert!(load_err("version = \"\"\n").message.contains("empty"));
        assert!(
            load_err("version = \"v\"\n[[scope]]\ncontrols = [\"\"]\n").message.contains("empty control id")
        );
        // Deeply nested facts evaluate (or fail) without harm.
        let p = Policy::builtin().unwrap();
        let mut deep = json!(true);
        for _ in 0..100 {
            deep = json!({ "x": deep });
        }
        let d = p.decide("secure_boot", CheckStatus::Pass, &facts(json!({"secure_boot": deep})), &host());
        assert_eq!(d.status, CheckStatus::Fail);
    }

    #[test]
    fn a_missing_override_is_the_builtin_policy() {
        let b = Policy::builtin().unwrap();
        let p = Policy::with_optional_override(&b, Path::new("gone.toml"), None).unwrap();
        assert_eq!(p.version(), b.version());
        let p = Policy::with_optional_override(&b, Path::new("o.toml"), Some("version = \"x\"\n")).unwrap();
        assert_eq!(p.version(), "x");
    }

    #[test]
    fn control_prefixes_end_at_id_boundaries() {
        assert!(control_matches("a:1/SYS.2.1", "a:1/SYS.2.1"));
        assert!(control_matches("a:1/SYS.2.1", "a:1/SYS.2.1.A3"));
        assert!(!control_matches("a:1/SYS.2.1", "a:1/SYS.2.10"));
        assert!(control_matches("a:1/", "a:1/SYS.2.10"));
        assert!(control_matches("a", "a:1/SYS"));
        assert!(!control_matches("a:1/SYS.2.1.A3", "a:1/SYS.2.1"));
    }

    fn decide_with(p: &Policy, check: &str, f: Json) -> CheckStatus {
        p.decide(check, CheckStatus::Pass, &facts(f), &host()).status
    }

    #[test]
    fn allowed_inbound_services_are_decided_per_host_tag() {
        let builtin = Policy::builtin().unwrap();
        let text = "version = \"fw\"\n[params]\nfirewall_allowed_inbound = { default = [\"*\"], laptop = [], server = [\"tcp/22\", \"udp/53\"] }\n";
        let p = Policy::with_override(&builtin, Path::new("fw.toml"), text).unwrap();
        let exposed = |service: &str, certain: bool| {
            json!({"family": "ipv4", "proto": "tcp", "port_count": 1, "services": [service],
                   "program": "any", "certain": certain})
        };
        let with = |list: Vec<Json>| {
            json!({"ipv4_filtered": true, "ipv6_filtered": false, "ipv6_enabled": false,
                   "ipv4_filtered_by": ["nftables"], "exposed_total": list.len(), "exposed": list})
        };
        let on = |tags: &[&str], f: Json| {
            let h = HostFacts { os: "linux".into(), tags: tags.iter().map(|t| t.to_string()).collect() };
            p.decide("firewall", CheckStatus::Pass, &facts(f), &h).status
        };
        let ssh = || with(vec![exposed("tcp/22", true)]);
        assert_eq!(on(&["server"], ssh()), CheckStatus::Pass);
        assert_eq!(on(&["laptop"], ssh()), CheckStatus::Fail);
        assert_eq!(on(&["server", "laptop"], ssh()), CheckStatus::Pass, "the lists of all tags together");
        assert_eq!(on(&[], ssh()), CheckStatus::Pass, "untagged hosts take `default`");
        assert_eq!(on(&["laptop"], with(vec![])), CheckStatus::Pass);
        let web = with(vec![exposed("tcp/22", true), exposed("tcp/443", true)]);
        assert_eq!(on(&["server"], web), CheckStatus::Fail);
        let maybe = with(vec![exposed("tcp/22", true), exposed("tcp/443", false)]);
        assert_eq!(on(&["server"], maybe.clone()), CheckStatus::Unknown, "possibly open, not allowed");
        assert_eq!(on(&[], maybe), CheckStatus::Pass);
        // A capped list: what was left out cannot be judged unless anything goes.
        let mut capped = ssh();
        capped["exposed_total"] = json!(300);
        assert_eq!(on(&["server"], capped.clone()), CheckStatus::Unknown);
        assert_eq!(on(&[], capped), CheckStatus::Pass);
        // The port space fails even where any service is allowed.
        let all = with(vec![
            json!({"services": ["tcp/any"], "port_count": 65536, "program": "any", "certain": true}),
        ]);
        assert_eq!(on(&[], all), CheckStatus::Fail);
    }

    #[test]
    fn accepted_firewall_backends_decide_which_filter_may_do_the_filtering() {
        let builtin = Policy::builtin().unwrap();
        let nft = json!({"ipv4_filtered": true, "ipv6_filtered": true, "ipv6_enabled": true,
            "ipv4_filtered_by": ["nftables"], "ipv6_filtered_by": ["nftables"]});
        let legacy = json!({"ipv4_filtered": true, "ipv6_filtered": false, "ipv6_enabled": false,
            "ipv4_filtered_by": ["iptables-legacy"], "ipv6_filtered_by": []});
        let profiles: Vec<Json> = ["Domain", "Private", "Public"]
            .map(|n| json!({"name": n, "enabled": true, "default_inbound": "Block"}))
            .into();
        let windows = json!({ "profiles": profiles });
        let pf = json!({"application_firewall_state": 0, "pf": "enabled", "pf_default_deny": true});
        let alf = json!({"application_firewall_state": 2, "pf": "disabled"});
        for f in [&nft, &legacy, &windows, &pf, &alf] {
            assert_eq!(decide_with(&builtin, "firewall", f.clone()), CheckStatus::Pass, "{f}");
        }
        let only = |list: &str| {
            let text = format!("version = \"fw\"\n[params]\naccepted_firewall_backends = {list}\n");
            Policy::with_override(&builtin, Path::new("fw.toml"), &text).unwrap()
        };
        let nft_only = only(r#"["nftables"]"#);
        assert_eq!(decide_with(&nft_only, "firewall", nft.clone()), CheckStatus::Pass);
        let d = nft_only.decide("firewall", CheckStatus::Pass, &facts(legacy.clone()), &host());
        assert_eq!(d.status, CheckStatus::Fail, "IPv4 filtered by legacy iptables only");
        let reason = d.reason.unwrap();
        assert!(
            reason.contains("not by an accepted packet filter") && reason.contains("(policy fw)"),
            "{reason}"
        );
        for f in [&windows, &pf, &alf] {
            assert_eq!(decide_with(&nft_only, "firewall", f.clone()), CheckStatus::Fail, "{f}");
        }
        // IPv6 enabled: it too must be filtered by an accepted backend.
        let mixed = json!({"ipv4_filtered": true, "ipv6_filtered": true, "ipv6_enabled": true,
            "ipv4_filtered_by": ["nftables"], "ipv6_filtered_by": ["iptables-legacy"]});
        assert_eq!(decide_with(&builtin, "firewall", mixed.clone()), CheckStatus::Pass);
        assert_eq!(decide_with(&nft_only, "firewall", mixed.clone()), CheckStatus::Fail);
        assert_eq!(decide_with(&only(r#"["iptables-legacy"]"#), "firewall", mixed), CheckStatus::Fail);
        // Facts that do not say which backend filters: unknown, never a pass.
        let bare = json!({"ipv4_filtered": true, "ipv6_enabled": false});
        assert_eq!(decide_with(&builtin, "firewall", bare.clone()), CheckStatus::Pass);
        let d = nft_only.decide("firewall", CheckStatus::Pass, &facts(bare), &host());
        assert_eq!(d.status, CheckStatus::Unknown);
        assert!(d.reason.unwrap().contains("the facts cannot tell"));
        let apple = only(r#"["pf"]"#);
        assert_eq!(decide_with(&apple, "firewall", pf.clone()), CheckStatus::Pass);
        assert_eq!(decide_with(&apple, "firewall", alf), CheckStatus::Fail);
        assert_eq!(decide_with(&only(r#"["windows-firewall"]"#), "firewall", windows), CheckStatus::Pass);
        // Unknown stays unknown whatever is accepted.
        let d = nft_only.decide("firewall", CheckStatus::Unknown, &facts(nft), &host());
        assert_eq!(d.status, CheckStatus::Unknown);
        // Not a list: refused at load.
        let e = load_err("version = \"v\"\n[params]\naccepted_firewall_backends = \"nftables\"\n");
        assert!(e.message.contains("must be a list"), "{e}");
    }

    #[test]
    fn max_patch_age_days_limits_the_age_of_the_newest_installed_update() {
        let builtin = Policy::builtin().unwrap();
        assert_eq!(builtin.params()["max_patch_age_days"], json!(35));
        let windows = |age: Json| {
            json!({"pending_updates": 1, "pending_security_updates": 0, "updates": [],
                   "last_installed_age_days": age})
        };
        assert_eq!(decide_with(&builtin, "os_patches", windows(json!(35))), CheckStatus::Pass);
        let d = builtin.decide("os_patches", CheckStatus::Pass, &facts(windows(json!(36))), &host());
        assert_eq!(d.status, CheckStatus::Fail);
        assert!(d.reason.unwrap().contains("updates were last installed too long ago"));
        // The age could not be read: cannot tell.
        assert_eq!(decide_with(&builtin, "os_patches", windows(Json::Null)), CheckStatus::Unknown);
        // A security update pending fails whatever the age.
        let mut pending = windows(json!(1));
        pending["pending_security_updates"] = json!(1);
        let d = builtin.decide("os_patches", CheckStatus::Fail, &facts(pending.clone()), &host());
        assert_eq!(d.status, CheckStatus::Fail);
        pending["last_installed_age_days"] = Json::Null;
        let d = builtin.decide("os_patches", CheckStatus::Fail, &facts(pending), &host());
        assert_eq!(d.status, CheckStatus::Fail, "failing is known without the age");

        let text = "version = \"patch\"\n[params]\nmax_patch_age_days = 14\n";
        let strict = Policy::with_override(&builtin, Path::new("p.toml"), text).unwrap();
        assert_eq!(decide_with(&strict, "os_patches", windows(json!(14))), CheckStatus::Pass);
        assert_eq!(decide_with(&strict, "os_patches", windows(json!(20))), CheckStatus::Fail);
        let text = "version = \"patch\"\n[params]\nmax_patch_age_days = 90\n";
        let lenient = Policy::with_override(&builtin, Path::new("p.toml"), text).unwrap();
        assert_eq!(decide_with(&lenient, "os_patches", windows(json!(60))), CheckStatus::Pass);
        assert_eq!(decide_with(&lenient, "os_patches", windows(Json::Null)), CheckStatus::Unknown);
        // Linux reports no install date: the limit leaves it as the agent decided.
        let apt = json!({"package_manager": "apt", "pending_upgrades": 0, "pending_security_upgrades": 0,
            "lists_age_days": 1, "running_kernel": null, "newest_kernel": null, "reboot_required": false});
        assert_eq!(decide_with(&strict, "os_patches", apt), CheckStatus::Pass);
    }

    #[test]
    fn examples_may_set_their_own_parameters_and_are_checked_with_them() {
        let builtin = Policy::builtin().unwrap();
        let rule = "version = \"v\"\n[params]\nmax_level = 2\n[[rule]]\ncheck = \"secure_boot\"\nexpr = 'facts.level <= params.max_level'\nmessage = \"m\"\n";
        let with = |example: &str| format!("{rule}[[rule.example]]\n{example}");
        let ok = with("facts = '{\"level\": 3}'\nexpect = \"pass\"\nparams = { max_level = 3 }\n");
        // The example's own limit makes it pass; the policy's own stays 2.
        let p = Policy::with_override(&builtin, Path::new("o.toml"), &ok).unwrap();
        assert_eq!(p.params()["max_level"], json!(2));
        assert_eq!(decide_with(&p, "secure_boot", json!({"level": 3})), CheckStatus::Fail);
        let cases = [
            (
                "facts = '{\"level\": 3}'\nexpect = \"pass\"\nparams = { max_level = 2 }\n",
                "expects pass but the policy decides fail",
            ),
            (
                "facts = '{\"level\": 3}'\nexpect = \"pass\"\nparams = { nope = 2 }\n",
                "params.nope, which the policy does not define",
            ),
            (
                "facts = '{\"level\": 3}'\nexpect = \"pass\"\nparams = { max_level = \"3\" }\n",
                "to a string, not a number",
            ),
        ];
        for (example, want) in cases {
            let e = Policy::with_override(&builtin, Path::new("o.toml"), &with(example)).unwrap_err();
            assert!(e.message.contains(want), "{example}: {e}");
            assert_eq!(e.line, Some(8), "{e}");
        }
    }

    /// The evaluation benchmark seeds facts from the built-in examples whose
    /// status is their expected verdict and asserts that the policy decides
    /// the seeded mix: those must hold under the policy's own parameters
    /// (not only an example's), and every rule needs a pass and a fail.
    #[test]
    fn every_rule_has_a_pass_and_a_fail_example_that_hold_under_the_builtin_parameters() {
        let builtin = Policy::builtin().unwrap();
        let env = cel_env(Path::new(BUILTIN_PATH)).unwrap();
        let parsed = parse(Path::new(BUILTIN_PATH), BUILTIN_TEXT, &env).unwrap();
        for rule in builtin.rules() {
            for want in [CheckStatus::Pass, CheckStatus::Fail] {
                let seeded: Vec<&Example> = parsed
                    .examples
                    .iter()
                    .filter(|e| e.check == rule.check && e.status == want && e.expect == want)
                    .collect();
                assert!(!seeded.is_empty(), "{}: no {want} example whose status is {want}", rule.check);
                for ex in seeded {
                    let d = builtin.decide(&ex.check, ex.status, &ex.facts, &HostFacts::default());
                    assert_eq!(d.status, want, "{} example at line {}: {:?}", ex.check, ex.line, d.reason);
                }
            }
        }
    }

    #[test]
    fn a_null_verdict_is_unknown_never_a_pass() {
        let builtin = Policy::builtin().unwrap();
        let text = "version = \"v\"\n[[rule]]\ncheck = \"secure_boot\"\nexpr = 'has(facts.secure_boot) ? facts.secure_boot : null'\nmessage = \"off\"\n";
        let p = Policy::with_override(&builtin, Path::new("o.toml"), text).unwrap();
        for status in [CheckStatus::Pass, CheckStatus::Fail] {
            let d = p.decide("secure_boot", status, &Facts::new(), &host());
            assert_eq!(d.status, CheckStatus::Unknown);
            assert!(d.by_rule);
            assert_eq!(
                d.reason.unwrap(),
                "policy v: the facts cannot tell whether the secure_boot result meets the rule (off)"
            );
        }
        assert_eq!(decide_with(&p, "secure_boot", json!({"secure_boot": true})), CheckStatus::Pass);
    }

    #[test]
    fn param_references_are_found_outside_other_names() {
        assert_eq!(param_references("params.a + x.params.b + myparams.c + (params.d_2)"), vec!["a", "d_2"]);
    }
}
