//! The Linux backends of the `firewall` check.

use serde_json::{Value, json};

use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// An input-hook filter chain as loaded in the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct InputChain {
    /// `inet`, `ip` or `ip6` (nftables), or `ipv4`/`ipv6` for legacy iptables.
    pub family: String,
    pub table: String,
    pub name: String,
    pub policy: String,
    pub rules: usize,
    /// Whether the chain denies what no rule accepted.
    pub default_deny: bool,
    pub why: String,
}

impl InputChain {
    fn covers_v4(&self) -> bool {
        matches!(self.family.as_str(), "inet" | "ip" | "ipv4")
    }
    fn covers_v6(&self) -> bool {
        matches!(self.family.as_str(), "inet" | "ip6" | "ipv6")
    }
    fn to_json(&self) -> Value {
        json!({"family": self.family, "table": self.table, "chain": self.name, "policy": self.policy,
               "rules": self.rules, "default_deny": self.default_deny, "why": self.why})
    }
}

/// Verdict of one nftables rule when it has no match expression.
fn unconditional_verdict(expr: &[Value]) -> Option<&'static str> {
    let mut verdict = None;
    for e in expr {
        let obj = e.as_object()?;
        let key = obj.keys().next()?;
        match key.as_str() {
            // Statements that do not select packets.
            "counter" | "log" | "limit" | "comment" => {}
            "accept" => verdict = Some("accept"),
            "drop" => verdict = Some("drop"),
            "reject" => verdict = Some("reject"),
            _ => return None,
        }
    }
    verdict
}

/// Decides whether a chain denies by default, from its policy and rule verdicts
/// (`None` for a conditional rule), in order.
fn judge_chain(policy: &str, verdicts: &[Option<&str>]) -> (bool, String) {
    if let Some(i) = verdicts.iter().position(|v| *v == Some("accept")) {
        return (false, format!("rule {} accepts everything unconditionally", i + 1));
    }
    if let Some(Some(v)) = verdicts.last()
        && (*v == "drop" || *v == "reject")
    {
        return (true, format!("last rule {v}s everything not accepted before"));
    }
    if policy == "drop" {
        return (true, "policy drop".into());
    }
    (false, format!("policy {policy} and no final drop or reject rule"))
}

/// Parses `nft -j list ruleset` into its input-hook filter chains.
pub fn parse_nft_json(text: &str) -> Result<Vec<InputChain>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("nft JSON is malformed: {e}"))?;
    let items = doc.get("nftables").and_then(Value::as_array).ok_or("nft JSON has no \"nftables\" array")?;
    let mut chains: Vec<(InputChain, Vec<Option<&'static str>>)> = Vec::new();
    for item in items {
        if let Some(c) = item.get("chain") {
            let field = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let family = field("family");
            if field("hook") != "input"
                || field("type") != "filter"
                || !matches!(family.as_str(), "inet" | "ip" | "ip6")
            {
                continue;
            }
            let policy = c.get("policy").and_then(Value::as_str).unwrap_or("accept").to_string();
            chains.push((
                InputChain {
                    family,
                    table: field("table"),
                    name: field("name"),
                    policy,
                    rules: 0,
                    default_deny: false,
                    why: String::new(),
                },
                Vec::new(),
            ));
        } else if let Some(r) = item.get("rule") {
            let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            if let Some((chain, verdicts)) = chains.iter_mut().find(|(c, _)| {
                c.family == field("family") && c.table == field("table") && c.name == field("chain")
            }) {
                let expr = r.get("expr").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                chain.rules += 1;
                verdicts.push(unconditional_verdict(expr));
            }
        }
    }
    Ok(chains
        .into_iter()
        .map(|(mut c, verdicts)| {
            (c.default_deny, c.why) = judge_chain(&c.policy, &verdicts);
            c
        })
        .collect())
}

/// Parses `iptables-save` / `ip6tables-save` output: the INPUT chain of the
/// filter table. `family` is `ipv4` or `ipv6`.
pub fn parse_iptables_save(text: &str, family: &str) -> Option<InputChain> {
    let mut in_filter = false;
    let mut policy = None;
    let mut verdicts: Vec<Option<&str>> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('*') {
            in_filter = line == "*filter";
        } else if !in_filter {
            continue;
        } else if let Some(rest) = line.strip_prefix(":INPUT ") {
            policy = rest.split_whitespace().next().map(str::to_ascii_lowercase);
        } else if let Some(rest) = line.strip_prefix("-A INPUT ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let target = words.iter().position(|w| *w == "-j").and_then(|i| words.get(i + 1)).copied();
            // Unconditional when nothing but the target (and its options) is given.
            let unconditional = words.first() == Some(&"-j");
            verdicts.push(match (unconditional, target) {
                (true, Some("ACCEPT")) => Some("accept"),
                (true, Some("DROP")) => Some("drop"),
                (true, Some("REJECT")) => Some("reject"),
                _ => None,
            });
        }
    }
    let policy = policy?;
    let (default_deny, why) = judge_chain(&policy, &verdicts);
    Some(InputChain {
        family: family.to_string(),
        table: "filter".into(),
        name: "INPUT".into(),
        policy,
        rules: verdicts.len(),
        default_deny,
        why,
    })
}

