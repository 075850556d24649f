//! What a host's firewall lets in, in one shape for every OS: the new
//! inbound connections it accepts from outside, each an [`Exposure`]
//! (protocol, destination ports, from where, through which interface or
//! program), and the one rule that turns them into a status, [`judge`].
//!
//! A host filters inbound traffic when what it accepts is a set of specific
//! services. An exposure of more than [`MAX_SERVICE_PORTS`] ports that is not
//! limited to one program is no specific service: the host accepts inbound
//! traffic by default, whatever its default policy says (a drop policy
//! behind `tcp dport 0-65535 accept` filters nothing). Which specific
//! services are acceptable is the organisation's policy
//! (`firewall_allowed_inbound` on the server), not the agent's.
//!
//! An exposure is `certain` when every packet of it is accepted whatever
//! the expressions the evaluator does not understand decide; otherwise it
//! is only possible, and `because` names the expression.

use serde_json::{Value, json};

use super::intervals::{IntervalSet, PORT_MAX};

/// Largest number of destination ports one exposure may cover and still
/// count as a specific service (per protocol, family and source). Above it
/// the host takes inbound connections by default. 1024 admits the port
/// ranges real services publish (passive FTP, mosh: about 1000 ports) and
/// nothing near the port space (a range `1024-65535` is 64512 ports).
pub const MAX_SERVICE_PORTS: u128 = 1024;

/// Services listed for a broad exposure.
pub const MAX_LISTED_BROAD: usize = 16;

/// Address family an exposure is reachable over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Ipv4,
    Ipv6,
    /// Both (a Windows rule, a pf rule without `inet`/`inet6`).
    Any,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
            Family::Any => "any",
        }
    }
}

/// One kind of new inbound connection the host accepts from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    pub family: Family,
    /// `tcp`, `udp`, or `any` (every protocol, ports then mean nothing).
    pub proto: String,
    /// Destination ports (full when any).
    pub ports: IntervalSet,
    /// Source addresses (prefixes, ranges or names such as `LocalSubnet`);
    /// `None` from any address.
    pub from: Option<Vec<String>>,
    /// Interfaces (Linux, pf) or profiles (Windows); `None` on any.
    pub via: Option<Vec<String>>,
    /// The one program the connection must be for; `None` for any program.
    pub program: Option<String>,
    /// Further limits or effects: `source port 53`, `to 224.0.0.251`,
    /// `forwarded to 172.17.0.2:80`.
    pub qualifiers: Vec<String>,
    /// Whether every packet of it is accepted (see the module doc).
    pub certain: bool,
    /// The rule that accepts it, or the expression that makes it uncertain.
    pub because: String,
}

impl Exposure {
    /// An exposure of `ports` over `family` and `proto` from anywhere,
    /// certain, for the rule `because`; narrow it with the fields.
    pub fn new(family: Family, proto: &str, ports: IntervalSet, because: impl Into<String>) -> Self {
        Exposure {
            family,
            proto: proto.to_string(),
            ports,
            from: None,
            via: None,
            program: None,
            qualifiers: Vec::new(),
            certain: true,
            because: because.into(),
        }
    }

    /// Every port of every protocol.
    pub fn everything(family: Family, because: impl Into<String>) -> Self {
        Self::new(family, "any", IntervalSet::full(PORT_MAX), because)
    }

    /// How many destination ports it covers (every port for `any` protocol).
    pub fn port_count(&self) -> u128 {
        if self.proto == "any" { PORT_MAX + 1 } else { self.ports.count() }
    }

    /// Not a specific service: more than [`MAX_SERVICE_PORTS`] ports for any program.
    pub fn is_broad(&self) -> bool {
        self.program.is_none() && self.port_count() > MAX_SERVICE_PORTS
    }

    /// `tcp/22`, `udp/60000-61000`, `tcp/any`, `any/any`: what a policy allows.
    pub fn service(&self) -> String {
        if self.proto == "any" {
            return "any/any".into();
        }
        format!("{}/{}", self.proto, self.ports.port_text())
    }

    /// Each contiguous port range as its own service (`tcp/22`, `tcp/80-81`),
    /// what a policy's list of allowed services is held against. Written
    /// out in full up to [`MAX_SERVICE_PORTS`] ports; a broad exposure lists
    /// its first [`MAX_LISTED_BROAD`] only (it fails whatever they are).
    pub fn services(&self) -> Vec<String> {
        if self.proto == "any" || self.ports.is_full() {
            return vec![self.service()];
        }
        let limit = if self.is_broad() { MAX_LISTED_BROAD } else { usize::MAX };
        self.ports
            .ranges()
            .iter()
            .take(limit)
            .map(
                |(lo, hi)| {
                    if lo == hi {
                        format!("{}/{lo}", self.proto)
                    } else {
                        format!("{}/{lo}-{hi}", self.proto)
                    }
                },
            )
            .collect()
    }

