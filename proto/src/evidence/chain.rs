//! The per-agent hash-chain rules: given the chain head the server holds and
//! an incoming record, decide whether it extends the chain, repeats a stored
//! record, or must be refused (gap, equivocation, broken link, replay).

/// The last accepted record of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub digest: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainVerdict {
    /// `seq = head + 1` with a matching `prev`: store it.
    Append,
    /// The same record (seq and digest) is already stored: acknowledge, store nothing.
    Duplicate,
    /// Same seq as a stored record, different content: refuse and raise.
    Equivocation,
    /// `seq` is ahead of `head + 1`: records are missing; report `expected`.
    Gap { expected: u64 },
    /// `seq = head + 1` but `prev` is not the head's digest.
    PrevMismatch,
    /// `seq` at or below the head, but no record with that seq is stored.
    Replay,
}

/// Judges a record with sequence number `seq`, previous-digest `prev` and
/// payload digest `digest` against `head`. `stored` looks up the digest of an
/// already stored record of this agent by seq (only called for old seqs).
pub fn judge(
    head: Option<ChainHead>,
    seq: u64,
    prev: Option<[u8; 32]>,
    digest: [u8; 32],
    stored: impl FnOnce(u64) -> Option<[u8; 32]>,
) -> ChainVerdict {
    let head_seq = head.map_or(0, |h| h.seq);
    if seq == head_seq + 1 {
        return if prev == head.map(|h| h.digest) {
            ChainVerdict::Append
        } else {
            ChainVerdict::PrevMismatch
        };
    }
    if seq > head_seq + 1 {
        return ChainVerdict::Gap { expected: head_seq + 1 };
    }
    match stored(seq) {
        Some(d) if d == digest => ChainVerdict::Duplicate,
        Some(_) => ChainVerdict::Equivocation,
        None => ChainVerdict::Replay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];
    const C: [u8; 32] = [3; 32];

    fn head(seq: u64, digest: [u8; 32]) -> Option<ChainHead> {
        Some(ChainHead { seq, digest })
    }

    #[test]
    fn first_record_starts_the_chain() {
        assert_eq!(judge(None, 1, None, A, |_| None), ChainVerdict::Append);
        assert_eq!(judge(None, 1, Some(B), A, |_| None), ChainVerdict::PrevMismatch);
        assert_eq!(judge(None, 3, None, A, |_| None), ChainVerdict::Gap { expected: 1 });
    }

    #[test]
    fn next_record_must_link_to_head() {
        assert_eq!(judge(head(1, A), 2, Some(A), B, |_| None), ChainVerdict::Append);
        assert_eq!(judge(head(1, A), 2, Some(C), B, |_| None), ChainVerdict::PrevMismatch);
        assert_eq!(judge(head(1, A), 2, None, B, |_| None), ChainVerdict::PrevMismatch);
    }

    #[test]
    fn old_seq_is_duplicate_equivocation_or_replay() {
        let stored = |s: u64| (s == 1).then_some(A);
        assert_eq!(judge(head(2, B), 1, None, A, stored), ChainVerdict::Duplicate);
        assert_eq!(judge(head(2, B), 1, None, C, stored), ChainVerdict::Equivocation);
        assert_eq!(judge(head(2, B), 2, Some(A), C, |_| None), ChainVerdict::Replay);
    }

    #[test]
    fn gap_reports_the_expected_seq() {
        assert_eq!(judge(head(5, A), 9, Some(B), C, |_| None), ChainVerdict::Gap { expected: 6 });
    }
}
