//! What a verification found: failures (each naming the file inside the
//! bundle and the reason), findings that are not forgeries (gaps in an
//! agent's chain, collections the agent declared missed), notes (chains
//! whose end at export time no bundle can prove), the outcome and a summary
//! a person can read.
//!
//! Only a bundle checked against a pinned log key is VERIFIED: against its
//! own `log/key` a bundle proves that it is consistent, not who signed its
//! checkpoint, since a forger writes both.

use std::collections::BTreeMap;
use std::fmt;

use crate::bundle::rfc3339_unix;

/// One check that did not hold. Every variant names the file it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("{file}: listed in the manifest but missing from the bundle")]
    Missing { file: String },
    #[error("{file}: in the bundle but not listed in the manifest")]
    NotListed { file: String },
    #[error("{file}: appears twice in the bundle")]
    Duplicate { file: String },
    #[error("{file}: SHA-256 is {found}, the manifest says {expected}")]
    Digest { file: String, expected: String, found: String },
    #[error("{file}: not a file of the bundle format")]
    Unknown { file: String },
    #[error("{file}: {reason}")]
    Manifest { file: String, reason: String },
    #[error("{file}: {reason}")]
    Checkpoint { file: String, reason: String },
    #[error("{file}: {reason}")]
    LogKey { file: String, reason: String },
    #[error("{file}: not a valid key binding: {reason}")]
    KeyBinding { file: String, reason: String },
    #[error("{file}: not a valid record: {reason}")]
    Record { file: String, reason: String },
    #[error("{file}: {reason}")]
    Identity { file: String, reason: String },
    #[error("{file}: {reason}")]
    Key { file: String, reason: String },
    #[error("{file}: signature does not verify: {reason}")]
    Signature { file: String, reason: String },
    #[error("{file}: no inclusion proof ({proof} is missing)")]
    NoProof { file: String, proof: String },
    #[error("{file}: {reason}")]
    Proof { file: String, reason: String },
    #[error("{file}: not in the log: {reason}")]
    Inclusion { file: String, reason: String },
    #[error("{file}: chain broken: {reason}")]
    Chain { file: String, reason: String },
    /// An agent's chain is not tied to the window's edges; `file` is the
    /// record at the loose end.
    #[error("agent {agent}: {reason}")]
    Anchor { file: String, agent: String, reason: String },
    #[error("{file} line {line}: {reason}")]
    Csv { file: String, line: u64, reason: String },
    #[error("{file}: {reason}")]
    Oscal { file: String, reason: String },
    /// Failures of one file past the first [`MAX_FAILURES_PER_FILE`], counted
    /// rather than kept: a hostile file can fail on every row.
    #[error("{file}: {count} more failures not listed")]
    More { file: String, count: u64 },
}

impl Failure {
    /// The bundle file the failure concerns.
    pub fn file(&self) -> &str {
        match self {
            Failure::Missing { file }
            | Failure::NotListed { file }
            | Failure::Duplicate { file }
            | Failure::Digest { file, .. }
            | Failure::Unknown { file }
            | Failure::Manifest { file, .. }
            | Failure::Checkpoint { file, .. }
            | Failure::LogKey { file, .. }
            | Failure::KeyBinding { file, .. }
            | Failure::Record { file, .. }
            | Failure::Identity { file, .. }
            | Failure::Key { file, .. }
            | Failure::Signature { file, .. }
            | Failure::NoProof { file, .. }
            | Failure::Proof { file, .. }
            | Failure::Inclusion { file, .. }
            | Failure::Chain { file, .. }
            | Failure::Anchor { file, .. }
            | Failure::Csv { file, .. }
            | Failure::Oscal { file, .. }
            | Failure::More { file, .. } => file,
        }
    }
}

/// Failures kept per document (CSV, OSCAL) before the rest are only counted.
pub const MAX_FAILURES_PER_FILE: usize = 100;

/// A document's failures, the first [`MAX_FAILURES_PER_FILE`] kept and the
/// rest counted, so memory and the report stay small whatever the file.
#[derive(Debug, Default)]
pub(crate) struct Capped {
    list: Vec<Failure>,
    more: u64,
}