    /// One line: `ipv4 tcp/22 from any`, with interfaces, program and qualifiers.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {} from {}", self.family.as_str(), self.service(), self.source_text());
        if let Some(v) = &self.via {
            s.push_str(&format!(" via {}", v.join(",")));
        }
        if let Some(p) = &self.program {
            s.push_str(&format!(" for program {p}"));
        }
        for q in &self.qualifiers {
            s.push_str(&format!(" {q}"));
        }
        if !self.certain {
            s.push_str(" (possibly)");
        }
        s
    }

    fn source_text(&self) -> String {
        self.from.as_ref().map_or_else(|| "any".to_string(), |f| f.join(","))
    }

    /// The fact form, one object per exposure.
    pub fn to_json(&self) -> Value {
        json!({
            "family": self.family.as_str(),
            "proto": self.proto,
            "ports": if self.proto == "any" { "any".to_string() } else { self.ports.port_text() },
            "port_count": u64::try_from(self.port_count()).unwrap_or(u64::MAX),
            "service": self.service(),
            "services": self.services(),
            "from": self.source_text(),
            "from_any": self.from.is_none(),
            "via": self.via.as_ref().map_or_else(|| "any".to_string(), |v| v.join(",")),
            "program": self.program.clone().unwrap_or_else(|| "any".into()),
            "also": self.qualifiers.join("; "),
            "certain": self.certain,
            "because": self.because,
        })
    }
}

/// The status the exposures give.
#[derive(Debug, PartialEq)]
pub enum Judgement<'a> {
    /// Some certain exposure is broad: inbound traffic is accepted by default.
    Open(Vec<&'a Exposure>),
    /// No certain broad exposure, but a possible one.
    Unclear(Vec<&'a Exposure>),
    /// Only specific services (possibly none) are reachable.
    Filtered,
}

/// Judges a host by what it accepts (see the module doc).
pub fn judge(exposures: &[Exposure]) -> Judgement<'_> {
    let broad: Vec<&Exposure> = exposures.iter().filter(|e| e.is_broad()).collect();
    let certain: Vec<&Exposure> = broad.iter().copied().filter(|e| e.certain).collect();
    if !certain.is_empty() {
        Judgement::Open(certain)
    } else if !broad.is_empty() {
        Judgement::Unclear(broad)
    } else {
        Judgement::Filtered
    }
}

/// [`list_text`] with the first entry naming its rule.
pub fn list_with_rule(exposures: &[&Exposure], limit: usize) -> String {
    match exposures.first() {
        Some(first) => list_text(exposures, limit).replacen(
            &first.describe(),
            &format!("{} ({})", first.describe(), first.because),
            1,
        ),
        None => list_text(exposures, limit),
    }
}

/// `ipv4 tcp/22 from any; ...` for a reason, at most `limit` entries.
pub fn list_text(exposures: &[&Exposure], limit: usize) -> String {
    if exposures.is_empty() {
        return "nothing".into();
    }
    let mut parts: Vec<String> = exposures.iter().take(limit).map(|e| e.describe()).collect();
    if exposures.len() > limit {
        parts.push(format!("and {} more", exposures.len() - limit));
    }
    parts.join("; ")
}

/// The `exposed` fact.
pub fn to_facts(exposures: &[Exposure]) -> Value {
    Value::Array(exposures.iter().map(Exposure::to_json).collect())
}

/// Most exposures kept in the `exposed` fact (broad ones first), so a host
/// with hundreds of rules cannot push the record past its size limit;
/// `exposed_total` says how many there were.
pub const MAX_EXPOSED_FACTS: usize = 200;

/// The `exposed` fact: broad exposures first, at most [`MAX_EXPOSED_FACTS`].
pub fn capped_facts(exposures: &[Exposure]) -> Value {
    let mut shown: Vec<Exposure> = exposures.iter().filter(|e| e.is_broad()).cloned().collect();
    shown.extend(exposures.iter().filter(|e| !e.is_broad()).cloned());
    shown.truncate(MAX_EXPOSED_FACTS);
    to_facts(&shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(r: &[(u128, u128)]) -> IntervalSet {
        IntervalSet::from_ranges(PORT_MAX, r.iter().copied())
    }

    #[test]
    fn a_specific_service_filters_and_the_port_space_does_not() {
        let ssh = Exposure::new(Family::Ipv4, "tcp", ports(&[(22, 22)]), "rule 3");
        assert_eq!(judge(std::slice::from_ref(&ssh)), Judgement::Filtered);
        assert_eq!(ssh.service(), "tcp/22");
        let all = Exposure::new(Family::Ipv4, "tcp", ports(&[(0, 65535)]), "rule 1");
        assert_eq!(all.service(), "tcp/any");
        assert!(matches!(judge(&[ssh.clone(), all]), Judgement::Open(v) if v.len() == 1));
        let high = Exposure::new(Family::Ipv6, "udp", ports(&[(1024, 65535)]), "rule 2");
        assert!(high.is_broad());
        let mosh = Exposure::new(Family::Ipv6, "udp", ports(&[(60000, 61000)]), "rule 2");
        assert!(!mosh.is_broad());
    }

    #[test]
    fn a_possible_broad_exposure_is_unclear_and_a_program_scoped_one_is_specific() {
        let mut maybe = Exposure::everything(Family::Any, "unknown expression");
        maybe.certain = false;
        assert!(matches!(judge(std::slice::from_ref(&maybe)), Judgement::Unclear(_)));
        let mut app = Exposure::everything(Family::Any, "rule \"App\"");
        app.program = Some("C:\\app.exe".into());
        assert_eq!(judge(&[app]), Judgement::Filtered);
        let j = maybe.to_json();
        assert_eq!(j["port_count"], 65536);
        assert_eq!(j["service"], "any/any");
        assert_eq!(j["from_any"], true);
    }
}
