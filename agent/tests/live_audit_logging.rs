//! Live `audit_logging` test: the kernel's audit system and the real auditd,
//! writing to a scratch log, decide whether a watch rule records anything;
//! the agent's reading of `auditctl` must agree. For each rule set (a plain
//! watch, the watch after an unconditional `-a never,task` or
//! `-a never,exit`, after a conditional `never` rule, and auditing switched
//! off), a new process writes to the watched directory, and the truth is
//! whether the scratch log holds an event with the state's key. The agent
//! claims recording when auditing is on and it counts an effective rule
//! (`audit_rules_effective`).
//!
//! Kernel auditing is one per machine, not per namespace, so the test runs
//! only on a machine where it is unused (off, no rules, no daemon) and puts
//! it back so, whatever happens. auditd's binaries come unpacked from
//! Debian's package (`CUSTOS_AUDIT_ROOT`, which CI prepares; installing the
//! package would start the daemon for good); outside CI the test says why
//! and stops when they or root are missing. `UPDATE_EXPECT=1` records the
//! states as cases `tests/cases/linux-audit_logging-kernel-*`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// auditd and auditctl unpacked, with the library auditd needs.
struct Tools {
    sbin: PathBuf,
    lib: PathBuf,
}

impl Tools {
    fn find() -> Result<Tools, String> {
        let root = std::env::var_os("CUSTOS_AUDIT_ROOT").ok_or("CUSTOS_AUDIT_ROOT is not set")?;
        let root = PathBuf::from(root);
        let t = Tools { sbin: root.join("sbin"), lib: root.join("lib/x86_64-linux-gnu") };
        match t.sbin.join("auditd").exists() && t.sbin.join("auditctl").exists() {
            true => Ok(t),
            false => Err(format!("no auditd under {}", root.display())),
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.sbin.join(program));
        c.env("LD_LIBRARY_PATH", &self.lib);
        c
    }

    /// Runs auditctl; its output.
    fn auditctl(&self, args: &[&str]) -> String {
        let out = self.command("auditctl").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

/// The daemon, and the machine's audit state put back when dropped.
struct Daemon<'a> {
    tools: &'a Tools,
    child: Child,
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        // SIGTERM: auditd then unregisters from the kernel (a killed one
        // stays registered); then the rules go and auditing is off again.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        self.tools.auditctl(&["-D"]);
        self.tools.auditctl(&["-e", "0"]);
    }
}

/// Whether kernel auditing is unused here: off, no rules, no daemon.
fn unused(tools: &Tools) -> bool {
    let status = tools.auditctl(&["-s"]);
    status.lines().any(|l| l == "enabled 0")
        && status.lines().any(|l| l == "pid 0")
        && tools.auditctl(&["-l"]).trim() == "No rules"
}

