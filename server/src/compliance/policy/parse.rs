//! Reading one policy file: the TOML document, its rules, examples and
//! scopes checked (CEL compiled, parameters converted), with file and line
//! for every refusal.

use super::*;
use custos_proto::checks::CHECK_IDS;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDoc {
    pub(super) version: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) params: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default, rename = "rule")]
    pub(super) rules: Vec<RuleDoc>,
    #[serde(default, rename = "scope")]
    pub(super) scopes: Vec<Spanned<ScopeDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleDoc {
    pub(super) check: Spanned<String>,
    pub(super) expr: Spanned<String>,
    pub(super) message: Spanned<String>,
    #[serde(default, rename = "example")]
    pub(super) examples: Vec<Spanned<ExampleDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExampleDoc {
    /// The check's facts as a JSON object (TOML has no null).
    pub(super) facts: String,
    /// The agent's status (default `pass`).
    #[serde(default)]
    pub(super) status: Option<String>,
    /// What the policy must decide.
    pub(super) expect: String,
    /// Parameters of this example only, merged over the policy's.
    #[serde(default)]
    pub(super) params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub(super) os: String,
    #[serde(default)]
    pub(super) tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeDoc {
    pub(super) controls: Vec<String>,
    #[serde(default)]
    pub(super) tags_any: Vec<String>,
    #[serde(default)]
    pub(super) tags_none: Vec<String>,
}

pub(super) struct Example {
    pub(super) check: String,
    pub(super) line: usize,
    pub(super) status: CheckStatus,
    pub(super) expect: CheckStatus,
    pub(super) facts: Facts,
    pub(super) host: HostFacts,
    /// The example's own parameters.
    pub(super) params: Map<String, Json>,
}

pub(super) struct Parsed {
    pub(super) version: Option<(String, usize)>,
    /// name → (value, line)
    pub(super) params: BTreeMap<String, (Json, usize)>,
    pub(super) rules: Vec<Rule>,
    pub(super) scopes: Vec<Scope>,
    pub(super) examples: Vec<Example>,
}

/// 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// The file being read: errors and lines point into it.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn at(&self, span: std::ops::Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    fn err(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> PolicyError {
        err(self.path, Some(self.at(span)), message)
    }
}

/// Parses and checks one file on its own: size and syntax, then the
/// version, parameter values, each rule (check id, duplicates, message,
/// CEL that compiles, its examples) and the scopes.
pub(super) fn parse(path: &Path, text: &str, env: &cel::Env) -> Result<Parsed, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        let why = format!("{} bytes, more than the limit of {MAX_POLICY_BYTES}", text.len());
        return Err(err(path, None, why));
    }
    let doc: FileDoc = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        err(path, line, e.message().trim().to_string())
    })?;
    let src = Source { path, text };
    let version = match doc.version {
        Some(v) if v.get_ref().trim().is_empty() => return Err(src.err(v.span(), "`version` is empty")),
        Some(v) => Some((v.get_ref().clone(), src.at(v.span()))),
        None => None,
    };
    let params = read_params(&src, doc.params)?;
    let (mut rules, mut examples) = (Vec::new(), Vec::new());
    for r in doc.rules {
        let (rule, mut own) = read_rule(&src, r, &rules, env)?;
        rules.push(rule);
        examples.append(&mut own);
    }
    let scopes = doc.scopes.into_iter().map(|s| read_scope(&src, s)).collect::<Result<_, _>>()?;
    Ok(Parsed { version, params, rules, scopes, examples })
}

/// Parameters: identifiers only, values CEL can hold.
fn read_params(
    src: &Source,
    doc: BTreeMap<String, Spanned<toml::Value>>,
) -> Result<BTreeMap<String, (Json, usize)>, PolicyError> {
    let mut params = BTreeMap::new();
    for (name, value) in doc {
        if !is_identifier(&name) {
            let why = format!(
                "param name {name:?} is not an identifier (letters, digits, _), so rules cannot read it"
            );
            return Err(src.err(value.span(), why));
        }
        let json =
            toml_to_json(value.get_ref()).map_err(|m| src.err(value.span(), format!("param {name}: {m}")))?;
        params.insert(name, (json, src.at(value.span())));
    }
    Ok(params)
}