/// What was read from the host, for [`evaluate`].
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// `nft -j list ruleset` output, or why it could not be read.
    pub nft: Option<Result<String, String>>,
    /// Legacy iptables-save / ip6tables-save output (only when the legacy backend is in use).
    pub legacy_v4: Option<String>,
    pub legacy_v6: Option<String>,
    /// Whether IPv6 is enabled on the host.
    pub ipv6_enabled: bool,
    /// `ufw status` first line and `firewall-cmd --state`, if present.
    pub ufw: Option<String>,
    pub firewalld: Option<String>,
}

/// Decides the check from what was observed.
pub fn evaluate(o: &Observed) -> Finding {
    let mut chains = Vec::new();
    let mut raw = String::new();
    let mut backends = Vec::new();
    let mut unreadable = None;
    match &o.nft {
        Some(Ok(text)) => {
            raw.push_str(text);
            match parse_nft_json(text) {
                Ok(c) => {
                    chains.extend(c);
                    backends.push("nftables");
                }
                Err(e) => unreadable = Some(e),
            }
        }
        Some(Err(e)) => unreadable = Some(e.clone()),
        None => {}
    }
    for (text, family) in [(&o.legacy_v4, "ipv4"), (&o.legacy_v6, "ipv6")] {
        if let Some(text) = text {
            raw.push('\n');
            raw.push_str(text);
            if let Some(c) = parse_iptables_save(text, family) {
                chains.push(c);
                if !backends.contains(&"iptables-legacy") {
                    backends.push("iptables-legacy");
                }
            }
        }
    }
    let backend = if backends.is_empty() { "none".to_string() } else { backends.join("+") };
    let mut managers = serde_json::Map::new();
    if let Some(u) = &o.ufw {
        managers.insert("ufw".into(), u.clone().into());
    }
    if let Some(f) = &o.firewalld {
        managers.insert("firewalld".into(), f.clone().into());
    }
    if backends.is_empty() {
        let reason = match unreadable {
            Some(e) => format!("the kernel's packet-filter rules could not be read: {e}"),
            None => {
                "no packet-filter tool (nft, iptables-save) is available to read the kernel's rules".into()
            }
        };
        return Finding::unknown(&backend, reason).with_raw(raw).fact("managers", Value::Object(managers));
    }
    let v4 = chains.iter().any(|c| c.covers_v4() && c.default_deny);
    let v6 = chains.iter().any(|c| c.covers_v6() && c.default_deny);
    let finding_base = |status: CheckStatus| {
        Finding::new(status, &backend)
            .fact("ipv4_filtered", v4)
            .fact("ipv6_filtered", v6)
            .fact("ipv6_enabled", o.ipv6_enabled)
            .fact("input_chains", chains.iter().map(InputChain::to_json).collect::<Vec<_>>())
            .fact("managers", Value::Object(managers.clone()))
            .with_raw(raw.clone())
    };
    if chains.is_empty() {
        return finding_base(CheckStatus::Fail)
            .with_reason("no input filter chain is loaded: all inbound traffic is accepted");
    }
    let mut open = Vec::new();
    if !v4 {
        open.push("IPv4");
    }
    if o.ipv6_enabled && !v6 {
        open.push("IPv6");
    }
    if open.is_empty() {
        let why = chains
            .iter()
            .filter(|c| c.default_deny)
            .map(|c| format!("{} {} {}: {}", c.family, c.table, c.name, c.why));
        return finding_base(CheckStatus::Pass).with_reason(format!(
            "inbound traffic is denied by default ({})",
            why.collect::<Vec<_>>().join("; ")
        ));
    }
    let seen: Vec<String> =
        chains.iter().map(|c| format!("{} {} {}: {}", c.family, c.table, c.name, c.why)).collect();
    finding_base(CheckStatus::Fail).with_reason(format!(
        "inbound {} traffic is not filtered by default ({})",
        open.join(" and "),
        seen.join("; ")
    ))
}

fn describe(e: &HostError, out: Option<&str>) -> String {
    match out {
        Some(stderr) if !stderr.trim().is_empty() => format!("{e}: {}", stderr.trim()),
        _ => e.to_string(),
    }
}

/// Reads the rules through the host.
pub fn observe(host: &dyn Host) -> Observed {
    let mut o = Observed {
        ipv6_enabled: host
            .read_text("/proc/sys/net/ipv6/conf/all/disable_ipv6")
            .map(|v| v.trim() == "0")
            .unwrap_or(false),
        ..Observed::default()
    };
    o.nft = match host.run("nft", &["-j", "list", "ruleset"]) {
        Ok(out) if out.success() => Some(Ok(out.stdout)),
        Ok(out) => Some(Err(format!("nft exited with {:?}: {}", out.code, out.stderr.trim()))),
        Err(HostError::NotFound { .. }) => None,
        Err(e) => Some(Err(describe(&e, None))),
    };
    // Legacy x_tables rules are separate kernel state that nft does not show.
    let legacy = |prog: &str| match host.run(prog, &[]) {
        Ok(out) if out.success() && out.stdout.contains("(legacy)") => Some(out.stdout),
        // Without nft, iptables-save (nf_tables backend) is the only view of the rules.
        Ok(out) if out.success() && o.nft.is_none() => Some(out.stdout),
        _ => None,
    };
    o.legacy_v4 = legacy("iptables-save");
    o.legacy_v6 = legacy("ip6tables-save");
    o.ufw = host.run("ufw", &["status"]).ok().and_then(|out| out.stdout.lines().next().map(str::to_string));
    o.firewalld = host
        .run("firewall-cmd", &["--state"])
        .ok()
        .map(|out| format!("{} {}", out.stdout.trim(), out.stderr.trim()).trim().to_string());
    o
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    evaluate(&observe(host))
}
