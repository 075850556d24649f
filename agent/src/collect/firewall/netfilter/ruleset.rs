//! The netfilter ruleset as the evaluator sees it: tables of chains of
//! rules, each rule a list of statements, read from `nft -j list ruleset`
//! ([`super::nft_json`]) or from `iptables-save` ([`super::iptables`]) into
//! one form, so nftables, iptables-nft and legacy x_tables rules are judged
//! by the same semantics ([`super::interpret`]).
//!
//! Matches are normalised to "a key's value is (not) in a set": `tcp dport
//! != 22`, `-p tcp -m multiport --dports 80,443`, `ip saddr @allowed` all
//! become [`Stmt::Match`]. What the reader does not understand becomes
//! [`Stmt::Undecided`] (a match) or [`Stmt::Unknown`] (a statement) naming
//! the expression, never a guess.

/// Which kernel subsystem holds the rules: the name the agent reports as
/// the firewall backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// nf_tables (nft, iptables-nft, ufw, firewalld, Docker on current systems).
    Nftables,
    /// Legacy x_tables, read with `iptables-legacy-save`.
    IptablesLegacy,
}

impl Origin {
    pub fn backend(self) -> &'static str {
        match self {
            Origin::Nftables => "nftables",
            Origin::IptablesLegacy => "iptables-legacy",
        }
    }
}

/// Packet families a table sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFamily {
    Ip,
    Ip6,
    Inet,
    /// `bridge`, `arp`, `netdev`: not on the IP input path judged here.
    Other,
}

impl TableFamily {
    pub fn parse(s: &str) -> TableFamily {
        match s {
            "ip" => TableFamily::Ip,
            "ip6" => TableFamily::Ip6,
            "inet" => TableFamily::Inet,
            _ => TableFamily::Other,
        }
    }

    pub fn sees(self, v6: bool) -> bool {
        match self {
            TableFamily::Ip => !v6,
            TableFamily::Ip6 => v6,
            TableFamily::Inet => true,
            TableFamily::Other => false,
        }
    }

    pub fn as_str(self, origin: Origin) -> &'static str {
        match (self, origin) {
            (TableFamily::Ip, Origin::IptablesLegacy) => "ipv4",
            (TableFamily::Ip6, Origin::IptablesLegacy) => "ipv6",
            (TableFamily::Ip, _) => "ip",
            (TableFamily::Ip6, _) => "ip6",
            (TableFamily::Inet, _) => "inet",
            (TableFamily::Other, _) => "other",
        }
    }
}

/// The netfilter hooks on the way of an inbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    /// Output, postrouting, ingress, egress: not judged.
    Other,
}

impl Hook {
    pub fn parse(s: &str) -> Hook {
        match s {
            "prerouting" => Hook::Prerouting,
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            _ => Hook::Other,
        }
    }
}

/// What a base chain hooks in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub hook: Hook,
    pub prio: i64,
    /// `nat` chains see only the first packet of a connection and bind NAT.
    pub nat: bool,
    /// Whether the policy is drop (what reaches the end of the chain).
    pub policy_drop: bool,
}

/// A packet field a match reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// 2 IPv4, 10 IPv6 (`meta nfproto`).
    Nfproto,
    /// `meta l4proto`, `ip protocol`, `ip6 nexthdr`, `-p`.
    L4proto,
    Saddr,
    Daddr,
    Sport,
    Dport,
    Iifname,
    Oifname,
    /// ARPHRD numbers: 1 ether, 772 loopback.
    Iiftype,
    /// Conntrack state bits: invalid 1, established 2, related 4, new 8, untracked 64.
    CtState,
    /// Conntrack status bits (`ct status dnat` ...): 0 for a new, untouched connection.
    CtStatus,
    Mark,
    CtMark,
    /// 0 host, 1 broadcast, 2 multicast.
    Pkttype,
    /// The route type of the destination (`fib daddr type`, `-m addrtype
    /// --dst-type`): 1 unicast, 2 local, 3 broadcast, 5 multicast.
    DaddrType,
    /// Whether the reverse path lookup finds a route (`fib saddr . iif oif`,
    /// `-m rpfilter`): 1 found, 0 missing.
    RpfFound,
    /// TCP flags of the packet (a SYN for a new connection).
    TcpFlags,
}