impl Capped {
    pub fn push(&mut self, f: Failure) {
        if self.list.len() < MAX_FAILURES_PER_FILE {
            self.list.push(f);
        } else {
            self.more += 1;
        }
    }

    pub fn len(&self) -> u64 {
        self.list.len() as u64 + self.more
    }

    /// The failures kept, and one saying how many more `file` had.
    pub fn finish(mut self, file: &str) -> Vec<Failure> {
        if self.more > 0 {
            self.list.push(Failure::More { file: file.to_string(), count: self.more });
        }
        self.list
    }
}

/// Characters of input the report quotes at most.
pub const EXCERPT_CHARS: usize = 120;

/// Input quoted in the report: at most [`EXCERPT_CHARS`] characters, control
/// characters escaped (a terminal must not act on them), and when cut a
/// marker with the full length. Every value from the bundle that a message
/// repeats goes through [`excerpt`]; `{}` shows it plain, `{:?}` quoted.
#[derive(Clone, Copy)]
pub struct Excerpt<'a>(&'a str);

/// See [`Excerpt`].
pub fn excerpt(s: &str) -> Excerpt<'_> {
    Excerpt(s)
}

impl Excerpt<'_> {
    /// Writes the escaped text until `EXCERPT_CHARS` are out; true if cut.
    fn write_cut(&self, f: &mut fmt::Formatter<'_>, quoted: bool) -> Result<bool, fmt::Error> {
        let mut written = 0;
        for c in self.0.chars() {
            // As `{:?}` of a str quotes: a single quote stays as it is.
            let escape = (quoted && c != '\'') || c.is_control();
            let piece: String = if escape { c.escape_debug().collect() } else { c.into() };
            let width = piece.chars().count();
            if written + width > EXCERPT_CHARS {
                return Ok(true);
            }
            f.write_str(&piece)?;
            written += width;
        }
        Ok(false)
    }

    fn marker(&self, f: &mut fmt::Formatter<'_>, cut: bool) -> fmt::Result {
        if cut { write!(f, "… ({} bytes)", self.0.len()) } else { Ok(()) }
    }
}

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.write_cut(f, false)?;
        self.marker(f, cut)
    }
}

impl fmt::Debug for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        let cut = self.write_cut(f, true)?;
        f.write_str("\"")?;
        self.marker(f, cut)
    }
}

/// Something an auditor should know that is not a forgery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Seqs missing between two records of the window: deleted, never
    /// received, or outside the export; the bundle cannot tell which.
    Gap { agent: String, first: u64, last: u64 },
    /// Records the standings rest on that lie outside the window, not linked
    /// to the window's records by the chain.
    Context { agent: String, seqs: Vec<u64> },
    /// Collections the agent skipped (its spool was full) and declared in
    /// the signed record `seq`: none of the chain is missing, but evidence
    /// between `after` and `seq` was never collected.
    DeclaredGap {
        agent: String,
        after: u64,
        seq: u64,
        missed: u64,
        first_missed_at: String,
        last_missed_at: String,
        reason: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Gap { agent, first, last } if first == last => {
                write!(f, "agent {agent}: gap in the chain, seq {first} is not in the bundle")
            }
            Finding::Gap { agent, first, last } => {
                write!(f, "agent {agent}: gap in the chain, seq {first}-{last} are not in the bundle")
            }
            Finding::Context { agent, seqs } => write!(
                f,
                "agent {agent}: seq {} collected outside the window (the standings in the CSV rest on them)",
                seqs.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            ),
            Finding::DeclaredGap { agent, after, seq, missed, first_missed_at, last_missed_at, reason } => {
                // Signed by the agent, but still the bundle's words: excerpts.
                let (from, to, why) = (excerpt(first_missed_at), excerpt(last_missed_at), excerpt(reason));
                write!(
                    f,
                    "agent {agent}: the agent declared {missed} missed collections between seq {after} and {seq} ({from} to {to}: {why})"
                )
            }
        }
    }
}

