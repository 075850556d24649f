//! Each agent's hash chain in a bundle, and whether it is anchored at both
//! edges of the window. Pure: it reads what the record pass kept.
//!
//! Inside the window, every seq between the first and the last record must
//! be there (a missing one is a [`Finding::Gap`]) and each record's `prev`
//! must be its predecessor's digest. At the start, the first record in the
//! window is seq 1 or follows a verified predecessor in the bundle collected
//! before the window; otherwise deleting the first records would go
//! unnoticed. At the end, a successor in the bundle must follow the last
//! record in the window and lie after it; a later record without the one
//! in between is a cut. With no successor the chain is open: nothing after
//! the window was logged by export time, or it was left out, and no bundle
//! can prove which (a note, not a failure). An agent with no record in the
//! window is anchored the same way by the first record after it.
//!
//! Collections the agent itself declared missed (a signed gap in a record)
//! are reported per agent with the seqs they lie between.

use std::collections::{BTreeMap, BTreeSet};

use custos_proto::evidence::statement::Gap;

use super::RecInfo;
use super::report::{AgentSummary, ChainEnd, ChainStart, Failure, Finding, excerpt};
use crate::bundle::{ContextRecord, ContextRole, MANIFEST, record_path, rfc3339_unix};

/// What the chain check reads.
pub(crate) struct Input<'a> {
    /// Every record file per agent, readable or not.
    pub present: &'a BTreeMap<String, BTreeSet<u64>>,
    /// The records whose signed statement could be read.
    pub records: &'a BTreeMap<String, BTreeMap<u64, RecInfo>>,
    /// Record files some check failed for.
    pub failed: &'a BTreeSet<String>,
    /// Every agent the bundle holds records or key bindings of.
    pub agents: &'a BTreeSet<String>,
    /// The window, both ends included (Unix seconds).
    pub window: (i64, i64),
    /// The context records the manifest lists.
    pub listed: &'a [ContextRecord],
}

/// What the chain check found.
#[derive(Debug, Default)]
pub(crate) struct Chains {
    pub failures: Vec<Failure>,
    pub findings: Vec<Finding>,
    /// Per agent, without the key-binding count.
    pub agents: BTreeMap<String, AgentSummary>,
    /// Record files whose link to the previous record is broken.
    pub broken: BTreeSet<String>,
}

/// One agent's records as the checks see them.
struct Agent<'a> {
    id: &'a str,
    seqs: &'a BTreeSet<u64>,
    recs: Option<&'a BTreeMap<u64, RecInfo>>,
    failed: &'a BTreeSet<String>,
    window: (i64, i64),
}

impl Agent<'_> {
    fn info(&self, seq: u64) -> Option<&RecInfo> {
        self.recs.and_then(|r| r.get(&seq))
    }

    /// Collected inside the window; a record whose statement could not be
    /// read counts as inside (it is evidence the bundle claims to hold).
    fn inside(&self, seq: u64) -> bool {
        self.info(seq).is_none_or(|r| r.collected_at >= self.window.0 && r.collected_at <= self.window.1)
    }

    /// In the bundle, readable, and no check failed for it.
    fn verified(&self, seq: u64) -> bool {
        self.seqs.contains(&seq)
            && self.info(seq).is_some()
            && !self.failed.contains(&record_path(self.id, seq))
    }

    /// Whether `seq`'s prev is `seq - 1`'s digest (`None`: one is unreadable).
    fn linked(&self, seq: u64) -> Option<bool> {
        let (p, r) = (self.info(seq.checked_sub(1)?)?, self.info(seq)?);
        Some(r.prev == Some(p.digest))
    }

    fn anchor(&self, seq: u64, reason: String) -> Failure {
        Failure::Anchor { file: record_path(self.id, seq), agent: self.id.to_string(), reason }
    }

    /// Checks that `first` (the first record of the window, or with none the
    /// first after it) is the chain's start or follows a verified record
    /// collected before the window.
    fn start(&self, first: u64, what: &str, out: &mut Chains) -> ChainStart {
        if first == 1 {
            if self.info(1).is_some_and(|r| r.prev.is_some()) {
                let file = record_path(self.id, 1);
                out.broken.insert(file.clone());
                out.failures.push(Failure::Chain { file, reason: "seq 1 names a previous record".into() });
                return ChainStart::Unanchored;
            }
            return ChainStart::ChainStart;
        }
        let pred = first - 1;
        let reason = if !self.seqs.contains(&pred) {
            format!("chain not anchored: {what} seq {first} has no predecessor in the bundle")
        } else if !self.verified(pred) {
            format!("chain not anchored: the predecessor of {what} seq {first}, seq {pred}, does not verify")
        } else if let Some(p) = self.info(pred).filter(|p| p.collected_at >= self.window.0) {
            format!(
                "chain not anchored: the predecessor of {what} seq {first}, seq {pred}, was collected at {}, not before the window start",
                rfc3339_unix(p.collected_at)
            )
        } else {
            // A broken link is already a chain failure of `first`.
            return match self.linked(first) {
                Some(true) => ChainStart::Predecessor(pred),
                _ => ChainStart::Unanchored,
            };
        };
        out.failures.push(self.anchor(first, reason));
        ChainStart::Unanchored
    }
}

