//! Reads `iptables-save` / `ip6tables-save` output (legacy x_tables, or the
//! tables iptables-nft keeps in nf_tables) into [`Table`]s of the same
//! [`Ruleset`](super::ruleset::Ruleset) form nft rules take.
//!
//! Built-in chains hook in where the kernel registers them (`raw` -300,
//! `mangle` -150, `nat` PREROUTING -100 and INPUT 100, `filter` 0,
//! `security` 50). Every option a rule carries becomes a match, a
//! sender-chosen condition, or an undecided one naming the option: a match
//! module this reader does not know never vanishes silently.

use super::ruleset::{
    Base, Chain, Dnat, Elem, Field, Hook, Key, Origin, Rule, Stmt, Table, TableFamily, Tuples, Verdict,
};
use super::values;
use crate::collect::ParseError;

/// Where a built-in chain hooks in: (hook, priority, nat).
fn builtin(table: &str, chain: &str) -> Option<(Hook, i64, bool)> {
    Some(match (table, chain) {
        ("raw", "PREROUTING") => (Hook::Prerouting, -300, false),
        ("mangle", "PREROUTING") => (Hook::Prerouting, -150, false),
        ("mangle", "INPUT") => (Hook::Input, -150, false),
        ("mangle", "FORWARD") => (Hook::Forward, -150, false),
        ("nat", "PREROUTING") => (Hook::Prerouting, -100, true),
        ("nat", "INPUT") => (Hook::Input, 100, true),
        ("filter", "INPUT") => (Hook::Input, 0, false),
        ("filter", "FORWARD") => (Hook::Forward, 0, false),
        ("security", "INPUT") => (Hook::Input, 50, false),
        ("security", "FORWARD") => (Hook::Forward, 50, false),
        (_, "OUTPUT" | "POSTROUTING") => (Hook::Other, 0, false),
        _ => return None,
    })
}

/// Parses the whole output of one save program; `v6` for ip6tables. `Err`
/// names the program and the line that cannot be read as its output.
pub fn parse(text: &str, v6: bool, origin: Origin, program: &str) -> Result<Vec<Table>, ParseError> {
    let family = if v6 { TableFamily::Ip6 } else { TableFamily::Ip };
    let mut tables: Vec<Table> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let err = |reason: String| ParseError::new(reason).in_command(program).at_line(i + 1);
        if line.is_empty() || line.starts_with('#') || line == "COMMIT" {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            tables.push(Table { family, name: name.to_string(), origin, chains: Vec::new() });
            continue;
        }
        let table =
            tables.last_mut().ok_or_else(|| err("a chain or rule before any `*table` line".into()))?;
        if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let name = words.next().ok_or_else(|| err("a chain line without a name".into()))?;
            let policy = words.next().unwrap_or("-");
            let base = builtin(&table.name, name).map(|(hook, prio, nat)| Base {
                hook,
                prio,
                nat,
                policy_drop: policy == "DROP",
            });
            table.chains.push(Chain { name: name.to_string(), base, rules: Vec::new() });
        } else if line.starts_with("-A ") {
            let words = split_words(line).map_err(err)?;
            let chain_name = words.get(1).cloned().unwrap_or_default();
            let chain = table
                .chain(&chain_name)
                .ok_or_else(|| err(format!("rule for undeclared chain {chain_name}")))?;
            let label = if line.chars().count() > 160 {
                format!("`{}…`", line.chars().take(160).collect::<String>())
            } else {
                format!("`{line}`")
            };
            let chains: Vec<&str> = table.chains.iter().map(|c| c.name.as_str()).collect();
            let stmts = rule(&words[2..], v6, &chains);
            table.chains[chain].rules.push(Rule::new(label, stmts));
        } else {
            return Err(err(format!("unexpected line {line:?}")));
        }
    }
    Ok(tables)
}

