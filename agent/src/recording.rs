//! Recorded hosts: a directory that captures everything the collectors asked
//! one machine (commands and their output, files, directory listings), so the
//! same collection can be replayed anywhere through a [`FixtureHost`].
//!
//! `custos-agent record DIR` writes one with a [`RecordingHost`]; the tests
//! under `agent/tests/cases/` are such directories, recorded on real hosts
//! or written in the exact output formats of systems that cannot run here.
//!
//! Layout of a case directory:
//! - `host.toml`: `os`, `now` (RFC 3339, the collection time), a
//!   `description`, and `[[command]]`, `[[file]]`, `[[dir]]` entries. Output
//!   is inline (`stdout`, `contents`) or in a file beside it (`stdout_file`,
//!   `contents_file`); a failure is `error = "not_found" | "permission_denied"
//!   | "timeout" | "no_file"`.
//! - `expected.toml`: per check, the status and what the finding must show
//!   (see `agent/tests/cases.rs`).
//!
//! Invariant: recording never writes the host's name, machine id or serial
//! numbers; they are replaced by placeholders before anything reaches disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::collect::{Context, Os};
use crate::host::{CommandOutput, FixtureHost, Host, HostError};

mod expected;
pub use expected::{Expected, ExpectedCheck};

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

/// `host.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    pub os: Option<Os>,
    /// RFC 3339 collection time.
    pub now: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, rename = "command", skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandEntry>,
    #[serde(default, rename = "file", skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    #[serde(default, rename = "dir", skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirEntry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandEntry {
    pub argv: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The path was only tested for existence (e.g. a program looked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    pub path: String,
    pub entries: Vec<String>,
}

/// A loaded case: the replaying host and the context of its collection.
pub struct Recorded {
    pub host: FixtureHost,
    pub os: Os,
    pub now: i64,
    pub description: String,
}

impl Recorded {
    pub fn context(&self) -> Context {
        Context::at(self.now)
    }
}

fn error_tag(e: &HostError) -> String {
    match e {
        HostError::NotFound { .. } => "not_found".into(),
        HostError::PermissionDenied { .. } => "permission_denied".into(),
        HostError::Timeout { .. } => "timeout".into(),
        HostError::NoFile { .. } => "no_file".into(),
        HostError::Io { message, .. } => format!("io: {message}"),
    }
}

fn error_from_tag(tag: &str, what: &str) -> HostError {
    let what = what.to_string();
    match tag {
        "not_found" => HostError::NotFound { program: what },
        "permission_denied" => HostError::PermissionDenied { what },
        "timeout" => HostError::Timeout { program: what, secs: 30 },
        "no_file" => HostError::NoFile { path: what },
        other => HostError::Io { what, message: other.trim_start_matches("io: ").to_string() },
    }
}

/// Loads a case directory.
pub fn load(dir: &Path) -> Result<Recorded, RecordingError> {
    let manifest = dir.join("host.toml");
    let io = |path: &Path, e: std::io::Error| RecordingError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let format = |message: String| RecordingError::Format { path: manifest.clone(), message };
    let text = std::fs::read_to_string(&manifest).map_err(|e| io(&manifest, e))?;
    let file: HostFile = toml::from_str(&text).map_err(|e| format(e.to_string()))?;
    let os = file.os.ok_or_else(|| format("`os` is missing".into()))?;
    let now = match &file.now {
        Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format(format!("now = {t:?}: {e}")))?
            .unix_timestamp(),
        None => return Err(format("`now` is missing".into())),
    };
    let read_beside = |name: &str| -> Result<Vec<u8>, RecordingError> {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| io(&p, e))
    };
    let mut host = FixtureHost::new();
    for c in &file.commands {
        let line = c.argv.join(" ");
        let program = c.argv.first().cloned().unwrap_or_default();
        let result = match &c.error {
            Some(tag) => Err(error_from_tag(tag, &program)),
            None => {
                let stdout = match (&c.stdout, &c.stdout_file) {
                    (Some(s), None) => s.clone(),
                    (None, Some(f)) => String::from_utf8_lossy(&read_beside(f)?).into_owned(),
                    (None, None) => String::new(),
                    (Some(_), Some(_)) => return Err(format(format!("{line}: both stdout and stdout_file"))),
                };
                Ok(CommandOutput {
                    code: c.exit.or(Some(0)),
                    stdout,
                    stderr: c.stderr.clone().unwrap_or_default(),
                })
            }
        };
        host = host.command_result(&line, result);
    }
    for f in &file.files {
        host = match (&f.error, &f.contents, &f.contents_file, f.exists) {
            (Some(tag), None, None, None) => host.file_error(&f.path, error_from_tag(tag, &f.path)),
            (None, Some(c), None, None) => host.file(&f.path, c.as_bytes()),
            (None, None, Some(name), None) => host.file(&f.path, read_beside(name)?),
            (None, None, None, Some(true)) => host.present(&f.path),
            _ => {
                return Err(format(format!(
                    "{}: give exactly one of contents, contents_file, error, exists = true",
                    f.path
                )));
            }
        };
    }
    for d in &file.dirs {
        host = host.dir(&d.path, d.entries.clone());
    }
    Ok(Recorded { host, os, now, description: file.description })
}

