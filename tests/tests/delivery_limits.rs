//! The agent's side of the server's message limit: a record the server
//! cannot even decode is answered by ending the stream with
//! RESOURCE_EXHAUSTED and the limit in a trailer; the agent delivers what
//! came before, quarantines that record (it can never be delivered) and
//! keeps its spool moving. Real server, real agent, mTLS on loopback.

use std::sync::Arc;

use custos_agent::host::{FixtureHost, Host};
use custos_proto::evidence::CheckStatus;
use custos_server::config::Config;
use custos_tests::{TestAgent, TestServer, core_results, result};

/// The server's message limit in this test: far below a record's payload limit.
const LIMIT: usize = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_message_limit_is_quarantined_and_the_rest_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.limits.max_message_bytes = LIMIT;
    let server = TestServer::start_in(&tmp.path().join("server"), config).await;
    let host: Arc<dyn Host> = Arc::new(FixtureHost::new());
    let mut a = TestAgent::enroll(&server, "big", Arc::clone(&host)).await;

    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    let mut big = result("software_inventory", CheckStatus::Pass);
    big.facts.insert("packages".into(), "p".repeat(3 * LIMIT).into());
    a.agent.sign_into_spool(vec![big]).unwrap();

    let report = a.agent.deliver().await.expect("delivery goes on past the refused record");
    assert_eq!(report.accepted, 1, "{report:?}");
    let [(seq, reason)] = report.quarantined.as_slice() else { panic!("one quarantined: {report:?}") };
    assert_eq!(*seq, 2);
    assert!(reason.contains("record too large") && reason.contains(&LIMIT.to_string()), "{reason}");
    assert_eq!(a.agent.spool.len().unwrap(), 0, "nothing left waiting for an answer that cannot come");
    assert_eq!(a.agent.spool.quarantined().unwrap(), 1);
    assert_eq!(server.handle().store.records_of(&a.id()).unwrap().len(), 1);

    // The server keeps serving: another agent delivers as usual.
    let mut b = TestAgent::enroll(&server, "small", host).await;
    b.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    assert_eq!(b.agent.deliver().await.unwrap().accepted, 1);
}