/// Splits a line into words the way iptables-save quotes them (`"a b"`, `\"`).
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut has = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(chars.next().ok_or("a line ending in a backslash")?);
                has = true;
            }
            '"' => {
                in_quote = !in_quote;
                has = true;
            }
            c if c.is_whitespace() && !in_quote => {
                if has {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if in_quote {
        return Err("an unclosed quote".into());
    }
    if has {
        words.push(cur);
    }
    Ok(words)
}

fn one(field: Field, negate: bool, set: Tuples) -> Stmt {
    Stmt::Match { key: Key::Field(field), negate, set }
}

/// Elements of a comma-separated list for `field`; `None` names a bad one.
fn list(field: Field, text: &str) -> Result<Tuples, String> {
    text.split(',')
        .map(|w| {
            let w = if values::is_name(field) { w.replace('+', "*") } else { w.to_string() };
            values::text_elem(field, &w).map(|e| vec![e]).ok_or_else(|| format!("value {w:?}"))
        })
        .collect()
}

/// Bits of a comma-separated flag list (`SYN,ACK`, `NEW,ESTABLISHED`).
fn flag_bits(field: Field, text: &str) -> Option<u128> {
    if text == "ALL" {
        return Some(0xff);
    }
    if text == "NONE" {
        return Some(0);
    }
    text.split(',').try_fold(0, |acc, w| values::scalar(field, w).map(|b| acc | b))
}

/// The statements of one rule's options.
fn rule(words: &[String], v6: bool, chains: &[&str]) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut module = String::new();
    let mut negate = false;
    let mut i = 0;
    while i < words.len() {
        let opt = words[i].as_str();
        let arg = words.get(i + 1).map(String::as_str).unwrap_or("");
        i += 1;
        if opt == "!" {
            negate = true;
            continue;
        }
        let (stmts, used) = option(opt, arg, words.get(i + 1).map(String::as_str), &module, negate, v6);
        if opt == "-m" || opt == "--match" {
            module = arg.to_string();
            out.extend(module_stmts(arg, &words[(i + 1).min(words.len())..]));
        }
        if opt == "-j" || opt == "-g" || opt == "--jump" || opt == "--goto" {
            // Target options follow the target name.
            out.push(target(opt, arg, &words[(i + 1).min(words.len())..], chains));
            return out;
        }
        out.extend(stmts);
        i += used;
        negate = false;
    }
    out
}