/// One call the collectors made, with its answer.
enum Call {
    Run { argv: Vec<String>, result: Result<CommandOutput, HostError> },
    Read { path: String, result: Result<Vec<u8>, HostError> },
    List { path: String, result: Result<Vec<String>, HostError> },
    Exists { path: String, present: bool },
}

/// Passes every call through to the real host and remembers it.
pub struct RecordingHost {
    inner: Arc<dyn Host>,
    calls: Mutex<Vec<Call>>,
}

impl RecordingHost {
    pub fn new(inner: Arc<dyn Host>) -> Self {
        RecordingHost { inner, calls: Mutex::new(Vec::new()) }
    }

    fn remember(&self, call: Call) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }

    /// Writes the case directory: `host.toml` plus one file per larger output.
    /// Every occurrence of a `scrub` value is replaced by its placeholder.
    pub fn write(&self, dir: &Path, os: Os, now: &str, scrub: &Scrub) -> Result<HostFile, RecordingError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let calls = self.calls.lock().map_err(|_| RecordingError::Io {
            path: dir.to_path_buf(),
            message: "a collector panicked while recording".into(),
        })?;
        let mut out = OutputFiles { dir, names: BTreeMap::new() };
        let mut file = HostFile { os: Some(os), now: Some(now.to_string()), ..HostFile::default() };
        // Each distinct call once, in the order the collectors made them.
        let mut seen = std::collections::HashSet::new();
        for call in calls.iter() {
            match call {
                Call::Run { argv, result } if seen.insert(format!("run {}", argv.join(" "))) => {
                    file.commands.push(command_entry(argv, result, scrub, &mut out)?);
                }
                Call::Read { path, result } if seen.insert(format!("read {path}")) => {
                    file.files.extend(file_entry(path, result, scrub, &mut out)?);
                }
                Call::Exists { path, present } => {
                    // A read of the same path, recorded before or after, says more.
                    let read =
                        calls.iter().any(|c| matches!(c, Call::Read { path: p, result: Ok(_) } if p == path));
                    if *present && !read && seen.insert(format!("exists {path}")) {
                        file.files.push(FileEntry {
                            path: path.clone(),
                            exists: Some(true),
                            ..FileEntry::default()
                        });
                    }
                }
                Call::List { path, result: Ok(entries) } if seen.insert(format!("list {path}")) => {
                    let entries = entries.iter().map(|n| scrub.text(n)).collect();
                    file.dirs.push(DirEntry { path: path.clone(), entries });
                }
                _ => {}
            }
        }
        write_manifest(dir, &file)?;
        Ok(file)
    }
}

fn io_error(path: &Path, e: std::io::Error) -> RecordingError {
    RecordingError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// Outputs too long for `host.toml`, written beside it under names made
/// from what produced them (unique within the case).
struct OutputFiles<'a> {
    dir: &'a Path,
    names: BTreeMap<String, usize>,
}

impl OutputFiles<'_> {
    /// Writes `body` beside the manifest; the file's name.
    fn beside(&mut self, stem: &str, body: &[u8]) -> Result<String, RecordingError> {
        let mut name: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
            .collect();
        name.truncate(60);
        let n = self.names.entry(name.clone()).or_default();
        *n += 1;
        if *n > 1 {
            name = format!("{name}_{n}");
        }
        name.push_str(".out");
        let p = self.dir.join(&name);
        std::fs::write(&p, body).map_err(|e| io_error(&p, e))?;
        Ok(name)
    }
}

