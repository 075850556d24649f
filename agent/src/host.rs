//! The agent's only window onto the operating system.
//!
//! Collectors never call `std::process` or `std::fs` themselves: they ask a
//! [`Host`] to run a command or read a file. [`SystemHost`] is the real
//! machine; [`FixtureHost`] replays recorded real output so that collectors
//! for every OS are tested on any OS.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HostError {
    #[error("{program}: not installed")]
    NotFound { program: String },
    #[error("{what}: permission denied")]
    PermissionDenied { what: String },
    #[error("{program}: no answer within {secs} s")]
    Timeout { program: String, secs: u64 },
    #[error("{path}: no such file")]
    NoFile { path: String },
    #[error("{what}: {message}")]
    Io { what: String, message: String },
}

impl HostError {
    /// What went wrong, without the program or path it happened to: for a
    /// signed reason where the path names a person (`/home/<user>/...`).
    pub fn cause(&self) -> String {
        match self {
            HostError::NotFound { .. } => "not installed".into(),
            HostError::PermissionDenied { .. } => "permission denied".into(),
            HostError::Timeout { secs, .. } => format!("no answer within {secs} s"),
            HostError::NoFile { .. } => "no such file".into(),
            HostError::Io { message, .. } => message.clone(),
        }
    }
}

/// Runs commands and reads files on the machine being assessed.
pub trait Host: Send + Sync {
    /// Runs `program` with `args` (no shell), bounded by the host's time limit.
    fn run(&self, program: &str, args: &[&str]) -> Result<CommandOutput, HostError>;
    /// Like [`Host::run`] with a time limit of its own, for commands known to
    /// be slow (a Windows Update search). Hosts without a clock just run it.
    fn run_for(&self, program: &str, args: &[&str], _limit: Duration) -> Result<CommandOutput, HostError> {
        self.run(program, args)
    }
    /// Reads a file (at most a few MiB; evidence files are small).
    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError>;
    /// Lists the names in a directory, sorted.
    fn read_dir(&self, path: &str) -> Result<Vec<String>, HostError>;

    /// Reads a file as UTF-8 text (lossy).
    fn read_text(&self, path: &str) -> Result<String, HostError> {
        self.read_file(path).map(|b| String::from_utf8_lossy(&b).into_owned())
    }
    /// Whether a path exists.
    fn exists(&self, path: &str) -> bool {
        self.read_file(path).is_ok() || self.read_dir(path).is_ok()
    }
    /// The kernel's clock discipline state (`adjtimex(2)`, read only).
    /// Recorded hosts keep it as a file entry at [`KERNEL_CLOCK`], so by
    /// default it is read from there.
    fn kernel_clock(&self) -> Result<KernelClock, HostError> {
        let text = self.read_text(KERNEL_CLOCK)?;
        KernelClock::parse(&text).ok_or_else(|| HostError::Io {
            what: KERNEL_CLOCK.to_string(),
            message: format!("not a kernel clock reading: {}", text.trim()),
        })
    }
}

/// Where a recorded host keeps its [`KernelClock`] reading: not a path on
/// any machine, a name for the system call's answer.
pub const KERNEL_CLOCK: &str = "syscall:adjtimex";

/// What `adjtimex(2)` with `modes = 0` (which changes nothing and needs no
/// privilege) says about the clock. The kernel grows `max_error_us` by 500
/// µs every second unless a time daemon resets it, and declares the clock
/// unsynchronised when it reaches 16 s; systemd's `NTPSynchronized` is the
/// same test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelClock {
    /// The call's return value: `TIME_OK` (0) ... `TIME_ERROR` (5).
    pub state: i32,
    /// The `STA_*` status bits.
    pub status: i32,
    pub max_error_us: i64,
    pub est_error_us: i64,
}

impl KernelClock {
    /// `STA_UNSYNC`: set by the kernel when the error bound reaches its cap,
    /// and left set by chronyd unless `rtcsync` is on, so not decisive alone.
    pub const STA_UNSYNC: i32 = 0x0040;
    /// The kernel's cap on `max_error_us` (`NTP_PHASE_LIMIT`): at it the clock
    /// has not been steered for hours, or never.
    pub const UNSYNC_MAX_ERROR_US: i64 = 16_000_000;

    /// Whether a time daemon steers the clock, as the kernel (and systemd's
    /// `ntp_synced()`) tells it: the error bound is below its cap.
    pub fn steered(&self) -> bool {
        self.max_error_us < Self::UNSYNC_MAX_ERROR_US
    }

    /// The recorded form: `key value` lines.
    pub fn render(&self) -> String {
        format!(
            "state {}\nstatus 0x{:04x}\nmaxerror {}\nesterror {}\n",
            self.state, self.status, self.max_error_us, self.est_error_us
        )
    }