/// One match option: its statements and how many argument words it used.
fn option(opt: &str, arg: &str, arg2: Option<&str>, module: &str, neg: bool, v6: bool) -> (Vec<Stmt>, usize) {
    let undecided = |what: String| (vec![Stmt::Undecided(what)], 1);
    let matched = |field: Field, set: Result<Tuples, String>| match set {
        Ok(set) => (vec![one(field, neg, set)], 1),
        Err(why) => undecided(format!("{opt} {why}")),
    };
    match opt {
        "-p" | "--protocol" if arg == "all" || arg == "0" => {
            (if neg { vec![one(Field::L4proto, false, Vec::new())] } else { Vec::new() }, 1)
        }
        "-p" | "--protocol" => matched(Field::L4proto, list(Field::L4proto, arg)),
        "-s" | "--source" | "--src-range" => matched(Field::Saddr, list(Field::Saddr, arg)),
        "-d" | "--destination" | "--dst-range" => matched(Field::Daddr, list(Field::Daddr, arg)),
        "-i" | "--in-interface" => matched(Field::Iifname, list(Field::Iifname, arg)),
        "-o" | "--out-interface" => matched(Field::Oifname, list(Field::Oifname, arg)),
        "-m" | "--match" => (Vec::new(), 1),
        "--dport" | "--destination-port" | "--dports" | "--destination-ports" => {
            matched(Field::Dport, list(Field::Dport, arg))
        }
        "--sport" | "--source-port" | "--sports" | "--source-ports" => {
            matched(Field::Sport, list(Field::Sport, arg))
        }
        "--syn" => (vec![tcp_flags(0x17, 0x02, neg)], 0),
        "--tcp-flags" => {
            match (flag_bits(Field::TcpFlags, arg), arg2.and_then(|c| flag_bits(Field::TcpFlags, c))) {
                (Some(mask), Some(comp)) => (vec![tcp_flags(mask, comp, neg)], 2),
                _ => (vec![Stmt::Undecided(format!("--tcp-flags {arg}"))], 2),
            }
        }
        "--ctstate" | "--state" => match flag_bits(Field::CtState, arg) {
            Some(bits) => (
                vec![Stmt::Match {
                    key: Key::Masked(Field::CtState, bits),
                    negate: !neg,
                    set: vec![vec![Elem::Range(0, 0)]],
                }],
                1,
            ),
            None => undecided(format!("{opt} {arg}")),
        },
        "--ctstatus" => match flag_bits(Field::CtStatus, &arg.to_ascii_lowercase()) {
            Some(bits) => (
                vec![Stmt::Match {
                    key: Key::Masked(Field::CtStatus, bits),
                    negate: !neg,
                    set: vec![vec![Elem::Range(0, 0)]],
                }],
                1,
            ),
            None => undecided(format!("--ctstatus {arg}")),
        },
        "--dst-type" => matched(Field::DaddrType, list(Field::DaddrType, arg)),
        // An outside sender's address is a unicast one, never the host's own.
        "--src-type" => {
            let unicast = arg.split(',').any(|t| t.eq_ignore_ascii_case("UNICAST"));
            (if unicast != neg { Vec::new() } else { vec![one(Field::Nfproto, false, Vec::new())] }, 1)
        }
        "--limit-iface-in" | "--limit-iface-out" => (Vec::new(), 0),
        "--mark" => {
            let field = if module == "connmark" { Field::CtMark } else { Field::Mark };
            mark_match(field, arg, neg)
        }
        "--pkt-type" => matched(Field::Pkttype, list(Field::Pkttype, arg)),
        "--comment" | "--limit" | "--limit-burst" | "--set" | "--remove" | "--name" | "--rsource"
        | "--rdest" | "--seconds" | "--hitcount" | "--mask" | "--reap" | "--rttl" => {
            (Vec::new(), usize::from(takes_arg(opt)))
        }
        o if o.starts_with("--hashlimit") => (Vec::new(), 1),
        "--rcheck" | "--update" => {
            (vec![Stmt::Undecided(format!("recent {opt}: a list filled by packets"))], 0)
        }
        "--match-set" => (vec![Stmt::Undecided(format!("ipset {arg}"))], 2),
        "--invert" | "--loose" | "--validmark" | "--accept-local" => (Vec::new(), 0),
        "--icmp-type" | "--icmpv6-type" => (vec![Stmt::Either(format!("{opt} {arg}"))], 1),
        _ if v6 && opt == "-f" => (vec![Stmt::Either("fragment".into())], 0),
        "-f" | "--fragment" => (vec![Stmt::Either("fragment".into())], 0),
        other => (
            vec![Stmt::Undecided(format!("option {other} of -m {module}"))],
            usize::from(!arg.starts_with('-')),
        ),
    }
}

fn takes_arg(opt: &str) -> bool {
    !matches!(opt, "--set" | "--remove" | "--rsource" | "--rdest" | "--reap" | "--rttl")
}

/// Modules whose matches are the sender's choice of header contents.
const SENDER_CHOICE: &[&str] = &[
    "length",
    "ttl",
    "hl",
    "tos",
    "dscp",
    "ecn",
    "u32",
    "string",
    "tcpmss",
    "frag",
    "ipv6header",
    "rt",
    "hbh",
    "dst",
    "statistic",
    "mh",
    "ah",
    "esp",
    "time",
];

/// Modules whose meaning lies wholly in options [`option`] reads.
const BY_OPTIONS: &[&str] = &[
    "addrtype",
    "conntrack",
    "state",
    "tcp",
    "udp",
    "multiport",
    "comment",
    "limit",
    "hashlimit",
    "recent",
    "set",
    "mark",
    "connmark",
    "pkttype",
    "iprange",
    "icmp",
    "icmp6",
    "icmpv6",
    "sctp",
    "dccp",
    "udplite",
];

/// What `-m NAME` itself means before its options; `rest` are the words after it.
fn module_stmts(name: &str, rest: &[String]) -> Vec<Stmt> {
    if SENDER_CHOICE.contains(&name) {
        return vec![Stmt::Either(format!("-m {name}"))];
    }
    if name == "rpfilter" {
        // The reverse path lookup succeeds for an honest outside sender.
        let options = rest.iter().take_while(|w| *w != "-m" && *w != "-j" && *w != "-g");
        let found = if options.into_iter().any(|w| w == "--invert") { 0 } else { 1 };
        return vec![one(Field::RpfFound, false, vec![vec![Elem::Range(found, found)]])];
    }
    if BY_OPTIONS.contains(&name) {
        return Vec::new();
    }
    vec![Stmt::Undecided(format!("-m {name}"))]
}

