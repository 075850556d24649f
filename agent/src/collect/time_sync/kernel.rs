//! The kernel's word on a time daemon's claim.
//!
//! A daemon can report synchronisation without steering the clock: chronyd
//! started with `-x` still tracks its sources and reports "Normal" and a
//! small offset, and ntpd with its kernel discipline off never updates the
//! kernel. What the clock actually is, the kernel tells (`adjtimex(2)`,
//! read only): a daemon that steers it resets the error bound on every
//! update; left alone the bound grows 500 µs per second up to 16 s, where
//! the kernel declares the clock unsynchronised. That test is systemd's
//! `NTPSynchronized` too. Only the bound is read: chronyd leaves the
//! `STA_UNSYNC` flag set unless `rtcsync` is on, so the flag alone would
//! fail sound hosts.
//!
//! Invariant: a daemon's `pass` stands only when the kernel was read and
//! says the clock is steered; unread, it is `unknown`.

use custos_proto::evidence::CheckStatus;

use crate::collect::Finding;
use crate::host::KernelClock;

/// The kernel's reading, or why it could not be had.
pub type Reading = Result<KernelClock, String>;

/// Adds the kernel's facts (`kernel_synchronised`, `kernel_max_error_ms`).
fn with_facts(f: Finding, kernel: &Reading) -> Finding {
    match kernel {
        Ok(k) => f
            .fact("kernel_synchronised", k.steered())
            .fact("kernel_max_error_ms", k.max_error_us as f64 / 1000.0),
        Err(_) => f,
    }
}

/// Confirms (or overturns) the verdict `backend` gave from its own report.
pub fn confirm(f: Finding, kernel: &Reading, backend: &str) -> Finding {
    let f = with_facts(f, kernel);
    if f.status != CheckStatus::Pass {
        return f;
    }
    match kernel {
        Ok(k) if k.steered() => f,
        Ok(k) => {
            let mut f = f;
            f.status = CheckStatus::Fail;
            f.with_reason(format!(
                "{backend} reports synchronisation, but the kernel reports the clock unsynchronised \
                 (adjtimex: error bound {:.0} s, its cap): {backend} does not steer the clock \
                 (chronyd started with -x, or ntpd with its kernel discipline off)",
                k.max_error_us as f64 / 1e6
            ))
        }
        Err(e) => {
            let mut f = f;
            f.status = CheckStatus::Unknown;
            f.with_reason(format!(
                "{backend} reports synchronisation, but whether it steers the clock could not be read \
                 from the kernel ({e})"
            ))
        }
    }
}

/// With no daemon to ask: a kernel that says nothing steers the clock
/// settles it as `fail`; otherwise `None` (the kernel's bound is not an
/// offset, so it cannot pass on its own).
pub fn unsteered(kernel: &Reading, notes: &str) -> Option<Finding> {
    let k = kernel.as_ref().ok().filter(|k| !k.steered())?;
    let f = Finding::fail(
        "kernel",
        format!(
            "no time daemon answered and the kernel reports the clock unsynchronised \
             (adjtimex: error bound {:.0} s, its cap; {notes})",
            k.max_error_us as f64 / 1e6
        ),
    )
    .fact("source", "kernel")
    .fact("synchronised", false);
    Some(with_facts(f, kernel))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEERED: KernelClock =
        KernelClock { state: 0, status: 0x2001, max_error_us: 42_000, est_error_us: 15 };
    const FREE: KernelClock =
        KernelClock { state: 5, status: 0x40, max_error_us: 16_000_000, est_error_us: 16_000_000 };

    #[test]
    fn a_pass_needs_a_kernel_that_is_steered() {
        let pass = || Finding::pass("chrony");
        assert_eq!(confirm(pass(), &Ok(STEERED), "chrony").status, CheckStatus::Pass);
        let free = confirm(pass(), &Ok(FREE), "chrony");
        assert_eq!(free.status, CheckStatus::Fail);
        assert!(free.reason.as_deref().unwrap().contains("-x"), "{free:?}");
        assert_eq!(free.facts["kernel_synchronised"], false);
        let unread = confirm(pass(), &Err("seccomp".into()), "chrony");
        assert_eq!(unread.status, CheckStatus::Unknown);
        // chronyd without rtcsync leaves STA_UNSYNC set on a steered clock.
        let flagged = KernelClock { status: 0x2041, ..STEERED };
        assert_eq!(confirm(pass(), &Ok(flagged), "chrony").status, CheckStatus::Pass);
        // A fail stays a fail, with the kernel's facts beside it.
        let fail = confirm(Finding::fail("chrony", "not synchronised"), &Ok(STEERED), "chrony");
        assert_eq!(
            (fail.status, fail.facts["kernel_max_error_ms"].as_f64()),
            (CheckStatus::Fail, Some(42.0))
        );
    }

    #[test]
    fn without_a_daemon_only_an_unsteered_kernel_decides() {
        assert_eq!(unsteered(&Ok(FREE), "chronyc not installed").map(|f| f.status), Some(CheckStatus::Fail));
        assert!(unsteered(&Ok(STEERED), "").is_none());
        assert!(unsteered(&Err("x".into()), "").is_none());
    }
}
