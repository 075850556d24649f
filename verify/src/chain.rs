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

/// Checks every agent's chain.
pub(crate) fn check(input: &Input<'_>) -> Chains {
    let mut out = Chains::default();
    // The context records the chains themselves show.
    let mut shown: BTreeSet<ContextRecord> = BTreeSet::new();
    let none_seqs = BTreeSet::new();
    let (from, to) = input.window;
    for id in input.agents {
        let a = Agent {
            id,
            seqs: input.present.get(id).unwrap_or(&none_seqs),
            recs: input.records.get(id),
            failed: input.failed,
            window: input.window,
        };
        let mut s = AgentSummary::default();
        let window: Vec<u64> = a.seqs.iter().copied().filter(|q| a.inside(*q)).collect();
        let times: Vec<i64> = window.iter().filter_map(|q| a.info(*q)).map(|r| r.collected_at).collect();
        s.records = window.len() as u64;
        s.first_seq = window.first().copied().unwrap_or(0);
        s.last_seq = window.last().copied().unwrap_or(0);
        s.first_time = times.iter().min().copied();
        s.last_time = times.iter().max().copied();

        // Links between neighbours, gaps between the window's first and last.
        let mut prev: Option<u64> = None;
        for &seq in a.seqs {
            if let Some(p) = prev {
                if seq != p + 1 {
                    if p >= s.first_seq && seq <= s.last_seq {
                        out.findings.push(Finding::Gap { agent: id.clone(), first: p + 1, last: seq - 1 });
                    }
                } else if a.linked(seq) == Some(false) {
                    let (file, pfile) = (record_path(id, seq), record_path(id, p));
                    let (r, pr) = (a.info(seq), a.info(p));
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

        // The edges.
        let mut context = Vec::new();
        let (start, end) = match (window.first(), window.last()) {
            (Some(&first), Some(&last)) => {
                let start = a.start(first, "first record", &mut out);
                if let ChainStart::Predecessor(p) = start {
                    context.push((p, ContextRole::Predecessor));
                }
                let next = last + 1;
                let end = if a.seqs.contains(&next) {
                    let reason = if !a.verified(next) {
                        Some(format!(
                            "chain not closed: the successor of last record seq {last}, seq {next}, does not verify"
                        ))
                    } else {
                        a.info(next).filter(|r| r.collected_at < from).map(|r| {
                            format!(
                                "chain not closed: the successor of last record seq {last}, seq {next}, was collected at {}, before the window start",
                                rfc3339_unix(r.collected_at)
                            )
                        })
                    };
                    match (reason, a.linked(next)) {
                        (Some(reason), _) => {
                            out.failures.push(a.anchor(last, reason));
                            ChainEnd::Cut
                        }
                        (None, Some(true)) => {
                            context.push((next, ContextRole::Successor));
                            ChainEnd::Successor(next)
                        }
                        // A broken link is already a chain failure of `next`.
                        (None, _) => ChainEnd::Cut,
                    }
                } else if let Some(&later) = a.seqs.range(next..).next() {
                    let reason = format!(
                        "chain cut at the end of the window: seq {next}, after last record seq {last}, is not in the bundle, but seq {later} is"
                    );
                    out.failures.push(a.anchor(last, reason));
                    ChainEnd::Cut
                } else {
                    ChainEnd::Open
                };
                (start, end)
            }
            _ => {
                // No record in the window: the first one after it shows
                // that none was left out.
                let after = a.seqs.iter().copied().find(|q| a.info(*q).is_some_and(|r| r.collected_at > to));
                match after {
                    Some(next) => {
                        let start = a.start(next, "first record after the window (none in it)", &mut out);
                        if let ChainStart::Predecessor(p) = start {
                            context.push((p, ContextRole::Predecessor));
                        }
                        if start == ChainStart::Unanchored || !a.verified(next) {
                            (start, ChainEnd::Cut)
                        } else {
                            context.push((next, ContextRole::Successor));
                            (start, ChainEnd::Successor(next))
                        }
                    }
                    None => {
                        // Every record here lies before the window; the
                        // last one is the predecessor the export adds.
                        let before = a.seqs.last().copied().filter(|q| a.verified(*q));
                        match before {
                            Some(p) => {
                                context.push((p, ContextRole::Predecessor));
                                (ChainStart::Predecessor(p), ChainEnd::Open)
                            }
                            None => (ChainStart::Empty, ChainEnd::Open),
                        }
                    }
                }
            }
        };
        s.start = start;
        s.end = end;
        let context_seqs: BTreeSet<u64> = context.iter().map(|(q, _)| *q).collect();
        s.context_records = context.len() as u64;
        let outside: Vec<u64> =
            a.seqs.iter().copied().filter(|q| !a.inside(*q) && !context_seqs.contains(q)).collect();
        s.outside = outside.len() as u64;

        // Missed collections the agent declared, in the window or just after.
        let declared = window.iter().copied().chain(match end {
            ChainEnd::Successor(n) => Some(n),
            _ => None,
        });
        for seq in declared {
            if let Some(Gap { missed_collections, first_missed_at, last_missed_at, reason }) =
                a.info(seq).and_then(|r| r.declared_gap.as_ref())
            {
                out.findings.push(Finding::DeclaredGap {
                    agent: id.clone(),
                    after: seq - 1,
                    seq,
                    missed: *missed_collections,
                    first_missed_at: first_missed_at.clone(),
                    last_missed_at: last_missed_at.clone(),
                    reason: reason.clone(),
                });
            }
        }
        if !outside.is_empty() {
            out.findings.push(Finding::Context { agent: id.clone(), seqs: outside });
        }
        shown.extend(context.into_iter().map(|(seq, role)| ContextRecord { agent: id.clone(), seq, role }));
        out.agents.insert(id.clone(), s);
    }

    // The manifest's context list says what the chains show, no more.
    let listed: BTreeSet<&ContextRecord> = input.listed.iter().collect();
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
    for c in &shown {
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
    out
}
