//! A server that stops answering (SIGSTOP: the kernel still accepts its TCP
//! connections, nobody completes a handshake) must not stop collection: the
//! agent's loop keeps collecting on schedule into the spool, each delivery
//! attempt ends at its deadline, and once the server runs again everything
//! collected meanwhile is delivered, each record once.

mod support {
    pub mod process;
}

use std::sync::Arc;
use std::time::Duration;

use custos_agent::deadlines::Deadlines;
use custos_agent::host::{FixtureHost, Host};
use custos_agent::runner::{Agent, Settings};
use custos_agent::spool::Spool;
use custos_server::config::Config;
use custos_server::datadir::DataDir;
use support::process::ServerProcess;

/// Records stored for `agent`, read from the database file directly (the
/// server may be stopped).
fn stored(server: &ServerProcess, agent: &str) -> usize {
    let store =
        custos_server::store::Store::open(&DataDir(server.data.clone()).database()).expect("open store");
    store.records_of(agent).expect("records").len()
}

fn spooled(state: &custos_agent::state::StateDir) -> u64 {
    Spool::open(&state.spool(), 10_000).and_then(|s| s.len()).expect("spool")
}

/// Polls `f` every 200 ms until it holds or `within` passes; returns whether it held.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_goes_on_while_the_server_is_paused_and_all_arrives_after() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::init(&tmp.path().join("server"));
    // A check every 10 s (the agent's floor), the policy polled every 5 s.
    let config_path = DataDir(server.data.clone()).config();
    let mut config = Config::load(&config_path).unwrap();
    config.policy.checks = vec!["os_support".into()];
    config.policy.interval_seconds = 10;
    config.policy.jitter_percent = 0;
    config.policy.poll_seconds = 5;
    std::fs::write(&config_path, config.to_toml()).unwrap();
    server.start();
    let state = custos_agent::state::StateDir(tmp.path().join("agent"));
    let id = server.enroll(&state, "paused").await.agent_id;

    let deadlines = Deadlines { connect_secs: 2, call_secs: 2, stream_progress_secs: 3, delivery_secs: 10 };
    let settings = Settings { deadlines, ..Settings::default() };
    let host: Arc<dyn Host> = Arc::new(FixtureHost::new());
    let mut agent = Agent::open(state.clone(), &settings, host).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The loop holds its SQLite spool across awaits: its own thread, as in the binary.
    let running = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(agent.run_forever(async {
            let _ = stop_rx.await;
        }))
    });
    assert!(
        eventually(Duration::from_secs(20), || stored(&server, &id) >= 1).await,
        "first record delivered"
    );

    server.pause(true);
    let paused_at = tokio::time::Instant::now();
    let before = stored(&server, &id);
    let waiting = spooled(&state);
    // Collection goes on by the schedule: a record about every 10 s, all spooled.
    assert!(
        eventually(Duration::from_secs(40), || spooled(&state) >= waiting + 3).await,
        "collection stopped while the server was paused: {} spooled after {:?}",
        spooled(&state),
        paused_at.elapsed()
    );
    assert_eq!(stored(&server, &id), before, "nothing can be stored by a stopped server");

    server.pause(false);
    // Delivered at the next attempt (backoff at most 20 s by now, plus deadlines).
    assert!(
        eventually(Duration::from_secs(60), || spooled(&state) == 0).await,
        "{} records still spooled after the server came back",
        spooled(&state)
    );
    let total = stored(&server, &id);
    assert!(total >= before + 3, "records collected while paused were lost: {total} stored");
    let store = custos_server::store::Store::open(&DataDir(server.data.clone()).database()).unwrap();
    let seqs: Vec<u64> = store.records_of(&id).unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "each record once, in order");

    stop_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || running.join().unwrap().unwrap()).await.unwrap();
}
