//! The server steers when agents collect: per-check intervals from the
//! policy, and an operator's "collect now" reaching a running agent at its
//! next policy poll. Real server, real agent loop, over mTLS on loopback.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use custos_agent::host::{FixtureHost, Host};
use custos_proto::evidence::Statement;
use custos_server::config::Config;
use custos_tests::{TestAgent, TestServer};

/// The check ids of each stored record of `agent`, in order.
fn records(server: &TestServer, agent: &str) -> Vec<BTreeSet<String>> {
    let stored = server.handle().store.records_of(agent).unwrap();
    stored
        .iter()
        .map(|r| {
            Statement::from_payload(&r.payload).unwrap().predicate.checks.into_iter().map(|c| c.id).collect()
        })
        .collect()
}

async fn wait_records(server: &TestServer, agent: &str, n: usize, within: Duration) -> Vec<BTreeSet<String>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let r = records(server, agent);
        if r.len() >= n || tokio::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_keep_their_own_intervals_and_operators_get_a_fresh_collection() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.policy.checks = vec!["firewall".into(), "os_support".into()];
    config.policy.interval_seconds = 10;
    config.policy.check_interval_seconds.insert("os_support".into(), 86_400);
    config.policy.jitter_percent = 0;
    config.policy.poll_seconds = 5;
    let server = TestServer::start_in(&tmp.path().join("server"), config).await;
    // Nothing recorded: every check reports unknown, at once.
    let host: Arc<dyn Host> = Arc::new(FixtureHost::new());
    let a = TestAgent::enroll(&server, "scheduled", host).await;
    let id = a.id();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut agent = a.agent;
    // The agent's loop holds its SQLite spool across awaits: it runs on its
    // own thread, as in the agent binary.
    let running = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(agent.run_forever(async {
            let _ = stop_rx.await;
        }))
    });

    // At start every check of the policy runs.
    let r = wait_records(&server, &id, 1, Duration::from_secs(10)).await;
    assert_eq!(r.first(), Some(&set(&["firewall", "os_support"])), "{r:?}");
    // Ten seconds later only the firewall is due again.
    let r = wait_records(&server, &id, 2, Duration::from_secs(20)).await;
    assert_eq!(r.get(1), Some(&set(&["firewall"])), "{r:?}");

    // An operator asks for everything now: an admin token may, a read token may not.
    let (status, body) =
        server.post_with(&format!("/api/v1/agents/{id}/collect"), Some(&server.admin_token)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["collect_now_generation"], 1);
    let seen = r.len();
    let r = wait_records(&server, &id, seen + 1, Duration::from_secs(9)).await;
    assert!(r[seen..].iter().any(|c| c.contains("os_support")), "no fresh full collection: {r:?}");

    let (status, _) =
        server.post_with("/api/v1/agents/0123456789abcdef/collect", Some(&server.admin_token)).await;
    assert_eq!(status, 404);
    stop_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || running.join().unwrap().unwrap()).await.unwrap();
}