/// Checks every agent's chain:
/// - links between neighbours, and gaps between the window's first and
///   last record;
/// - the edges: anchored at the start, closed or open at the end;
/// - the records outside the window the chain shows as context, and the
///   collections the agent declared missed;
/// - that the manifest's context list is what the chains show.
pub(crate) fn check(input: &Input<'_>) -> Chains {
    let mut out = Chains::default();
    // The context records the chains themselves show.
    let mut shown: BTreeSet<ContextRecord> = BTreeSet::new();
    let none_seqs = BTreeSet::new();
    for id in input.agents {
        let a = Agent {
            id,
            seqs: input.present.get(id).unwrap_or(&none_seqs),
            recs: input.records.get(id),
            failed: input.failed,
            window: input.window,
        };
        let window: Vec<u64> = a.seqs.iter().copied().filter(|q| a.inside(*q)).collect();
        let mut s = a.summary(&window);
        a.links(&s, &mut out);
        let mut context = Vec::new();
        let (start, end) = match (window.first(), window.last()) {
            (Some(&first), Some(&last)) => {
                (a.start_of(first, &mut context, &mut out), a.end(last, &mut context, &mut out))
            }
            _ => a.edges_of_empty_window(&mut context, &mut out),
        };
        s.start = start;
        s.end = end;
        let context_seqs: BTreeSet<u64> = context.iter().map(|(q, _)| *q).collect();
        s.context_records = context.len() as u64;
        let outside: Vec<u64> =
            a.seqs.iter().copied().filter(|q| !a.inside(*q) && !context_seqs.contains(q)).collect();
        s.outside = outside.len() as u64;
        a.declared_gaps(&window, end, &mut out);
        if !outside.is_empty() {
            out.findings.push(Finding::Context { agent: id.clone(), seqs: outside });
        }
        shown.extend(context.into_iter().map(|(seq, role)| ContextRecord { agent: id.clone(), seq, role }));
        out.agents.insert(id.clone(), s);
    }
    check_context_list(input.listed, &shown, &mut out);
    out
}

/// Context records an agent's chain shows, with their role.
type Context = Vec<(u64, ContextRole)>;