    /// Reads [`KernelClock::render`]'s form back.
    pub fn parse(text: &str) -> Option<KernelClock> {
        let field = |key: &str| {
            text.lines().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(' ').map(str::trim))
        };
        let status = field("status")?;
        let status = match status.strip_prefix("0x") {
            Some(hex) => i32::from_str_radix(hex, 16).ok()?,
            None => status.parse().ok()?,
        };
        Some(KernelClock {
            state: field("state")?.parse().ok()?,
            status,
            max_error_us: field("maxerror")?.parse().ok()?,
            est_error_us: field("esterror")?.parse().ok()?,
        })
    }
}

/// Reads the clock state with `adjtimex(2)` and `modes = 0`: a pure query.
#[cfg(target_os = "linux")]
fn read_kernel_clock() -> Result<KernelClock, HostError> {
    // SAFETY: `timex` is plain data; zeroed means `modes = 0`, which only reads.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live, writable `timex`.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(io_error("adjtimex", &std::io::Error::last_os_error()));
    }
    Ok(KernelClock {
        state,
        status: tx.status,
        max_error_us: tx.maxerror as i64,
        est_error_us: tx.esterror as i64,
    })
}

#[cfg(not(target_os = "linux"))]
fn read_kernel_clock() -> Result<KernelClock, HostError> {
    Err(HostError::NotFound { program: "adjtimex".to_string() })
}

/// Largest file the agent reads as evidence.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Most output kept from one command.
const MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;

/// The real machine, with a per-command time limit.
#[derive(Debug, Clone)]
pub struct SystemHost {
    pub command_timeout: Duration,
}

impl Default for SystemHost {
    fn default() -> Self {
        SystemHost { command_timeout: Duration::from_secs(30) }
    }
}

fn io_error(what: &str, e: &std::io::Error) -> HostError {
    match e.kind() {
        std::io::ErrorKind::NotFound => HostError::NoFile { path: what.to_string() },
        std::io::ErrorKind::PermissionDenied => HostError::PermissionDenied { what: what.to_string() },
        _ => HostError::Io { what: what.to_string(), message: e.to_string() },
    }
}