/// One element of a set: a range of numbers or an interface name pattern
/// (a trailing `*` matches any suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elem {
    Range(u128, u128),
    Name(String),
}

/// What a match reads: one field, a field under a bit mask, or a
/// concatenation (`ip saddr . tcp dport`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Field(Field),
    Masked(Field, u128),
    Concat(Vec<Field>),
}

impl Key {
    pub fn fields(&self) -> Vec<Field> {
        match self {
            Key::Field(f) | Key::Masked(f, _) => vec![*f],
            Key::Concat(v) => v.clone(),
        }
    }
}

/// Elements of a set: tuples as long as the key (one for a plain key).
pub type Tuples = Vec<Vec<Elem>>;

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// Drop with an answer (ICMP error or TCP reset): nothing is delivered.
    Reject,
    Continue,
    Return,
    Jump(String),
    Goto(String),
}

/// A NAT binding of the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnat {
    /// New destination address; `None` for a redirect to the host itself.
    pub addr: Option<u128>,
    pub port: Option<u16>,
}

/// One statement of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// The packet goes on in this rule when `key`'s value is in `set`
    /// (not in it when `negate`).
    Match {
        key: Key,
        negate: bool,
        set: Tuples,
    },
    /// A match the attacker decides with the packet it sends (TTL, length,
    /// header bits): some packets match, some do not; both ways go on.
    Either(String),
    /// A match this evaluator cannot decide, named: the outcome of what
    /// depends on it is unknown.
    Undecided(String),
    Verdict(Verdict),
    /// A verdict looked up in a map by `key`; no entry: the rule goes on.
    Vmap {
        key: Key,
        entries: Vec<(Vec<Elem>, Verdict)>,
    },
    Dnat(Dnat),
    SetMark {
        ct: bool,
        value: u32,
        mask: u32,
    },
    /// `ct mark` copied into the packet mark (`CONNMARK --restore-mark`).
    RestoreMark,
    /// The packet leaves connection tracking (`notrack`): its state is untracked.
    Notrack,
    /// Statements that change nothing the verdict depends on (counter,
    /// log, comment, a rate limit the first packet passes, source NAT).
    Nothing,
    /// A statement whose effect on the verdict is unknown (queue to user
    /// space, tproxy, synproxy ...): the outcome is unknown.
    Unknown(String),
}

/// A rule: its statements and how people recognise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `rule 3` for nft, or the iptables-save line.
    pub label: String,
    pub stmts: Vec<Stmt>,
}

impl Rule {
    /// A rule whose leading matches are put in the order the evaluator
    /// wants: the undecided ones last. Matches have no effects, so their
    /// order does not change what the rule selects, and a packet that a
    /// decided match already excludes never depends on an undecided one.
    pub fn new(label: String, mut stmts: Vec<Stmt>) -> Rule {
        let is_cond = |s: &Stmt| matches!(s, Stmt::Match { .. } | Stmt::Either(_) | Stmt::Undecided(_));
        let n = stmts.iter().take_while(|s| is_cond(s)).count();
        stmts[..n].sort_by_key(|s| matches!(s, Stmt::Undecided(_)));
        Rule { label, stmts }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<Base>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: TableFamily,
    pub name: String,
    pub origin: Origin,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn chain(&self, name: &str) -> Option<usize> {
        self.chains.iter().position(|c| c.name == name)
    }

    /// `inet filter input`, `ipv4 filter INPUT`.
    pub fn chain_label(&self, chain: usize) -> String {
        let name = self.chains.get(chain).map_or("?", |c| c.name.as_str());
        format!("{} {} {}", self.family.as_str(self.origin), self.name, name)
    }
}

/// Everything loaded in the kernel that the evaluator reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}