impl Agent<'_> {
    /// Counts and times of the records in the window.
    fn summary(&self, window: &[u64]) -> AgentSummary {
        let times: Vec<i64> = window.iter().filter_map(|q| self.info(*q)).map(|r| r.collected_at).collect();
        AgentSummary {
            records: window.len() as u64,
            first_seq: window.first().copied().unwrap_or(0),
            last_seq: window.last().copied().unwrap_or(0),
            first_time: times.iter().min().copied(),
            last_time: times.iter().max().copied(),
            ..AgentSummary::default()
        }
    }

    /// Links between neighbours; gaps between the window's first and last
    /// record (`s`).
    fn links(&self, s: &AgentSummary, out: &mut Chains) {
        let mut prev: Option<u64> = None;
        for &seq in self.seqs {
            if let Some(p) = prev {
                if seq != p + 1 {
                    if p >= s.first_seq && seq <= s.last_seq {
                        out.findings.push(Finding::Gap {
                            agent: self.id.to_string(),
                            first: p + 1,
                            last: seq - 1,
                        });
                    }
                } else if self.linked(seq) == Some(false) {
                    let (file, pfile) = (record_path(self.id, seq), record_path(self.id, p));
                    let (r, pr) = (self.info(seq), self.info(p));
                    let reason = format!(
                        "prev is {}, the digest of {pfile} is {}",
                        r.and_then(|r| r.prev).map_or("(none)".into(), hex::encode),
                        pr.map(|p| hex::encode(p.digest)).unwrap_or_default()
                    );
                    out.failures.push(Failure::Chain { file: file.clone(), reason });
                    out.broken.insert(file);
                }
            }
            prev = Some(seq);
        }
    }

    /// The start of a window whose first record is `first`.
    fn start_of(&self, first: u64, context: &mut Context, out: &mut Chains) -> ChainStart {
        let start = self.start(first, "first record", out);
        if let ChainStart::Predecessor(p) = start {
            context.push((p, ContextRole::Predecessor));
        }
        start
    }

    /// The end of a window whose last record is `last`: closed by its
    /// verified successor, cut, or open when nothing after it is here.
    fn end(&self, last: u64, context: &mut Context, out: &mut Chains) -> ChainEnd {
        let next = last + 1;
        if !self.seqs.contains(&next) {
            if let Some(&later) = self.seqs.range(next..).next() {
                let reason = format!(
                    "chain cut at the end of the window: seq {next}, after last record seq {last}, is not in the bundle, but seq {later} is"
                );
                out.failures.push(self.anchor(last, reason));
                return ChainEnd::Cut;
            }
            return ChainEnd::Open;
        }
        let reason = if !self.verified(next) {
            Some(format!(
                "chain not closed: the successor of last record seq {last}, seq {next}, does not verify"
            ))
        } else {
            self.info(next).filter(|r| r.collected_at < self.window.0).map(|r| {
                format!(
                    "chain not closed: the successor of last record seq {last}, seq {next}, was collected at {}, before the window start",
                    rfc3339_unix(r.collected_at)
                )
            })
        };
        match (reason, self.linked(next)) {
            (Some(reason), _) => {
                out.failures.push(self.anchor(last, reason));
                ChainEnd::Cut
            }
            (None, Some(true)) => {
                context.push((next, ContextRole::Successor));
                ChainEnd::Successor(next)
            }
            // A broken link is already a chain failure of `next`.
            (None, _) => ChainEnd::Cut,
        }
    }

    /// The edges when no record lies in the window: the first one after it
    /// shows that none was left out; with none after it, the last one
    /// before it is the predecessor the export adds.
    fn edges_of_empty_window(&self, context: &mut Context, out: &mut Chains) -> (ChainStart, ChainEnd) {
        let after =
            self.seqs.iter().copied().find(|q| self.info(*q).is_some_and(|r| r.collected_at > self.window.1));
        let Some(next) = after else {
            return match self.seqs.last().copied().filter(|q| self.verified(*q)) {
                Some(p) => {
                    context.push((p, ContextRole::Predecessor));
                    (ChainStart::Predecessor(p), ChainEnd::Open)
                }
                None => (ChainStart::Empty, ChainEnd::Open),
            };
        };
        let start = self.start(next, "first record after the window (none in it)", out);
        if let ChainStart::Predecessor(p) = start {
            context.push((p, ContextRole::Predecessor));
        }
        if start == ChainStart::Unanchored || !self.verified(next) {
            (start, ChainEnd::Cut)
        } else {
            context.push((next, ContextRole::Successor));
            (start, ChainEnd::Successor(next))
        }
    }

    /// Missed collections the agent declared, in the window or in the
    /// successor just after it.
    fn declared_gaps(&self, window: &[u64], end: ChainEnd, out: &mut Chains) {
        let successor = match end {
            ChainEnd::Successor(n) => Some(n),
            _ => None,
        };
        for seq in window.iter().copied().chain(successor) {
            if let Some(Gap { missed_collections, first_missed_at, last_missed_at, reason }) =
                self.info(seq).and_then(|r| r.declared_gap.as_ref())
            {
                out.findings.push(Finding::DeclaredGap {
                    agent: self.id.to_string(),
                    after: seq - 1,
                    seq,
                    missed: *missed_collections,
                    first_missed_at: first_missed_at.clone(),
                    last_missed_at: last_missed_at.clone(),
                    reason: reason.clone(),
                });
            }
        }
    }
}

/// The manifest's context list says what the chains show, no more.
fn check_context_list(listed: &[ContextRecord], shown: &BTreeSet<ContextRecord>, out: &mut Chains) {
    let listed: BTreeSet<&ContextRecord> = listed.iter().collect();
    for c in &listed {
        if !shown.contains(c) {
            out.failures.push(Failure::Manifest {
                file: MANIFEST.into(),
                reason: format!(
                    "context lists {} as agent {}'s {}, which its chain in the bundle does not show",
                    excerpt(&record_path(&c.agent, c.seq)),
                    excerpt(&c.agent),
                    c.role.as_str()
                ),
            });
        }
    }
    for c in shown {
        if !listed.contains(c) {
            out.failures.push(Failure::Manifest {
                file: MANIFEST.into(),
                reason: format!(
                    "context does not list {}, agent {}'s {}",
                    record_path(&c.agent, c.seq),
                    c.agent,
                    c.role.as_str()
                ),
            });
        }
    }
}