impl Host for SystemHost {
    fn run_for(&self, program: &str, args: &[&str], limit: Duration) -> Result<CommandOutput, HostError> {
        SystemHost { command_timeout: limit }.run(program, args)
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<CommandOutput, HostError> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Parsers expect untranslated output.
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => HostError::NotFound { program: program.to_string() },
                _ => io_error(program, &e),
            })?;
        // Drain both pipes on threads so a chatty command cannot block on a full pipe.
        let drain = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = r.by_ref().take(MAX_OUTPUT_BYTES as u64).read_to_end(&mut buf);
                // Keep reading so the child never blocks, discarding the excess.
                let _ = std::io::copy(&mut r, &mut std::io::sink());
                buf
            })
        };
        let out = child.stdout.take().map(|s| drain(Box::new(s)));
        let err = child.stderr.take().map(|s| drain(Box::new(s)));
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= self.command_timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HostError::Timeout {
                        program: program.to_string(),
                        secs: self.command_timeout.as_secs(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(io_error(program, &e)),
            }
        };
        let text = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Ok(CommandOutput { code: status.code(), stdout: text(out), stderr: text(err) })
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError> {
        let f = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
        let mut buf = Vec::new();
        f.take(MAX_FILE_BYTES).read_to_end(&mut buf).map_err(|e| io_error(path, &e))?;
        Ok(buf)
    }

    fn exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }

    fn kernel_clock(&self) -> Result<KernelClock, HostError> {
        read_kernel_clock()
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>, HostError> {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .map_err(|e| io_error(path, &e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// Replays recorded output: commands keyed by their full command line, files
/// by path. Anything not recorded behaves as absent (program not installed,
/// no such file), exactly like a machine without it.
#[derive(Debug, Clone, Default)]
pub struct FixtureHost {
    commands: HashMap<String, Result<CommandOutput, HostError>>,
    files: HashMap<String, Result<Vec<u8>, HostError>>,
    /// Directory listings recorded as such (otherwise derived from `files`).
    dirs: HashMap<String, Vec<String>>,
    /// Paths recorded only as existing (a binary looked for, not read).
    present: std::collections::HashSet<String>,
}

impl FixtureHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a successful command with `stdout`.
    pub fn command(mut self, cmdline: &str, stdout: &str) -> Self {
        let out = CommandOutput { code: Some(0), stdout: stdout.to_string(), stderr: String::new() };
        self.commands.insert(cmdline.to_string(), Ok(out));
        self
    }

    /// Records a command with a full result (exit code, stderr, or an error).
    pub fn command_result(mut self, cmdline: &str, result: Result<CommandOutput, HostError>) -> Self {
        self.commands.insert(cmdline.to_string(), result);
        self
    }

    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.to_string(), Ok(contents.into()));
        self
    }

    /// Records a file that exists but cannot be read (e.g. permission denied).
    pub fn file_error(mut self, path: &str, error: HostError) -> Self {
        self.files.insert(path.to_string(), Err(error));
        self
    }

    /// Records a path that exists but whose contents were never read.
    pub fn present(mut self, path: &str) -> Self {
        self.present.insert(path.to_string());
        self
    }

    /// Records a directory listing.
    pub fn dir(mut self, path: &str, mut entries: Vec<String>) -> Self {
        entries.sort();
        self.dirs.insert(path.trim_end_matches('/').to_string(), entries);
        self
    }

    /// Loads a fixture file relative to a crate's directory (for tests).
    pub fn fixture(dir: &Path, name: &str) -> String {
        let path: PathBuf = dir.join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
    }
}

impl Host for FixtureHost {
    fn run(&self, program: &str, args: &[&str]) -> Result<CommandOutput, HostError> {
        let mut cmdline = program.to_string();
        for a in args {
            cmdline.push(' ');
            cmdline.push_str(a);
        }
        self.commands
            .get(&cmdline)
            .cloned()
            .unwrap_or_else(|| Err(HostError::NotFound { program: program.to_string() }))
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError> {
        self.files.get(path).cloned().unwrap_or_else(|| Err(HostError::NoFile { path: path.to_string() }))
    }

    fn exists(&self, path: &str) -> bool {
        self.present.contains(path) || self.read_file(path).is_ok() || self.read_dir(path).is_ok()
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>, HostError> {
        if let Some(entries) = self.dirs.get(path.trim_end_matches('/')) {
            return Ok(entries.clone());
        }
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect();
        if names.is_empty() {
            return Err(HostError::NoFile { path: path.to_string() });
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_host_runs_commands_and_reports_missing_programs() {
        let host = SystemHost::default();
        let out = host.run("sh", &["-c", "echo hi; echo err >&2; exit 3"]).unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.stderr, "err\n");
        assert!(matches!(host.run("custos-no-such-program", &[]), Err(HostError::NotFound { .. })));
    }

    #[test]
    fn system_host_kills_a_hanging_command() {
        let host = SystemHost { command_timeout: Duration::from_millis(200) };
        let started = Instant::now();
        let err = host.run("sleep", &["30"]).unwrap_err();
        assert!(matches!(err, HostError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn system_host_reads_files_and_dirs() {
        let host = SystemHost::default();
        assert!(host.read_text("/proc/self/status").unwrap().contains("Name:"));
        assert!(host.read_dir("/proc/self").unwrap().contains(&"status".to_string()));
        assert!(matches!(host.read_file("/no/such/file"), Err(HostError::NoFile { .. })));
    }

    #[test]
    fn the_kernel_clock_reading_is_recorded_and_replayed_unchanged() {
        let clock = SystemHost::default().kernel_clock();
        if cfg!(target_os = "linux") {
            let clock = clock.unwrap();
            assert!(clock.max_error_us >= 0 && clock.max_error_us <= KernelClock::UNSYNC_MAX_ERROR_US);
            let replayed = FixtureHost::new().file(KERNEL_CLOCK, clock.render()).kernel_clock().unwrap();
            assert_eq!(replayed, clock);
        }
        let steered = KernelClock { state: 0, status: 0x2001, max_error_us: 250_000, est_error_us: 12 };
        assert!(steered.steered());
        assert!(!KernelClock { max_error_us: 16_000_000, status: 0x40, ..steered }.steered());
        assert!(matches!(FixtureHost::new().kernel_clock(), Err(HostError::NoFile { .. })));
        let bad = FixtureHost::new().file(KERNEL_CLOCK, "state x").kernel_clock().unwrap_err();
        assert!(bad.to_string().contains("not a kernel clock reading"), "{bad}");
    }

    #[test]
    fn fixture_host_replays_and_lists() {
        let host = FixtureHost::new()
            .command("nft -j list ruleset", "{}")
            .file("/sys/block/dm-0/dm/uuid", "CRYPT-LUKS2-abc")
            .file("/sys/block/sda/size", "1");
        assert_eq!(host.run("nft", &["-j", "list", "ruleset"]).unwrap().stdout, "{}");
        assert!(matches!(host.run("ufw", &["status"]), Err(HostError::NotFound { .. })));
        assert_eq!(host.read_dir("/sys/block").unwrap(), vec!["dm-0", "sda"]);
        assert!(host.exists("/sys/block/dm-0"));
        assert!(!host.exists("/sys/block/sdb"));
    }
}
