//! Enrollment on install, as IT does it: the package leaves the server's
//! address, the CA certificate and a one-time token in a 0600 file, and the
//! agent's first `run` enrolls with it, deletes it and delivers. Run against
//! a real server with the real `custos-agent` binary.
//!
//! Also: an enrolled agent never enrolls again (a reinstall's new token is
//! left unspent and deleted), and an agent with nothing to enroll with, or
//! with material that cannot serve, does not collect and exits with the
//! status the unit does not restart on (78), saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use custos_agent::state::StateDir;
use custos_tests::{TestServer, workspace_binary};

/// What the agent reads, in a temporary directory of its own.
struct Install {
    dir: tempfile::TempDir,
}

impl Install {
    fn new(server: &TestServer) -> Install {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), server.ca_pem()).expect("write CA");
        std::fs::write(dir.path().join("agent.toml"), "").expect("write config");
        Install { dir }
    }

    fn state(&self) -> StateDir {
        StateDir(self.dir.path().join("state"))
    }

    fn enroll_file(&self) -> PathBuf {
        self.dir.path().join("enroll.env")
    }

    /// Writes the enrollment file as the package does, with `mode`.
    fn write_enroll_file(&self, server: &str, token: &str, mode: u32) {
        let ca = self.dir.path().join("ca.pem");
        let text = format!(
            "# written at install\nCUSTOS_SERVER={server}\nCUSTOS_ENROLL_TOKEN={token}\n\
             CUSTOS_CA_CERT={}\nCUSTOS_DISPLAY_NAME=first-start-host\n",
            ca.display()
        );
        write_mode(&self.enroll_file(), &text, mode);
    }

    /// `custos-agent run --once` with this install's paths and no CUSTOS_*
    /// variable from the test's own environment.
    fn run_once(&self) -> Output {
        let mut cmd = Command::new(workspace_binary("custos-agent"));
        cmd.args(["run", "--once", "--state-dir"])
            .arg(&self.state().0)
            .arg("--enroll-file")
            .arg(self.enroll_file())
            .arg("--config")
            .arg(self.dir.path().join("agent.toml"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CUSTOS_")) {
            cmd.env_remove(key);
        }
        cmd.output().expect("custos-agent runs")
    }

    fn agent_id(&self) -> String {
        self.state().load_identity().expect("enrolled state dir").agent_id
    }
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("write file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn first_run_enrolls_deletes_the_token_and_delivers() {
    let server = TestServer::start().await;
    let install = Install::new(&server);
    install.write_enroll_file(&server.grpc(), &server.token(1), 0o600);

    let out = install.run_once();
    assert!(out.status.success(), "first run: {:?}\n{}", out.status, stderr(&out));
    assert!(!install.enroll_file().exists(), "the spent token is still on disk");
    let id = install.agent_id();
    // `--once` exits 0 only once the server acknowledged the record.
    let (status, host) = server.api(&format!("/api/v1/hosts/{id}")).await;
    assert_eq!(status, 200, "{host}");
    assert_eq!(host["display_name"], "first-start-host", "{host}");
    assert_eq!(host["evidence"], "current", "{host}");
    assert!(host["checks"].as_array().is_some_and(|c| !c.is_empty()), "{host}");

    // A reinstall with a new token: the agent keeps its identity, and the
    // token is deleted unspent (another host can still enroll with it).
    let fresh = server.token(1);
    install.write_enroll_file(&server.grpc(), &fresh, 0o600);
    let out = install.run_once();
    assert!(out.status.success(), "second run: {:?}\n{}", out.status, stderr(&out));
    assert_eq!(install.agent_id(), id, "the agent enrolled again");
    assert!(!install.enroll_file().exists(), "an ignored token is left on disk");
    assert!(stderr(&out).contains("already enrolled"), "{}", stderr(&out));
    let other = Install::new(&server);
    other.write_enroll_file(&server.grpc(), &fresh, 0o600);
    let out = other.run_once();
    assert!(out.status.success(), "the ignored token was spent: {}", stderr(&out));
    assert_ne!(other.agent_id(), id);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_material_the_agent_says_what_to_provide_and_does_not_collect() {
    let server = TestServer::start().await;
    let install = Install::new(&server);
    let out = install.run_once();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("CUSTOS_ENROLL_TOKEN") && err.contains("enroll.env"), "{err}");
    assert!(!install.state().0.exists(), "a state dir was made without enrollment");
}

#[tokio::test(flavor = "multi_thread")]
async fn material_that_cannot_serve_is_refused_and_kept_for_a_person() {
    let server = TestServer::start().await;

    // Readable by others: refused before it is used.
    let install = Install::new(&server);
    install.write_enroll_file(&server.grpc(), &server.token(1), 0o644);
    let out = install.run_once();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    assert!(!install.state().0.exists() && install.enroll_file().exists());

    // A token the server does not know: refused by the server, nothing kept
    // but the file, which a person must replace.
    let install = Install::new(&server);
    install.write_enroll_file(&server.grpc(), "not-a-token", 0o600);
    let out = install.run_once();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    assert!(!install.state().0.exists() && install.enroll_file().exists());

    // The server away: an ordinary failure (systemd starts the agent again
    // later), the token kept for that next start.
    let install = Install::new(&server);
    let token = server.token(1);
    install.write_enroll_file("127.0.0.1:9", &token, 0o600);
    let out = install.run_once();
    assert!(!out.status.success() && out.status.code() != Some(78), "{:?}: {}", out.status, stderr(&out));
    assert!(!install.state().0.exists() && install.enroll_file().exists());
}
