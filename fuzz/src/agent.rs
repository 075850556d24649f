//! Fuzz targets for the agent's parsers with the richest grammars:
//! netfilter rulesets, `sshd -T`, PAM stacks and lsblk, each through its
//! collector's pure gather or evaluate function on a fake host.

use super::*;

/// `firewall::linux::evaluate` on what the host printed: parts are `nft -j
/// list ruleset`, `nft --debug=netlink list ruleset`, `iptables-nft-save`,
/// `ip6tables-nft-save`, `iptables-legacy-save`, `ip6tables-legacy-save`,
/// `ip -4 -j route show table all`, `ip -6 ...`. That runs
/// `netfilter::nft_json::parse` (corrected by `nft_bytecode::parse`),
/// `iptables::parse`, `routes::read` and the evaluator. Asserts: the nft
/// reader goes by the JSON's meaning (re-formatted, the ruleset is the
/// same); the finding is a sound record.
pub fn firewall_linux(data: &[u8]) {
    use custos_agent::collect::firewall::linux::{Observed, evaluate};
    use custos_agent::collect::firewall::netfilter::{nft_bytecode, nft_json};
    let p = parts(data, 8);
    if let Some(nft) = &p[0] {
        let code = p[1].as_deref().map(nft_bytecode::parse);
        let parsed = nft_json::parse(nft, code.as_ref());
        if let Some(pretty) = reformatted(nft) {
            assert_same(&nft_json::parse(&pretty, code.as_ref()), &parsed, "formatting changed the ruleset");
        }
    }
    let o = Observed {
        nft: p[0].clone().map(Ok),
        nft_bytecode: p[1].clone(),
        nft_save_v4: p[2].clone(),
        nft_save_v6: p[3].clone(),
        legacy_v4: p[4].clone().map(Ok),
        legacy_v6: p[5].clone().map(Ok),
        routes_v4: p[6].clone(),
        routes_v6: p[7].clone(),
        ipv6_enabled: true,
        forwarding_v4: true,
        forwarding_v6: true,
        ufw: None,
        firewalld: None,
    };
    check_finding("firewall", data.len(), evaluate(&o));
}

// ---- agent: ssh_server -------------------------------------------------------------

/// `ssh_server::linux::gather` on a host whose parts are: `sshd -T`'s
/// output, `/etc/ssh/sshd_config`, `sshd -T -C ...`'s output (for every
/// `Match` block), any other file under `/etc/ssh` (what `Include` names),
/// `pgrep -a -x sshd`, `getent group`, `getent passwd`. That runs
/// `parse_sshd_t`, `evaluate_sshd_t`, `matches::directives`,
/// `matches::spec_for` and the block verdicts. Asserts: `parse_sshd_t` and
/// `directives` read their own rendering back the same; a connection built
/// for a block is one `sshd -C` reads back field by field; the finding is a
/// sound record.
pub fn sshd_config(data: &[u8]) {
    use custos_agent::collect::ssh_server::matches::{Directive, directives, spec_for};
    use custos_agent::collect::ssh_server::{linux, parse_sshd_t};
    let p = parts(data, 7);
    if let Some(t) = &p[0] {
        let cfg = parse_sshd_t(t);
        let rendered: String =
            cfg.iter().flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k} {v}\n"))).collect();
        assert_eq!(parse_sshd_t(&rendered), cfg, "sshd -T rendering reads back differently");
    }
    for text in [&p[1], &p[3]].into_iter().flatten() {
        let ds = directives(text);
        let rendered: String = ds
            .iter()
            .map(|d| match d {
                Directive::Include(ps) => format!("Include {}\n", ps.join(" ")),
                Directive::Match(c) => format!("Match {c}\n"),
            })
            .collect();
        assert_eq!(directives(&rendered), ds, "directives rendering reads back differently");
        for d in &ds {
            let Directive::Match(criteria) = d else { continue };
            if let Ok(spec) = spec_for(criteria, &|g: &str| Some(format!("{g}-member"))) {
                let arg = spec.arg();
                let mut back: BTreeMap<&str, &str> = BTreeMap::new();
                for field in arg.split(',').filter(|f| !f.is_empty()) {
                    let (k, v) =
                        field.split_once('=').unwrap_or_else(|| panic!("{arg}: {field} has no value"));
                    assert!(back.insert(k, v).is_none(), "{arg}: {k} twice");
                }
                let want = [
                    ("user", &spec.user),
                    ("host", &spec.host),
                    ("addr", &spec.addr),
                    ("laddr", &spec.laddr),
                    ("lport", &spec.lport),
                    ("rdomain", &spec.rdomain),
                ];
                for (k, v) in want {
                    assert_eq!(back.get(k).copied(), v.as_deref(), "`Match {criteria}` -> -C {arg}: {k}");
                }
            }
        }
    }
    let host = FuzzHost {
        parts: p,
        run: |p, program, args| match (program, args) {
            ("/usr/sbin/sshd", a) if a.contains(&"-C") => part(p, 2),
            ("/usr/sbin/sshd", _) => part(p, 0),
            ("pgrep", _) => part(p, 4),
            ("systemctl", ["is-enabled", "ssh"]) => Some("enabled\n".into()),
            ("systemctl", ["is-active", "ssh"]) => Some("active\n".into()),
            ("getent", ["group", ..]) => part(p, 5),
            ("getent", ["passwd"]) => part(p, 6),
            _ => None,
        },
        file: |p, path| match path {
            "/etc/ssh/sshd_config" => part(p, 1),
            _ if path.starts_with("/etc/ssh/") || path.starts_with("/etc/ssh.d/") => part(p, 3),
            _ => None,
        },
        dir: |p, path| (path.starts_with("/etc/ssh") && p[3].is_some()).then(|| vec!["50-fuzz.conf".into()]),
    };
    let finding = linux::gather(&host, &Context::at(1_767_225_600));
    check_finding("ssh_server", data.len(), finding);
}

