//! Loading a policy: the built-in file, and an organisation's override
//! merged over it (version replaced, parameters overridden by name and
//! kind, rules replaced per check, scopes appended); and what a loaded
//! policy holds.
//!
//! Invariant: a file that does not load, or whose examples do not hold
//! under the merged policy, is refused whole.

use super::*;

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
}
