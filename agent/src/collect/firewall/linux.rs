//! The Linux backend of the `firewall` check: the kernel's netfilter rules
//! judged by what they accept ([`super::netfilter`]).
//!
//! Reads every rule source the kernel runs: nf_tables (`nft -j list
//! ruleset`, which holds what nft, iptables-nft, ufw, firewalld and Docker
//! load; tables holding iptables-nft compatibility expressions are read
//! from `iptables-nft-save` / `ip6tables-nft-save`, which decode them) and
//! legacy x_tables (`iptables-legacy-save`, `ip6tables-legacy-save`), read
//! whatever the `iptables` alternative points to, since both run in the
//! kernel at once. Also the routes and local addresses (`ip -j route show
//! table all`, for DNAT'd traffic), whether IPv6 and forwarding are on, and
//! `ufw status` / `firewall-cmd --state` as facts.

use serde_json::{Value, json};

use super::exposure::{self, Exposure, Judgement};
use super::netfilter::interpret::{Env, TooLarge};
use super::netfilter::ruleset::{Hook, Origin, Ruleset, Table, TableFamily};
use super::netfilter::{analyse, iptables, nft_bytecode, nft_json};
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// What was read from the host, for [`evaluate`].
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// `nft -j list ruleset` output, or why it could not be read.
    pub nft: Option<Result<String, String>>,
    /// `nft --debug=netlink list ruleset`: the bytecode, which settles what
    /// the listing leaves ambiguous (`nft_bytecode.rs`).
    pub nft_bytecode: Option<String>,
    /// `iptables-nft-save` / `ip6tables-nft-save` output.
    pub nft_save_v4: Option<String>,
    pub nft_save_v6: Option<String>,
    /// Legacy x_tables rules (`iptables-legacy-save`, `ip6tables-legacy-save`).
    pub legacy_v4: Option<Result<String, String>>,
    pub legacy_v6: Option<Result<String, String>>,
    /// `ip -4 -j route show table all` and its IPv6 counterpart.
    pub routes_v4: Option<String>,
    pub routes_v6: Option<String>,
    pub ipv6_enabled: bool,
    pub forwarding_v4: bool,
    pub forwarding_v6: bool,
    /// `ufw status` first line and `firewall-cmd --state`, if present.
    pub ufw: Option<String>,
    pub firewalld: Option<String>,
}

/// The rules read, by source, and what could not be read.
struct Read {
    ruleset: Ruleset,
    raw: String,
    backends: Vec<&'static str>,
    problems: Vec<String>,
}

/// Reads every source into one ruleset.
fn read(o: &Observed) -> Read {
    let mut r =
        Read { ruleset: Ruleset::default(), raw: String::new(), backends: Vec::new(), problems: Vec::new() };
    match &o.nft {
        Some(Ok(text)) => {
            r.raw.push_str(text);
            let code = o.nft_bytecode.as_deref().map(nft_bytecode::parse);
            match nft_json::parse(text, code.as_ref()) {
                Ok(mut rs) => {
                    replace_xt_tables(&mut rs, text, o, &mut r.problems);
                    r.ruleset.tables.extend(rs.tables);
                    r.backends.push("nftables");
                }
                Err(e) => r.problems.push(e.to_string()),
            }
        }
        Some(Err(e)) => r.problems.push(format!("nft: {e}")),
        None => {}
    }
    for (text, v6, program) in
        [(&o.legacy_v4, false, "iptables-legacy-save"), (&o.legacy_v6, true, "ip6tables-legacy-save")]
    {
        match text {
            Some(Ok(text)) => {
                r.raw.push_str(&format!("\n# {program}\n{text}"));
                match iptables::parse(text, v6, Origin::IptablesLegacy, program) {
                    Ok(tables) => {
                        if tables.iter().any(|t| !t.chains.is_empty())
                            && !r.backends.contains(&"iptables-legacy")
                        {
                            r.backends.push("iptables-legacy");
                        }
                        r.ruleset.tables.extend(tables);
                    }
                    Err(e) => r.problems.push(e.to_string()),
                }
            }
            Some(Err(e)) => r.problems.push(format!("{program}: {e}")),
            None => {}
        }
    }
    r
}