/// Which key the checkpoint signature was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedKey {
    /// `--log-key`: a key the auditor holds independently.
    Pinned(String),
    /// The bundle's own `log/key`: proves consistency, not origin.
    Bundle(String),
    /// Neither was usable.
    None,
}

/// How an agent's chain begins at the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChainStart {
    /// Its first record in the window (or, with none, after it) is seq 1.
    ChainStart,
    /// That record follows this verified seq, collected before the window.
    Predecessor(u64),
    /// The agent has no record in the bundle to anchor.
    Empty,
    /// Not anchored (a failure says why).
    #[default]
    Unanchored,
}

/// How an agent's chain ends at the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChainEnd {
    /// This verified seq, collected after the window, follows its last record.
    Successor(u64),
    /// No record after the window in the bundle: nothing was logged after it
    /// by export time, or it was left out; offline, no one can tell which.
    #[default]
    Open,
    /// Cut (a failure says why).
    Cut,
}

/// Per agent: what the bundle holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentSummary {
    /// Records collected in the window (the evidence), their seqs and times.
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_time: Option<i64>,
    pub last_time: Option<i64>,
    pub key_bindings: usize,
    pub start: ChainStart,
    pub end: ChainEnd,
    /// Predecessor and successor records (not evidence).
    pub context_records: u64,
    /// Other records outside the window (those the standings rest on).
    pub outside: u64,
}

/// What a verification concluded, and the exit status `verify` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every check holds against the pinned log key (exit 0).
    Verified,
    /// Every check holds, but only against the bundle's own log key (exit 3; 2 is a usage error).
    Unpinned,
    /// A check failed or the window's chains have gaps (exit 1).
    Failed,
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Verified => 0,
            Outcome::Unpinned => 3,
            Outcome::Failed => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub bundle: String,
    pub exported_at: String,
    pub exported_by: String,
    pub window: (String, String),
    pub query: String,
    pub trusted: TrustedKey,
    /// Origin and tree size of the checkpoint, when it verified.
    pub checkpoint: Option<(String, u64)>,
    pub records: u64,
    /// Records every check passed for.
    pub records_verified: u64,
    pub key_bindings: usize,
    pub proofs: usize,
    pub csv_rows: u64,
    /// What `assessment-results.json` held, when the bundle has one.
    pub oscal: Option<super::OscalSummary>,
    pub agents: BTreeMap<String, AgentSummary>,
    pub failures: Vec<Failure>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when no check failed and no seq is missing inside the window.
    /// A gap is no forgery, but a bundle with one does not prove the
    /// window's evidence complete: the server accepts only seq = last + 1
    /// (an agent's skipped collections are declared inside its next signed
    /// record), so a missing seq means a record not in the bundle.
    pub fn consistent(&self) -> bool {
        self.failures.is_empty() && self.gaps() == 0
    }

    /// True only when the bundle is [`consistent`](Self::consistent) and its
    /// checkpoint was checked against a pinned log key.
    pub fn ok(&self) -> bool {
        self.outcome() == Outcome::Verified
    }

    pub fn outcome(&self) -> Outcome {
        match (&self.trusted, self.consistent()) {
            (_, false) => Outcome::Failed,
            (TrustedKey::Pinned(_), true) => Outcome::Verified,
            (_, true) => Outcome::Unpinned,
        }
    }

    /// Records collected in the window (the evidence), over every agent.
    pub fn in_window(&self) -> u64 {
        self.agents.values().map(|a| a.records).sum()
    }

    /// Agents whose chain a predecessor before the window anchors.
    pub fn predecessors(&self) -> usize {
        self.agents.values().filter(|a| matches!(a.start, ChainStart::Predecessor(_))).count()
    }

    /// Agents whose chain a successor after the window closes.
    pub fn successors(&self) -> usize {
        self.agents.values().filter(|a| matches!(a.end, ChainEnd::Successor(_))).count()
    }

    /// Agents whose chain has no successor in the bundle.
    pub fn open_ends(&self) -> Vec<&str> {
        self.agents.iter().filter(|(_, s)| s.end == ChainEnd::Open).map(|(a, _)| a.as_str()).collect()
    }

    /// Number of seq gaps inside the window.
    pub fn gaps(&self) -> usize {
        self.findings.iter().filter(|f| matches!(f, Finding::Gap { .. })).count()
    }

    /// The failures as their messages (for tests and logs).
    pub fn failure_messages(&self) -> Vec<String> {
        self.failures.iter().map(ToString::to_string).collect()
    }

    /// Collection times of the records, earliest and latest.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let first = self.agents.values().filter_map(|a| a.first_time).min()?;
        let last = self.agents.values().filter_map(|a| a.last_time).max()?;
        Some((first, last))
    }
}

