//! What a collection cost the agent: CPU time of the agent process itself
//! and of the commands it ran (counted apart), and peak resident memory.
//! Printed by `custos-agent collect --footprint` and read by the footprint
//! benchmark.

use serde::{Deserialize, Serialize};

/// Resource use so far, from `getrusage(2)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// User + system CPU of the agent process, milliseconds.
    pub agent_cpu_ms: f64,
    /// Peak resident set of the agent process, KiB.
    pub agent_peak_rss_kib: u64,
    /// User + system CPU of the finished commands it ran, milliseconds.
    pub children_cpu_ms: f64,
    /// Peak resident set of the largest command it ran, KiB.
    pub children_peak_rss_kib: u64,
}

#[cfg(unix)]
fn usage(who: libc::c_int) -> Option<(f64, u64)> {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return None;
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    // ru_maxrss is KiB on Linux, bytes on macOS.
    let rss = if cfg!(target_os = "macos") { ru.ru_maxrss as u64 / 1024 } else { ru.ru_maxrss as u64 };
    Some((ms(ru.ru_utime) + ms(ru.ru_stime), rss))
}

impl Footprint {
    /// The footprint of this process so far (zeros where the OS cannot say).
    #[cfg(unix)]
    pub fn now() -> Footprint {
        let (agent_cpu_ms, agent_peak_rss_kib) = usage(libc::RUSAGE_SELF).unwrap_or_default();
        let (children_cpu_ms, children_peak_rss_kib) = usage(libc::RUSAGE_CHILDREN).unwrap_or_default();
        Footprint { agent_cpu_ms, agent_peak_rss_kib, children_cpu_ms, children_peak_rss_kib }
    }

    #[cfg(not(unix))]
    pub fn now() -> Footprint {
        Footprint::default()
    }
}