/// One rule, checked against the file's earlier ones, with its examples.
fn read_rule(
    src: &Source,
    r: RuleDoc,
    earlier: &[Rule],
    env: &cel::Env,
) -> Result<(Rule, Vec<Example>), PolicyError> {
    let check = r.check.get_ref().clone();
    if !custos_proto::checks::is_check(&check) {
        let why = format!("rule for unknown check {check:?} (the agent's checks: {})", CHECK_IDS.join(", "));
        return Err(src.err(r.check.span(), why));
    }
    if earlier.iter().any(|r| r.check == check) {
        return Err(src.err(r.check.span(), format!("a second rule for check {check} in this file")));
    }
    if r.message.get_ref().trim().is_empty() {
        return Err(src.err(r.message.span(), format!("rule for {check} has an empty message")));
    }
    let program = compile(src, &check, &r.expr, env)?;
    let examples =
        r.examples.into_iter().map(|ex| read_example(src, &check, ex)).collect::<Result<_, _>>()?;
    let rule = Rule {
        check,
        expr: r.expr.get_ref().clone(),
        message: r.message.into_inner(),
        source: src.path.to_path_buf(),
        line: src.at(r.expr.span()),
        program: Arc::new(program),
    };
    Ok((rule, examples))
}

/// The rule's CEL, compiled; an error points at the line of the expression
/// it is on.
fn compile(
    src: &Source,
    check: &str,
    expr: &Spanned<String>,
    env: &cel::Env,
) -> Result<cel::Program, PolicyError> {
    let expr_line = src.at(expr.span());
    // A multi-line literal drops the newline right after its opening quotes.
    let raw = &src.text[expr.span().start.min(src.text.len())..];
    let first_line =
        if raw.starts_with("'''\n") || raw.starts_with("\"\"\"\n") { expr_line + 1 } else { expr_line };
    env.compile(expr.get_ref()).map_err(|e| {
        let (line, msg) = match e.errors.first() {
            Some(pe) => (first_line + usize::try_from(pe.pos.0.max(1) - 1).unwrap_or(0), pe.msg.clone()),
            None => (expr_line, e.to_string()),
        };
        err(src.path, Some(line), format!("rule for {check}: CEL does not compile: {msg}"))
    })
}

/// One example of a rule: facts, statuses and parameters readable.
fn read_example(src: &Source, check: &str, ex: Spanned<ExampleDoc>) -> Result<Example, PolicyError> {
    let line = src.at(ex.span());
    let ex = ex.into_inner();
    let bad = |m: String| err(src.path, Some(line), format!("example for {check}: {m}"));
    let facts: Facts =
        serde_json::from_str(&ex.facts).map_err(|e| bad(format!("facts are not a JSON object: {e}")))?;
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
    Ok(Example {
        check: check.to_string(),
        line,
        status,
        expect,
        facts,
        host: HostFacts { os: ex.os, tags: ex.tags },
        params,
    })
}

/// One scope: controls named, no empty control id or tag.
fn read_scope(src: &Source, s: Spanned<ScopeDoc>) -> Result<Scope, PolicyError> {
    let span = s.span();
    let s = s.into_inner();
    if s.controls.is_empty() {
        return Err(src.err(span, "scope with an empty control list"));
    }
    if let Some(empty) =
        s.controls.iter().chain(&s.tags_any).chain(&s.tags_none).find(|c| c.trim().is_empty())
    {
        return Err(src.err(span, format!("scope with an empty control id or tag {empty:?}")));
    }
    Ok(Scope { controls: s.controls, tags_any: s.tags_any, tags_none: s.tags_none })
}

/// Builds the policy and checks that every rule reads only parameters it has.
pub(super) fn assemble(
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
pub(super) fn param_references(expr: &str) -> Vec<String> {
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

pub(super) fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What kind of value a parameter is, for override checks.
pub(super) fn kind(v: &Json) -> &'static str {
    match v {
        Json::Number(_) => "number",
        Json::Bool(_) => "boolean",
        Json::String(_) => "string",
        Json::Array(_) => "list",
        Json::Object(_) => "table",
        Json::Null => "null",
    }
}

pub(super) fn toml_to_json(v: &toml::Value) -> Result<Json, String> {
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
