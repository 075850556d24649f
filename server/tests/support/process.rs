//! A real `custos-server` process for the tests and benchmarks that need one
//! (SIGKILL, peak memory): `init`, enrollment tokens, start, kill, and
//! enrolling an agent against it. Shared by `tests/crash.rs` and
//! `benches/ingest.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_custos-server");

pub struct ServerProcess {
    pub data: PathBuf,
    pub grpc: u16,
    pub http: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl ServerProcess {
    /// Runs `custos-server init` in `data` and picks free loopback ports.
    pub fn init(data: &Path) -> ServerProcess {
        let out = Command::new(BIN).args(["init", "--data-dir"]).arg(data).output().expect("run init");
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        ServerProcess { data: data.to_path_buf(), grpc: free_port(), http: free_port(), child: None }
    }

    pub fn start(&mut self) {
        let child = Command::new(BIN)
            .args(["run", "--data-dir"])
            .arg(&self.data)
            .args(["--grpc-listen", &self.addr(), "--http-listen", &format!("127.0.0.1:{}", self.http)])
            .env("CUSTOS_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start server");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown path of the server runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP, then SIGCONT: the kernel still accepts TCP connections for
    /// a stopped process, which never answers them, as a hung server does.
    #[allow(dead_code)] // only tests/hung_server.rs pauses the server
    pub fn pause(&self, paused: bool) {
        let signal = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} {} failed", self.pid());
    }

    #[allow(dead_code)] // only the benchmark and the pause read the pid
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc)
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.data.join("ca.pem")).expect("CA PEM")
    }

    /// A one-use enrollment token from `custos-server token create`.
    pub fn token(&self) -> String {
        let out = Command::new(BIN)
            .args(["token", "create", "--data-dir"])
            .arg(&self.data)
            .output()
            .expect("token");
        String::from_utf8(out.stdout).expect("utf8").trim().to_string()
    }

    /// Enrolls an agent in `state`, waiting for the server to come up.
    pub async fn enroll(
        &self,
        state: &custos_agent::state::StateDir,
        name: &str,
    ) -> custos_agent::state::AgentIdentity {
        let (token, ca) = (self.token(), self.ca_pem());
        for _ in 0..100 {
            match custos_agent::enroll::enroll(state, &self.addr(), &token, &ca, name).await {
                Ok(id) => return id,
                Err(custos_agent::enroll::EnrollError::Transport(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("enroll: {e}"),
            }
        }
        panic!("server on {} did not come up", self.addr());
    }

    /// An mTLS channel with the identity in `state`, retried while the server starts.
    #[allow(dead_code)] // tests/hung_server.rs lets the agent connect itself
    pub async fn channel(&self, state: &custos_agent::state::StateDir) -> tonic::transport::Channel {
        let (cert, key) = (
            std::fs::read_to_string(state.client_cert()).expect("client cert"),
            std::fs::read_to_string(state.tls_key()).expect("TLS key"),
        );
        for _ in 0..100 {
            if let Ok(c) = custos_agent::transport::connect(
                &self.addr(),
                "127.0.0.1",
                &self.ca_pem(),
                Some((&cert, &key)),
                &custos_agent::deadlines::Deadlines::default(),
            )
            .await
            {
                return c.channel;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server on {} did not come up", self.addr());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