/// A log key as an auditor compares it with the one the organisation
/// published: its name, its C2SP key ID and the SHA-256 of the public key.
pub fn describe_key(key: &str) -> String {
    match crate::tlog::VerifierKey::parse(key) {
        Ok(k) => format!(
            "name {}, key ID {:08x}, public key SHA-256 {}",
            excerpt(k.name()),
            k.key_id(),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(k.verifying_key().as_bytes()))
        ),
        Err(_) => format!("{:?}", excerpt(key)),
    }
}

impl Report {
    /// The bundle, the key, the log and what the bundle holds.
    fn write_summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Custos export bundle {}", self.bundle)?;
        // The manifest's words, the bundle's key and the checkpoint's origin
        // are the sender's: quoted as excerpts, like every other input.
        writeln!(f, "  exported {} by {}", excerpt(&self.exported_at), excerpt(&self.exported_by))?;
        let (from, to) = (excerpt(&self.window.0), excerpt(&self.window.1));
        writeln!(f, "  window   {from} to {to}; {}", self.query)?;
        match &self.trusted {
            TrustedKey::Pinned(k) => writeln!(f, "  log key  {k} (pinned with --log-key)")?,
            TrustedKey::Bundle(k) => writeln!(
                f,
                "  log key  {} (the bundle's own key, NOT pinned: pass --log-key with the key you hold to check who signed)",
                excerpt(k)
            )?,
            TrustedKey::None => writeln!(f, "  log key  none usable: the checkpoint could not be checked")?,
        }
        match &self.checkpoint {
            Some((origin, size)) => writeln!(
                f,
                "  log      {}, checkpoint at tree size {size}, signature valid",
                excerpt(origin)
            )?,
            None => writeln!(f, "  log      checkpoint NOT verified")?,
        }
        writeln!(
            f,
            "  records  {} verified of {}: {} in the window from {}, {} predecessors and {} successors anchoring the chains (context, not evidence), {} more outside the window",
            self.records_verified,
            self.records,
            self.in_window(),
            count(self.agents.values().filter(|a| a.records > 0).count(), "agent"),
            self.predecessors(),
            self.successors(),
            self.agents.values().map(|a| a.outside).sum::<u64>(),
        )?;
        writeln!(
            f,
            "  files    {} key bindings, {} inclusion proofs, {} CSV rows",
            self.key_bindings, self.proofs, self.csv_rows
        )?;
        if let Some(o) = &self.oscal {
            writeln!(
                f,
                "  oscal    assessment-results.json: {} observations, {} findings, {} risks",
                o.observations, o.findings, o.risks
            )?;
        }
        if let Some((a, b)) = self.time_range() {
            writeln!(f, "  collected {} to {}", rfc3339_unix(a), rfc3339_unix(b))?;
        }
        Ok(())
    }

    /// The verdict and why.
    fn write_outcome(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outcome() {
            Outcome::Verified => writeln!(f, "Result: VERIFIED")?,
            Outcome::Unpinned => {
                let key = match &self.trusted {
                    TrustedKey::Bundle(k) => describe_key(k),
                    _ => String::new(),
                };
                writeln!(
                    f,
                    "Result: CONSISTENT, NOT VERIFIED: the bundle is consistent, but its log key is not pinned ({key}); compare it with the log key your organisation published and verify again with --log-key"
                )?
            }
            Outcome::Failed if self.failures.is_empty() => writeln!(
                f,
                "Result: FAILED: every file verifies, but the window's chains have {} gaps",
                self.gaps()
            )?,
            Outcome::Failed => writeln!(f, "Result: FAILED")?,
        }
        Ok(())
    }
}