// ---- agent: password_policy (PAM) --------------------------------------------------

/// `password_policy::linux::gather` on a host whose parts are
/// `/etc/pam.d/common-auth`, `common-password`, `sshd`, any other file of
/// `/etc/pam.d` (what `@include`, `include` and `substack` name),
/// `/etc/security/pwquality.conf`, `faillock.conf`, `/etc/login.defs`.
/// That runs `expand_includes`, `parse_pam`, `min_length`, `lockout`
/// (with `pam_auth::locks`, the dispatcher run in every world). Asserts:
/// `parse_pam` reads its own rendering back the same; the finding is a
/// sound record.
pub fn pam_stack(data: &[u8]) {
    use custos_agent::collect::password_policy::linux::{gather, parse_pam};
    let p = parts(data, 7);
    for text in p.iter().take(4).flatten() {
        let rules = parse_pam(text);
        // A lone `-` is no type (libpam skips the line); it reads as type "".
        if rules.iter().any(|r| r.kind.is_empty()) {
            continue;
        }
        let rendered: String = rules
            .iter()
            .map(|r| format!("{} {} {} {}\n", r.kind, r.control, r.module, r.args.join(" ")))
            .collect();
        assert_eq!(parse_pam(&rendered), rules, "PAM rendering reads back differently:\n{rendered}");
    }
    const SERVICES: &[&str] =
        &["system-auth", "password-auth", "login", "su", "sudo", "passwd", "gdm-password", "lightdm", "sddm"];
    let host = FuzzHost {
        parts: p,
        run: |_, _, _| None,
        file: |p, path| match path {
            "/etc/pam.d/common-auth" => part(p, 0),
            "/etc/pam.d/common-password" => part(p, 1),
            "/etc/pam.d/sshd" => part(p, 2),
            "/etc/security/pwquality.conf" => part(p, 4),
            "/etc/security/faillock.conf" => part(p, 5),
            "/etc/login.defs" => part(p, 6),
            _ => match path.strip_prefix("/etc/pam.d/") {
                Some(name) if !SERVICES.contains(&name) => part(p, 3),
                _ => None,
            },
        },
        dir: |_, _| None,
    };
    check_finding("password_policy", data.len(), gather(&host, &Context::at(1_767_225_600)));
}

// ---- agent: disk_encryption (lsblk) ------------------------------------------------

/// `disk_encryption::linux::gather` on a host whose parts are `lsblk -J`'s
/// output, `/proc/mounts`, `/proc/swaps`, lines `dm-N UUID` (the
/// device-mapper uuids of `/sys/block`), and `cryptsetup luksDump`'s output
/// (for every device). That runs `parse_lsblk`, `parse_mounts`,
/// `parse_swaps` and `parse_luks_dump`. Asserts: `parse_lsblk` goes by the
/// JSON's meaning; every device's chain starts with itself; a pass has
/// found no volume unencrypted; the finding is a sound record.
pub fn lsblk(data: &[u8]) {
    use custos_agent::collect::disk_encryption::linux::{gather, parse_lsblk};
    let p = parts(data, 5);
    if let Some(t) = &p[0] {
        let devices = parse_lsblk(t);
        if let Some(pretty) = reformatted(t) {
            assert_same(&parse_lsblk(&pretty), &devices, "formatting changed the devices");
        }
        for d in devices.iter().flatten() {
            assert_eq!(d.chain.first(), Some(&d.kname), "{d:?}");
            assert!(!d.encrypted || d.kind == "crypt" || d.chain.len() > 1, "{d:?}");
        }
    }
    let host = FuzzHost {
        parts: p,
        run: |p, program, _| match program {
            "lsblk" => part(p, 0),
            "cryptsetup" => part(p, 4),
            _ => None,
        },
        file: |p, path| match path {
            "/proc/mounts" => part(p, 1),
            "/proc/swaps" => part(p, 2),
            _ => {
                let name = path.strip_prefix("/sys/block/")?.strip_suffix("/dm/uuid")?;
                part(p, 3)?.lines().find_map(|l| {
                    let (n, uuid) = l.split_once(' ')?;
                    (n == name).then(|| uuid.to_string())
                })
            }
        },
        dir: |p, path| {
            (path == "/sys/block").then(|| {
                part(p, 3)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.split(' ').next().map(str::to_string))
                    .collect()
            })
        },
    };
    let finding = gather(&host, &Context::at(1_767_225_600));
    if finding.status == CheckStatus::Pass {
        let volumes = finding.facts.get("volumes").and_then(Value::as_array).cloned().unwrap_or_default();
        assert!(
            volumes.iter().all(|v| v.get("encrypted") != Some(&Value::Bool(false))),
            "pass with an unencrypted volume: {finding:?}"
        );
    }
    check_finding("disk_encryption", data.len(), finding);
}