/// Tables of iptables-nft hold `xt` expressions nft cannot print: read
/// them from the `iptables-nft-save` of their family instead.
fn replace_xt_tables(rs: &mut Ruleset, text: &str, o: &Observed, problems: &mut Vec<String>) {
    for (family, name) in nft_json::xt_tables(text) {
        let (save, v6, program) = match family.as_str() {
            "ip" => (&o.nft_save_v4, false, "iptables-nft-save"),
            "ip6" => (&o.nft_save_v6, true, "ip6tables-nft-save"),
            _ => continue,
        };
        let Some(save) = save else {
            problems.push(format!(
                "{program} is missing, so table {family} {name} keeps iptables-nft expressions"
            ));
            continue;
        };
        let parsed = match iptables::parse(save, v6, Origin::Nftables, program) {
            Ok(t) => t,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let fam = if v6 { TableFamily::Ip6 } else { TableFamily::Ip };
        if let (Some(i), Some(t)) = (
            rs.tables.iter().position(|t| t.family == fam && t.name == name),
            parsed.into_iter().find(|t| t.name == name),
        ) {
            rs.tables[i] = t;
        }
    }
}

fn env(o: &Observed, problems: &mut Vec<String>) -> Env {
    let mut env = Env { forwarding_v4: o.forwarding_v4, forwarding_v6: o.forwarding_v6, ..Env::default() };
    for (text, v6) in [(&o.routes_v4, false), (&o.routes_v6, true)] {
        if let Some(text) = text
            && let Err(e) = env.routes.read(text, v6)
        {
            problems.push(e.to_string());
        }
    }
    env
}

/// The base chains of the input hook, as facts.
fn input_chains(rs: &Ruleset) -> Vec<Value> {
    let mut out = Vec::new();
    for t in &rs.tables {
        for (i, c) in t.chains.iter().enumerate() {
            if let Some(b) = c.base.as_ref().filter(|b| b.hook == Hook::Input && !b.nat) {
                out.push(json!({
                    "family": t.family.as_str(t.origin), "table": t.name, "chain": c.name, "backend": t.origin.backend(),
                    "prio": b.prio, "policy": if b.policy_drop { "drop" } else { "accept" }, "rules": c.rules.len(),
                    "name": t.chain_label(i),
                }));
            }
        }
    }
    out
}

/// Whether each backend alone would filter the family (judged without the other's tables).
fn filtered_by(
    rs: &Ruleset,
    env: &Env,
    v6: bool,
    backends: &[&'static str],
    whole: Judgement,
) -> Vec<&'static str> {
    // One backend: its rules alone are the whole ruleset, already judged.
    if let [only] = backends {
        return if whole == Judgement::Filtered { vec![*only] } else { Vec::new() };
    }
    backends
        .iter()
        .copied()
        .filter(|b| {
            let only: Vec<Table> = rs.tables.iter().filter(|t| t.origin.backend() == *b).cloned().collect();
            let exposures = analyse(&Ruleset { tables: only }, env, &[v6]);
            exposures.is_ok_and(|e| exposure::judge(&e) == Judgement::Filtered)
        })
        .collect()
}

/// Decides the check from what was observed.
pub fn evaluate(o: &Observed) -> Finding {
    let mut read = read(o);
    let env = env(o, &mut read.problems);
    let mut managers = serde_json::Map::new();
    if let Some(u) = &o.ufw {
        managers.insert("ufw".into(), u.clone().into());
    }
    if let Some(f) = &o.firewalld {
        managers.insert("firewalld".into(), f.clone().into());
    }
    let backend = if read.backends.is_empty() { "none".to_string() } else { read.backends.join("+") };
    if read.backends.is_empty() {
        let reason = match read.problems.first() {
            Some(e) => format!("the kernel's packet-filter rules could not be read: {e}"),
            None => {
                "no packet-filter tool (nft, iptables-save) is available to read the kernel's rules".into()
            }
        };
        return Finding::unknown(&backend, reason)
            .with_raw(read.raw)
            .fact("managers", Value::Object(managers));
    }
    let families: Vec<bool> = if o.ipv6_enabled { vec![false, true] } else { vec![false] };
    let exposures = match analyse(&read.ruleset, &env, &families) {
        Ok(e) => e,
        Err(TooLarge) => {
            return Finding::unknown(
                &backend,
                "the ruleset is too large to evaluate within the agent's limits",
            )
            .with_raw(read.raw)
            .fact("managers", Value::Object(managers));
        }
    };
    let of = |v6: bool| -> Vec<Exposure> {
        exposures.iter().filter(|e| (e.family == exposure::Family::Ipv6) == v6).cloned().collect()
    };
    let (v4, v6) = (of(false), of(true));
    let chains = input_chains(&read.ruleset);
    let mut f = Finding::new(CheckStatus::Pass, &backend)
        .fact("ipv4_filtered", exposure::judge(&v4) == Judgement::Filtered)
        .fact("ipv6_filtered", o.ipv6_enabled && exposure::judge(&v6) == Judgement::Filtered)
        .fact("ipv6_enabled", o.ipv6_enabled)
        .fact(
            "ipv4_filtered_by",
            filtered_by(&read.ruleset, &env, false, &read.backends, exposure::judge(&v4)),
        )
        .fact(
            "ipv6_filtered_by",
            if o.ipv6_enabled {
                filtered_by(&read.ruleset, &env, true, &read.backends, exposure::judge(&v6))
            } else {
                Vec::new()
            },
        )
        .fact("exposed", exposure::capped_facts(&exposures))
        .fact("exposed_total", exposures.len())
        .fact("input_chains", chains.clone())
        .fact("forwarding", json!({"ipv4": o.forwarding_v4, "ipv6": o.forwarding_v6}))
        .fact("managers", Value::Object(managers))
        .with_raw(read.raw);
    if !read.problems.is_empty() {
        f = f.fact("read_problems", read.problems.clone());
    }
    let (status, reason) = verdict(&exposures, chains.is_empty(), &read.problems);
    f.status = status;
    f.with_reason(reason)
}

/// The status and reason from the exposures.
fn verdict(exposures: &[Exposure], no_input_chain: bool, problems: &[String]) -> (CheckStatus, String) {
    match exposure::judge(exposures) {
        Judgement::Open(_) if no_input_chain => {
            (CheckStatus::Fail, "no input filter chain is loaded: all inbound traffic is accepted".into())
        }
        Judgement::Open(open) => (
            CheckStatus::Fail,
            format!("inbound traffic is accepted by default: {}", exposure::list_with_rule(&open, 3)),
        ),
        Judgement::Unclear(maybe) => (
            CheckStatus::Unknown,
            format!("inbound traffic may be accepted by default: {}", exposure::list_with_rule(&maybe, 3)),
        ),
        Judgement::Filtered if !problems.is_empty() => {
            (CheckStatus::Unknown, format!("part of the rules could not be read: {}", problems.join("; ")))
        }
        Judgement::Filtered => {
            let listed: Vec<&Exposure> = exposures.iter().collect();
            (
                CheckStatus::Pass,
                format!("new inbound connections are dropped except: {}", exposure::list_text(&listed, 8)),
            )
        }
    }
}

fn describe(e: &HostError) -> String {
    e.to_string()
}

/// A command's output when it ran and succeeded; `None` when the program is
/// missing; `Err` with why otherwise.
fn output(host: &dyn Host, program: &str, args: &[&str]) -> Option<Result<String, String>> {
    match host.run(program, args) {
        Ok(out) if out.success() => Some(Ok(out.stdout)),
        Ok(out) => Some(Err(format!("{program} exited with {:?}: {}", out.code, out.stderr.trim()))),
        Err(HostError::NotFound { .. }) => None,
        Err(e) => Some(Err(describe(&e))),
    }
}

fn flag(host: &dyn Host, path: &str, default: bool) -> bool {
    host.read_text(path).map(|v| v.trim() == "1").unwrap_or(default)
}

/// Legacy rules: the `-legacy` tools where they exist; on systems that
/// only have legacy iptables (no nf_tables variant), plain `iptables-save`.
fn legacy(host: &dyn Host, program: &str, plain: &str) -> Option<Result<String, String>> {
    output(host, program, &[]).or_else(|| {
        let version = host.run(plain.trim_end_matches("-save"), &["-V"]).ok()?;
        if version.stdout.contains("nf_tables") {
            return None;
        }
        output(host, plain, &[])
    })
}

/// Reads the rules through the host.
pub fn observe(host: &dyn Host) -> Observed {
    let ok = |r: Option<Result<String, String>>| r.and_then(Result::ok);
    Observed {
        nft: output(host, "nft", &["-j", "list", "ruleset"]),
        nft_bytecode: ok(output(host, "nft", &["--debug=netlink", "list", "ruleset"])),
        nft_save_v4: ok(output(host, "iptables-nft-save", &[])),
        nft_save_v6: ok(output(host, "ip6tables-nft-save", &[])),
        legacy_v4: legacy(host, "iptables-legacy-save", "iptables-save"),
        legacy_v6: legacy(host, "ip6tables-legacy-save", "ip6tables-save"),
        routes_v4: ok(output(host, "ip", &["-4", "-j", "route", "show", "table", "all"])),
        routes_v6: ok(output(host, "ip", &["-6", "-j", "route", "show", "table", "all"])),
        ipv6_enabled: host
            .read_text("/proc/sys/net/ipv6/conf/all/disable_ipv6")
            .map(|v| v.trim() == "0")
            .unwrap_or(false),
        // Unreadable: assume forwarding, so DNAT'd traffic is judged, not ignored.
        forwarding_v4: flag(host, "/proc/sys/net/ipv4/ip_forward", true),
        forwarding_v6: flag(host, "/proc/sys/net/ipv6/conf/all/forwarding", true),
        ufw: host.run("ufw", &["status"]).ok().and_then(|out| out.stdout.lines().next().map(str::to_string)),
        firewalld: host
            .run("firewall-cmd", &["--state"])
            .ok()
            .map(|out| format!("{} {}", out.stdout.trim(), out.stderr.trim()).trim().to_string()),
    }
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    evaluate(&observe(host))
}