/// Whether a text is short enough to stand inline in `host.toml`.
fn inline(text: &str) -> bool {
    text.len() <= 200 && text.lines().count() <= 3
}

/// A command's entry: its scrubbed arguments and output, or its error.
fn command_entry(
    argv: &[String],
    result: &Result<CommandOutput, HostError>,
    scrub: &Scrub,
    out: &mut OutputFiles,
) -> Result<CommandEntry, RecordingError> {
    let argv: Vec<String> = argv.iter().map(|a| scrub.text(a)).collect();
    let mut e = CommandEntry { argv: argv.clone(), ..CommandEntry::default() };
    match result {
        Err(err) => e.error = Some(error_tag(err)),
        Ok(o) => {
            e.exit = o.code;
            let stdout = scrub.text(&o.stdout);
            if !inline(&stdout) {
                e.stdout_file = Some(out.beside(&argv.join("_"), stdout.as_bytes())?);
            } else if !stdout.is_empty() {
                e.stdout = Some(stdout);
            }
            let stderr = scrub.text(&o.stderr);
            e.stderr = (!stderr.is_empty()).then_some(stderr);
        }
    }
    Ok(e)
}

/// A file's entry: its scrubbed contents (binary ones beside, as they
/// are), or its error; `None` for a file that does not exist, which a
/// replay reports anyway.
fn file_entry(
    path: &str,
    result: &Result<Vec<u8>, HostError>,
    scrub: &Scrub,
    out: &mut OutputFiles,
) -> Result<Option<FileEntry>, RecordingError> {
    let mut e = FileEntry { path: path.to_string(), ..FileEntry::default() };
    match result {
        Err(HostError::NoFile { .. }) => return Ok(None),
        Err(err) => e.error = Some(error_tag(err)),
        Ok(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if inline(text) => e.contents = Some(scrub.text(text)),
            Ok(text) => e.contents_file = Some(out.beside(path, scrub.text(text).as_bytes())?),
            Err(_) => e.contents_file = Some(out.beside(path, bytes)?),
        },
    }
    Ok(Some(e))
}

/// Writes `host.toml`.
fn write_manifest(dir: &Path, file: &HostFile) -> Result<(), RecordingError> {
    let manifest = dir.join("host.toml");
    let text = toml::to_string(file)
        .map_err(|e| RecordingError::Format { path: manifest.clone(), message: e.to_string() })?;
    std::fs::write(&manifest, text).map_err(|e| io_error(&manifest, e))
}