/// Starts auditd in the foreground, logging to `dir/audit.log`.
fn start(tools: &Tools, dir: &Path) -> Child {
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("plugins.d")).unwrap();
    let shipped = tools.sbin.join("../etc/audit/auditd.conf");
    let text = std::fs::read_to_string(&shipped).unwrap_or_else(|e| panic!("{}: {e}", shipped.display()));
    let text: String = text
        .lines()
        .map(|l| match l.split_once('=').map(|(k, _)| k.trim()) {
            Some("log_file") => format!("log_file = {}", dir.join("audit.log").display()),
            Some("plugin_dir") => format!("plugin_dir = {}", conf.join("plugins.d").display()),
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(conf.join("auditd.conf"), text).unwrap();
    tools.command("auditd").arg("-n").arg("-c").arg(&conf).spawn().unwrap()
}

impl Daemon<'_> {
    /// Waits until auditd has registered with the kernel.
    fn registered(&self) {
        for _ in 0..100 {
            if !self.tools.auditctl(&["-s"]).contains("pid 0") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("auditd did not register with the kernel");
    }
}

/// The agent's finding, with the unpacked auditctl first on its PATH.
fn agent_says(tools: &Tools, name: &str) -> serde_json::Value {
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    let path = format!("{}:{}", tools.sbin.display(), std::env::var("PATH").unwrap_or_default());
    let run = |args: &[&str]| {
        let out =
            Command::new(agent).args(args).env("PATH", &path).env("LD_LIBRARY_PATH", &tools.lib).output();
        out.unwrap()
    };
    let out = run(&["collect", "--json", "--check", "audit_logging"]);
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        let case = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/cases/linux-audit_logging-kernel-{name}"));
        let _ = std::fs::remove_dir_all(&case);
        let description =
            format!("kernel audit rules {name} of live_audit_logging.rs, judged by auditd's log");
        let case = case.display().to_string();
        let rec = run(&["record", &case, "--check", "audit_logging", "--description", &description]);
        assert!(rec.status.success(), "recording {name}: {}", String::from_utf8_lossy(&rec.stderr));
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["checks"][0].clone()
}

#[test]
fn the_agent_counts_as_recording_exactly_the_rules_that_record() {
    let tools = match Tools::find() {
        Ok(t)
            if std::fs::read_to_string("/proc/self/uid_map")
                .is_ok_and(|m| m.split_whitespace().nth(2) == Some("4294967295")) =>
        {
            t
        }
        Ok(_) => {
            return assert!(
                std::env::var_os("CI").is_none(),
                "the live audit test needs the initial user namespace in CI"
            );
        }
        Err(why) => {
            assert!(std::env::var_os("CI").is_none(), "the live audit test cannot run in CI: {why}");
            return eprintln!("skipping the live audit test: {why}");
        }
    };
    if !unused(&tools) {
        assert!(std::env::var_os("CI").is_none(), "kernel auditing is in use on the CI machine");
        return eprintln!("skipping the live audit test: kernel auditing is in use on this machine");
    }
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).unwrap();
    let daemon = Daemon { tools: &tools, child: start(&tools, dir.path()) };
    daemon.registered();
    let w = watched.display();
    // (state, rules before the watch, auditing on, whether the watch records)
    let states = [
        ("watch", "", true, true),
        ("never-task", "-a never,task\n", true, false),
        ("never-exit", "-a never,exit -F arch=b64 -S all\n", true, false),
        ("never-exit-conditional", "-a never,exit -F arch=b64 -S all -F uid=4242\n", true, true),
        ("disabled", "", false, false),
    ];
    for (name, before, on, records) in states {
        daemon.tools.auditctl(&["-D"]);
        let rules = format!("{before}-w {w} -p wa -k custos-{name}\n");
        std::fs::write(dir.path().join("rules"), &rules).unwrap();
        let loaded = daemon.tools.auditctl(&["-R", &dir.path().join("rules").display().to_string()]);
        daemon.tools.auditctl(&["-e", if on { "1" } else { "0" }]);
        // A new process, as the never,task rule concerns tasks created after it.
        let touched = Command::new("sh").arg("-c").arg(format!("echo x >> '{w}/{name}'")).status().unwrap();
        assert!(touched.success());
        std::thread::sleep(std::time::Duration::from_millis(500));
        let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap_or_default();
        // Loading a rule logs a CONFIG_CHANGE with its key too: only the
        // write's own SYSCALL record counts.
        let key = format!("key=\"custos-{name}\"");
        let recorded = log.lines().any(|l| l.starts_with("type=SYSCALL") && l.contains(&key));
        assert_eq!(recorded, records, "{name}: the kernel's own log changed its mind ({loaded})");
        let f = agent_says(daemon.tools, name);
        let facts = &f["facts"];
        let claims = facts["audit_enabled"].as_u64().is_some_and(|e| e != 0)
            && facts["audit_rules_effective"].as_u64().is_some_and(|n| n > 0);
        assert_eq!(claims, recorded, "{name}: the log says {recorded}, the agent: {f:#}");
    }
}