fn tcp_flags(mask: u128, comp: u128, neg: bool) -> Stmt {
    Stmt::Match {
        key: Key::Masked(Field::TcpFlags, mask),
        negate: neg,
        set: vec![vec![Elem::Range(comp, comp)]],
    }
}

fn mark_match(field: Field, arg: &str, neg: bool) -> (Vec<Stmt>, usize) {
    let num = |s: &str| values::scalar(Field::Mark, s);
    let parsed = match arg.split_once('/') {
        Some((v, m)) => num(v).zip(num(m)),
        None => num(arg).map(|v| (v, u128::from(u32::MAX))),
    };
    match parsed {
        Some((v, m)) => (
            vec![Stmt::Match { key: Key::Masked(field, m), negate: neg, set: vec![vec![Elem::Range(v, v)]] }],
            1,
        ),
        None => (vec![Stmt::Undecided(format!("--mark {arg}"))], 1),
    }
}

/// The `-j`/`-g` target with its options.
fn target(opt: &str, name: &str, opts: &[String], chains: &[&str]) -> Stmt {
    let value =
        |key: &str| opts.iter().position(|w| w == key).and_then(|i| opts.get(i + 1)).map(String::as_str);
    let goto = opt == "-g" || opt == "--goto";
    if chains.contains(&name) {
        return Stmt::Verdict(if goto { Verdict::Goto(name.into()) } else { Verdict::Jump(name.into()) });
    }
    match name {
        "ACCEPT" => Stmt::Verdict(Verdict::Accept),
        "DROP" => Stmt::Verdict(Verdict::Drop),
        "REJECT" => Stmt::Verdict(Verdict::Reject),
        "RETURN" => Stmt::Verdict(Verdict::Return),
        "LOG" | "NFLOG" | "ULOG" | "TCPMSS" | "CHECKSUM" | "AUDIT" | "TRACE" | "SNAT" | "MASQUERADE"
        | "SECMARK" | "CONNSECMARK" | "TOS" | "DSCP" | "TTL" | "HL" | "ECN" | "CLASSIFY" | "IDLETIMER"
        | "LED" | "RATEEST" | "TEE" | "NETMAP" => Stmt::Nothing,
        "CT" if opts.iter().any(|w| w == "--notrack") => Stmt::Notrack,
        "CT" => Stmt::Nothing,
        "NOTRACK" => Stmt::Notrack,
        "MARK" | "CONNMARK" => mark_target(name == "CONNMARK", opts),
        "DNAT" => match value("--to-destination").map(dnat_target) {
            Some(Some(d)) => Stmt::Dnat(d),
            _ => Stmt::Unknown(format!("DNAT {}", opts.join(" "))),
        },
        "REDIRECT" => match value("--to-ports").map(|p| p.parse::<u16>()) {
            Some(Ok(p)) => Stmt::Dnat(Dnat { addr: None, port: Some(p) }),
            None => Stmt::Dnat(Dnat { addr: None, port: None }),
            Some(Err(_)) => Stmt::Unknown(format!("REDIRECT {}", opts.join(" "))),
        },
        other => Stmt::Unknown(format!("target {other}")),
    }
}

fn mark_target(ct: bool, opts: &[String]) -> Stmt {
    let first = opts.first().map(String::as_str).unwrap_or("");
    let arg = opts.get(1).map(String::as_str).unwrap_or("");
    let num = |s: &str| values::scalar(Field::Mark, s).and_then(|v| u32::try_from(v).ok());
    let (v, m) = match arg.split_once('/') {
        Some((v, m)) => (num(v), num(m)),
        None => (num(arg), Some(u32::MAX)),
    };
    match (first, v, m) {
        ("--restore-mark", ..) if ct => Stmt::RestoreMark,
        ("--set-xmark" | "--set-mark", Some(value), Some(mask)) => Stmt::SetMark { ct, value, mask },
        _ => Stmt::Unknown(format!("{} {}", if ct { "CONNMARK" } else { "MARK" }, opts.join(" "))),
    }
}