impl Host for RecordingHost {
    fn run(&self, program: &str, args: &[&str]) -> Result<CommandOutput, HostError> {
        let result = self.inner.run(program, args);
        let mut argv = vec![program.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        self.remember(Call::Run { argv, result: result.clone() });
        result
    }

    fn run_for(
        &self,
        program: &str,
        args: &[&str],
        limit: std::time::Duration,
    ) -> Result<CommandOutput, HostError> {
        let result = self.inner.run_for(program, args, limit);
        let mut argv = vec![program.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        self.remember(Call::Run { argv, result: result.clone() });
        result
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError> {
        let result = self.inner.read_file(path);
        self.remember(Call::Read { path: path.to_string(), result: result.clone() });
        result
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>, HostError> {
        let result = self.inner.read_dir(path);
        self.remember(Call::List { path: path.to_string(), result: result.clone() });
        result
    }

    fn kernel_clock(&self) -> Result<crate::host::KernelClock, HostError> {
        let result = self.inner.kernel_clock();
        let bytes = result.clone().map(|k| k.render().into_bytes());
        self.remember(Call::Read { path: crate::host::KERNEL_CLOCK.to_string(), result: bytes });
        result
    }

    fn exists(&self, path: &str) -> bool {
        // Recorded as existence only: reading a program to see that it is
        // there would copy the binary into the recording.
        let present = self.inner.exists(path);
        self.remember(Call::Exists { path: path.to_string(), present });
        present
    }
}

/// Identifying values to replace before a recording is written.
#[derive(Debug, Clone, Default)]
pub struct Scrub {
    pairs: Vec<(String, &'static str)>,
}

impl Scrub {
    /// Values read off the host: its names, machine id and hardware serials.
    pub fn of_host(host: &dyn Host) -> Scrub {
        let mut s = Scrub::default();
        let read = |p: &str| host.read_text(p).ok().map(|t| t.trim().to_string());
        if let Some(h) = read("/proc/sys/kernel/hostname") {
            // The short name too, before the FQDN would leave it half replaced.
            if let Some((short, _)) = h.split_once('.') {
                s.add(&h, "<hostname>");
                s.add(short, "<hostname>");
            } else {
                s.add(&h, "<hostname>");
            }
        }
        for (path, placeholder) in [
            ("/etc/machine-id", "<machine-id>"),
            ("/sys/class/dmi/id/product_serial", "<serial>"),
            ("/sys/class/dmi/id/board_serial", "<serial>"),
            ("/sys/class/dmi/id/chassis_serial", "<serial>"),
            ("/sys/class/dmi/id/product_uuid", "<system-uuid>"),
        ] {
            if let Some(v) = read(path) {
                s.add(&v, placeholder);
            }
        }
        s
    }

    /// Adds a value; values shorter than 3 characters are ignored, they would
    /// replace too much.
    pub fn add(&mut self, value: &str, placeholder: &'static str) {
        if value.len() >= 3 && !self.pairs.iter().any(|(v, _)| v == value) {
            self.pairs.push((value.to_string(), placeholder));
            // Longest first, so an FQDN is replaced before its short name.
            self.pairs.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        }
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (value, placeholder) in &self.pairs {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), placeholder);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_replays_what_was_seen_without_identifying_values() {
        let real: Arc<dyn Host> = Arc::new(
            FixtureHost::new()
                .command("hostnamectl", "Static hostname: web-17.example.org\nMachine ID: 0123456789abcdef\n")
                .file("/etc/hostname", "web-17.example.org\n")
                .file("/etc/secret.bin", vec![0xff, 0x00, 0x01])
                .file_error("/etc/shadow", HostError::PermissionDenied { what: "/etc/shadow".into() })
                .dir("/boot", vec!["vmlinuz-6.1.0".into()]),
        );
        let rec = RecordingHost::new(real);
        let _ = rec.run("hostnamectl", &[]);
        let _ = rec.run("missing-tool", &["--flag"]);
        let _ = rec.read_file("/etc/hostname");
        let _ = rec.read_file("/etc/secret.bin");
        let _ = rec.read_file("/etc/shadow");
        let _ = rec.read_dir("/boot");
        assert!(rec.exists("/etc/hostname"));
        assert!(!rec.exists("/usr/sbin/nothing"));
        let mut scrub = Scrub::default();
        scrub.add("web-17.example.org", "<hostname>");
        scrub.add("web-17", "<hostname>");
        scrub.add("0123456789abcdef", "<machine-id>");
        let dir = tempfile::tempdir().unwrap();
        rec.write(dir.path(), Os::Linux, "2026-11-23T12:00:00Z", &scrub).unwrap();
        let on_disk: String = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        assert!(!on_disk.contains("web-17") && !on_disk.contains("0123456789"), "{on_disk}");

        let replay = load(dir.path()).unwrap();
        assert_eq!(replay.os, Os::Linux);
        assert_eq!(replay.now, 1_795_435_200);
        let h = &replay.host;
        assert!(h.run("hostnamectl", &[]).unwrap().stdout.contains("Static hostname: <hostname>"));
        assert!(matches!(h.run("missing-tool", &["--flag"]), Err(HostError::NotFound { .. })));
        assert_eq!(h.read_text("/etc/hostname").unwrap(), "<hostname>\n");
        assert_eq!(h.read_file("/etc/secret.bin").unwrap(), vec![0xff, 0x00, 0x01]);
        assert!(matches!(h.read_file("/etc/shadow"), Err(HostError::PermissionDenied { .. })));
        assert_eq!(h.read_dir("/boot").unwrap(), vec!["vmlinuz-6.1.0"]);
        assert!(h.exists("/etc/hostname") && !h.exists("/usr/sbin/nothing"));
    }

    #[test]
    fn a_bad_manifest_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("host.toml"), "os = \"plan9\"\nnow = \"2026-11-23T12:00:00Z\"\n")
            .unwrap();
        let e = load(dir.path()).err().unwrap().to_string();
        assert!(e.contains("host.toml") && e.contains("plan9"), "{e}");
        std::fs::write(dir.path().join("host.toml"), "os = \"linux\"\nnow = \"yesterday\"\n").unwrap();
        let e = load(dir.path()).err().unwrap().to_string();
        assert!(e.contains("yesterday"), "{e}");
    }
}