/// One agent's line: what it holds in the window and its chain's edges.
fn agent_line(s: &AgentSummary) -> String {
    let held = if s.records == 0 {
        "no records in the window".to_string()
    } else {
        let span = match (s.first_time, s.last_time) {
            (Some(a), Some(b)) => format!(", {} to {}", rfc3339_unix(a), rfc3339_unix(b)),
            _ => String::new(),
        };
        format!("{} records in the window, seq {}-{}{span}", s.records, s.first_seq, s.last_seq)
    };
    let start = match s.start {
        ChainStart::ChainStart => "chain starts at seq 1".to_string(),
        ChainStart::Predecessor(p) => format!("follows seq {p} (before the window)"),
        ChainStart::Empty => "no records in the bundle".to_string(),
        ChainStart::Unanchored => "start NOT anchored".to_string(),
    };
    let end = match s.end {
        ChainEnd::Successor(n) => format!("followed by seq {n} (after the window)"),
        ChainEnd::Open => "no successor in the bundle".to_string(),
        ChainEnd::Cut => "end NOT anchored".to_string(),
    };
    format!("{held}; {} key bindings; {start}, {end}", s.key_bindings)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_summary(f)?;
        if !self.agents.is_empty() {
            writeln!(f, "Agents:")?;
            for (agent, s) in &self.agents {
                writeln!(f, "  {agent}: {}", agent_line(s))?;
            }
        }
        if !self.findings.is_empty() {
            writeln!(f, "Findings (not forgeries, but worth a question):")?;
            for x in &self.findings {
                writeln!(f, "  {x}")?;
            }
        }
        let open = self.open_ends();
        if !open.is_empty() {
            writeln!(f, "Notes:")?;
            writeln!(
                f,
                "  {} of {} have no record after the window in the bundle ({}): the log held none at export time, or it was left out; the end of a chain at export time cannot be proven offline",
                open.len(),
                count(self.agents.len(), "agent"),
                open.join(", ")
            )?;
        }
        if !self.failures.is_empty() {
            writeln!(f, "Failures ({}):", self.failures.len())?;
            for x in &self.failures {
                writeln!(f, "  {x}")?;
            }
        }
        self.write_outcome(f)
    }
}

/// `n` and the noun, plural unless one.
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[cfg(test)]
mod tests {
    use super::{Capped, EXCERPT_CHARS, Failure, MAX_FAILURES_PER_FILE, excerpt};

    #[test]
    fn excerpts_are_short_escaped_and_say_what_was_cut() {
        // Short input is shown as `{}` and `{:?}` would show it.
        assert_eq!(excerpt("evidence.csv").to_string(), "evidence.csv");
        assert_eq!(format!("{:?}", excerpt("it's \"x\"")), format!("{:?}", "it's \"x\""));
        // Control characters never reach a terminal.
        assert_eq!(excerpt("a\u{1b}[2Jb\n").to_string(), "a\\u{1b}[2Jb\\n");
        // Long input: at most EXCERPT_CHARS characters, and its length.
        let long = "é".repeat(1 << 20);
        let shown = excerpt(&long).to_string();
        assert_eq!(shown, format!("{}… (2097152 bytes)", "é".repeat(EXCERPT_CHARS)));
        let quoted = format!("{:?}", excerpt(&"\0".repeat(1 << 30 >> 10)));
        assert_eq!(quoted, format!("\"{}\"… (1048576 bytes)", "\\0".repeat(EXCERPT_CHARS / 2)));
    }

    #[test]
    fn a_document_keeps_its_first_failures_and_counts_the_rest() {
        let mut failures = Capped::default();
        for line in 0..1000 {
            failures.push(Failure::Csv { file: "evidence.csv".into(), line, reason: "bad".into() });
        }
        assert_eq!(failures.len(), 1000);
        let kept = failures.finish("evidence.csv");
        assert_eq!(kept.len(), MAX_FAILURES_PER_FILE + 1);
        assert_eq!(kept[MAX_FAILURES_PER_FILE].to_string(), "evidence.csv: 900 more failures not listed");
    }
}