/// `--to-destination 172.17.0.2:80`, `[fd00::2]:80`, or an address alone.
fn dnat_target(text: &str) -> Option<Dnat> {
    let (addr, port) = if let Some(rest) = text.strip_prefix('[') {
        let (a, p) = rest.split_once(']')?;
        (a, p.strip_prefix(':'))
    } else if text.matches(':').count() == 1 {
        let (a, p) = text.split_once(':')?;
        (a, Some(p))
    } else {
        (text, None)
    };
    if addr.contains('-') || port.is_some_and(|p| p.contains('-')) {
        return None; // a range: which one is used is not known
    }
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    let addr = if addr.is_empty() { None } else { Some(values::address(addr)?) };
    Some(Dnat { addr, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_split_like_the_shell() {
        let w = split_words(r#"-A INPUT -m comment --comment "a \"b\" c" -j ACCEPT"#).unwrap();
        assert_eq!(w, vec!["-A", "INPUT", "-m", "comment", "--comment", "a \"b\" c", "-j", "ACCEPT"]);
        assert!(split_words("-A INPUT \"open").is_err());
    }

    #[test]
    fn chains_hook_in_where_the_kernel_puts_them() {
        let text =
            "*filter\n:INPUT DROP [0:0]\n:ALLOW - [0:0]\n-A INPUT -j ALLOW\n-A ALLOW -j ACCEPT\nCOMMIT\n";
        let t = parse(text, false, Origin::IptablesLegacy, "iptables-legacy-save").unwrap();
        let input = &t[0].chains[0];
        assert_eq!(input.base, Some(Base { hook: Hook::Input, prio: 0, nat: false, policy_drop: true }));
        assert_eq!(input.rules[0].stmts, vec![Stmt::Verdict(Verdict::Jump("ALLOW".into()))]);
        assert_eq!(t[0].chains[1].base, None);
        let bad = parse("-A INPUT -j ACCEPT\n", false, Origin::IptablesLegacy, "iptables-save").unwrap_err();
        assert_eq!(bad.line, Some(1));
        assert_eq!(bad.input, Some(crate::collect::Input::Command("iptables-save".into())));
        assert_eq!(bad.to_string(), "iptables-save output line 1: a chain or rule before any `*table` line");
    }

    #[test]
    fn a_recorded_save_that_cannot_be_read_names_the_program_and_line() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/firewall/iptables_save_drop.txt");
        let recorded = std::fs::read_to_string(fixture).unwrap();
        let program = Some(crate::collect::Input::Command("iptables-legacy-save".into()));
        // The `*filter` line lost: the chain declared after it has no table.
        let lost = recorded.replacen("*filter\n", "", 1);
        let e = parse(&lost, false, Origin::IptablesLegacy, "iptables-legacy-save").unwrap_err();
        assert_eq!((&e.input, e.line), (&program, Some(2)));
        assert_eq!(e.reason, "a chain or rule before any `*table` line");
        // A rule with an unclosed quote, on the sixth line.
        let open = recorded.replacen("-A INPUT -i lo -j ACCEPT", "-A INPUT -m comment --comment \"open", 1);
        let e = parse(&open, false, Origin::IptablesLegacy, "iptables-legacy-save").unwrap_err();
        assert_eq!((&e.input, e.line, e.reason.as_str()), (&program, Some(6), "an unclosed quote"));
        assert_eq!(e.to_string(), "iptables-legacy-save output line 6: an unclosed quote");
    }

    #[test]
    fn docker_style_dnat_and_unknown_modules_are_read() {
        let r = rule(
            &split_words("! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80")
                .unwrap(),
            false,
            &[],
        );
        assert!(matches!(&r[0], Stmt::Match { key: Key::Field(Field::Iifname), negate: true, .. }));
        assert_eq!(r.last(), Some(&Stmt::Dnat(Dnat { addr: Some(0xac11_0002), port: Some(80) })));
        let u = rule(&split_words("-m geoip --src-cc CN -j ACCEPT").unwrap(), false, &[]);
        assert!(matches!(&u[0], Stmt::Undecided(w) if w.contains("geoip")));
        assert_eq!(
            dnat_target("[fd00::2]:80"),
            Some(Dnat { addr: values::address("fd00::2"), port: Some(80) })
        );
    }
}
