//! Every refusal the server must make, each asserting the status, that
//! nothing was stored, and that the server still serves others afterwards.

use std::sync::Arc;
use std::time::Duration;

use custos_agent::host::{FixtureHost, Host};
use custos_agent::signing::sign_record;
use custos_agent::spool::ChainTip;
use custos_proto::evidence::{CheckStatus, Envelope, HostInfo, payload_digest, sign_envelope};
use custos_proto::v1::{AckStatus, RejectReason};
use custos_tests::{TestAgent, TestServer, core_results, rfc3339, send_raw};
use ed25519_dalek::SigningKey;

fn quiet_host() -> Arc<dyn Host> {
    Arc::new(FixtureHost::new())
}

/// Now, as a record's collection time: evidence the server counts as fresh
/// (a fixed date would go stale as the calendar moves on).
fn collected_now() -> String {
    rfc3339(time::OffsetDateTime::now_utc().replace_nanosecond(0).expect("zero nanoseconds"))
}

/// A record for `agent` at chain position (seq, prev), signed with `key`.
fn record(key: &SigningKey, agent_id: &str, seq: u64, prev: Option<[u8; 32]>) -> Envelope {
    let tip = ChainTip { seq, prev, gap: None };
    sign_record(
        key,
        agent_id,
        &tip,
        &collected_now(),
        HostInfo { os: "linux".into(), ..Default::default() },
        core_results(CheckStatus::Pass, &[]),
    )
}

fn rejected(ack: &custos_proto::v1::Ack, reason: RejectReason) {
    assert_eq!(ack.status, AckStatus::Rejected as i32, "{ack:?}");
    assert_eq!(ack.reject_reason, reason as i32, "{ack:?}");
    assert!(!ack.reason.is_empty());
}

async fn enrolled_with_two_records(
    server: &TestServer,
    name: &str,
) -> (TestAgent, SigningKey, Vec<Envelope>) {
    let a = TestAgent::enroll(server, name, quiet_host()).await;
    let key = a.state.load_evidence_key().unwrap();
    let r1 = record(&key, &a.id(), 1, None);
    let r2 = record(&key, &a.id(), 2, Some(payload_digest(&r1.payload)));
    let acks = send_raw(a.agent.channel().await.unwrap(), vec![r1.clone(), r2.clone()]).await.unwrap();
    assert!(acks.iter().all(|a| a.status == AckStatus::Accepted as i32), "{acks:?}");
    (a, key, vec![r1, r2])
}

fn stored(server: &TestServer, agent: &TestAgent) -> usize {
    server.handle().store.records_of(&agent.id()).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_foreign_replayed_gapped_and_equivocating_records_are_refused() {
    let server = TestServer::start().await;
    let (a, key, recs) = enrolled_with_two_records(&server, "a").await;
    let (b, key_b, _) = enrolled_with_two_records(&server, "b").await;
    let ch = a.agent.channel().await.unwrap();
    let head = payload_digest(&recs[1].payload);

    // Forged: one bit of the signature flipped.
    let mut forged = record(&key, &a.id(), 3, Some(head));
    forged.signatures[0].sig[10] ^= 0x40;
    // Altered after signing: payload changed.
    let mut altered = record(&key, &a.id(), 3, Some(head));
    let pos = altered.payload.len() - 5;
    altered.payload[pos] ^= 0x01;
    // Signed by another agent's key but sent on A's connection.
    let foreign_key = record(&key_b, &a.id(), 3, Some(head));
    // B's own valid record replayed over A's connection.
    let b_record = record(&key_b, &b.id(), 3, Some(head));
    // A sequence gap: seq 5 when 3 is next.
    let gap = record(&key, &a.id(), 5, Some(head));
    // Equivocation: a different record claiming seq 2.
    let mut equivocal_st = custos_proto::evidence::Statement::from_payload(&recs[1].payload).unwrap();
    equivocal_st.predicate.collected_at = "1999-12-31T23:59:59Z".into();
    let equivocal = sign_envelope(equivocal_st.to_payload(), &key);
    // Broken link: seq 3 whose prev is not record 2.
    let unlinked = record(&key, &a.id(), 3, Some([7; 32]));
    // Not an in-toto statement at all, properly signed.
    let garbage = sign_envelope(b"{\"hello\":1}".to_vec(), &key);

    let acks =
        send_raw(ch.clone(), vec![forged, altered, foreign_key, b_record, gap, equivocal, unlinked, garbage])
            .await
            .unwrap();
    assert_eq!(acks.len(), 8);
    rejected(&acks[0], RejectReason::BadSignature);
    rejected(&acks[1], RejectReason::BadSignature);
    rejected(&acks[2], RejectReason::WrongKey);
    rejected(&acks[3], RejectReason::WrongKey);
    rejected(&acks[4], RejectReason::SequenceGap);
    assert_eq!(acks[4].expected_seq, 3);
    assert!(acks[4].retryable);
    rejected(&acks[5], RejectReason::Equivocation);
    rejected(&acks[6], RejectReason::ChainMismatch);
    rejected(&acks[7], RejectReason::Malformed);
    assert_eq!(stored(&server, &a), 2, "nothing refused was stored");
    assert_eq!(stored(&server, &b), 2);

    // A replay of A's own accepted record: idempotent, nothing stored twice.
    let acks = send_raw(ch.clone(), vec![recs[0].clone()]).await.unwrap();
    assert_eq!(acks[0].status, AckStatus::Duplicate as i32);
    assert_eq!(stored(&server, &a), 2);

    // Equivocation is raised as a security event.
    let (_, events) = server.api("/api/v1/security-events").await;
    let kinds: Vec<&str> =
        events["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"equivocation"), "{kinds:?}");
    assert!(kinds.contains(&"sequence_gap"), "{kinds:?}");

    // The server still serves: the right next record is accepted.
    let good = record(&key, &a.id(), 3, Some(head));
    let acks = send_raw(ch.clone(), vec![good.clone()]).await.unwrap();
    assert_eq!(acks[0].status, AckStatus::Accepted as i32, "{acks:?}");
    assert_eq!(stored(&server, &a), 3);

    // A record dated a day ahead of the server's clock is kept (ordered by seq)
    // but flagged.
    let tomorrow = rfc3339(time::OffsetDateTime::now_utc() + time::Duration::days(1));
    let tip = ChainTip { seq: 4, prev: Some(payload_digest(&good.payload)), gap: None };
    let host = HostInfo { os: "linux".into(), ..Default::default() };
    let future = sign_record(&key, &a.id(), &tip, &tomorrow, host, core_results(CheckStatus::Pass, &[]));
    let acks = send_raw(ch, vec![future]).await.unwrap();
    assert_eq!(acks[0].status, AckStatus::Accepted as i32, "{acks:?}");
    let (_, events) = server.api("/api/v1/security-events").await;
    assert!(events["events"].as_array().unwrap().iter().any(|e| e["kind"] == "clock_skew"), "{events:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_client_certificate_or_with_a_foreign_ca_are_refused() {
    let server = TestServer::start().await;
    let (a, key, recs) = enrolled_with_two_records(&server, "a").await;
    let name = a.agent.identity().server_name.clone();

    // No client certificate: TLS works (enrollment needs it) but every agent call is refused.
    let limits = custos_agent::deadlines::Deadlines::default();
    let anon = custos_agent::transport::connect(&server.grpc(), &name, &server.ca_pem(), None, &limits)
        .await
        .unwrap();
    let head = payload_digest(&recs[1].payload);
    let err = send_raw(anon.channel.clone(), vec![record(&key, &a.id(), 3, Some(head))]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let err = custos_agent::transport::fetch_policy(&anon).await.unwrap_err();
    assert!(err.to_string().contains("Unauthenticated"), "{err}");

    // A certificate from another CA naming the same agent id: refused at the handshake.
    let other_ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = ca_params.self_signed(&other_ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, other_ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names =
        vec![rcgen::SanType::URI(format!("urn:custos:agent:{}", a.id()).try_into().unwrap())];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let forged_cert = params.signed_by(&client_key, &issuer).unwrap();
    let _ = other_ca;
    let attempt = async {
        let ch = custos_agent::transport::connect(
            &server.grpc(),
            &name,
            &server.ca_pem(),
            Some((&forged_cert.pem(), &client_key.serialize_pem())),
            &limits,
        )
        .await?;
        send_raw(ch.channel, vec![record(&key, &a.id(), 3, Some(head))])
            .await
            .map_err(custos_agent::transport::TransportError::from)
    };
    let result = tokio::time::timeout(Duration::from_secs(20), attempt).await.expect("no hang");
    assert!(result.is_err(), "a foreign CA's certificate must not get through: {result:?}");
    assert_eq!(stored(&server, &a), 2);

    // Others are still served.
    let acks =
        send_raw(a.agent.channel().await.unwrap(), vec![record(&key, &a.id(), 3, Some(head))]).await.unwrap();
    assert_eq!(acks[0].status, AckStatus::Accepted as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let (a, key, recs) = enrolled_with_two_records(&server, "a").await;
    let head = payload_digest(&recs[1].payload);

    // Above the gRPC message limit (1 MiB): the stream is refused.
    let huge = sign_envelope(vec![b' '; 2 * 1024 * 1024], &key);
    let err = send_raw(a.agent.channel().await.unwrap(), vec![huge]).await;
    match err {
        Err(status) => assert!(
            matches!(
                status.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::Internal
            ),
            "{status:?}"
        ),
        Ok(acks) => assert!(acks.is_empty(), "no acceptance for an oversized message: {acks:?}"),
    }
    // Within the message limit but above the payload limit: refused with a reason.
    let big = sign_envelope(vec![b' '; 300 * 1024], &key);
    let acks = send_raw(a.agent.channel().await.unwrap(), vec![big]).await.unwrap();
    rejected(&acks[0], RejectReason::TooLarge);
    // Deeply nested JSON: refused as malformed, no panic.
    let nested = sign_envelope(format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)).into_bytes(), &key);
    let acks = send_raw(a.agent.channel().await.unwrap(), vec![nested]).await.unwrap();
    rejected(&acks[0], RejectReason::Malformed);
    assert_eq!(stored(&server, &a), 2);

    let acks =
        send_raw(a.agent.channel().await.unwrap(), vec![record(&key, &a.id(), 3, Some(head))]).await.unwrap();
    assert_eq!(acks[0].status, AckStatus::Accepted as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_tokens_are_refused_past_their_uses_or_lifetime() {
    let server = TestServer::start().await;
    let token = server.token(1);
    let tmp = tempfile::tempdir().unwrap();
    let enroll = |dir: &str, token: String| {
        let state = custos_agent::state::StateDir(tmp.path().join(dir));
        let (grpc, ca) = (server.grpc(), server.ca_pem());
        async move { custos_agent::enroll::enroll(&state, &grpc, &token, &ca, "x").await }
    };
    enroll("first", token.clone()).await.expect("first use");
    let err = enroll("second", token).await.unwrap_err();
    assert!(err.to_string().contains("not accepted"), "{err}");

    // Expired: made valid until a moment ago.
    let expired = custos_server::identity::secrets::new_token("cenr");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    server
        .handle()
        .store
        .create_enrollment_token(
            &custos_server::identity::secrets::token_hash(&expired),
            5,
            now - 1,
            now - 100,
        )
        .unwrap();
    assert!(enroll("third", expired).await.is_err());
    // Guessed.
    assert!(enroll("fourth", custos_server::identity::secrets::new_token("cenr")).await.is_err());

    let (_, hosts) = server.api("/api/v1/hosts").await;
    assert_eq!(hosts.as_array().unwrap().len(), 1, "only the first enrollment created an agent");
    // A refused attempt leaves no identity behind on the agent either.
    assert!(!tmp.path().join("second/agent.toml").exists());
}

/// Each read route behind a token in the server's route table, with a
/// request for it and the status an admin gets on a fresh server: 200, or
/// 404 where it names an object that does not exist; a route added to the
/// table is in this test without a line here.
fn read_requests() -> Vec<(String, u16)> {
    use custos_server::api::routes::{Access, ROUTES};
    let mut out = Vec::new();
    for r in ROUTES.iter().filter(|r| r.method == reqwest::Method::GET && r.access != Access::Open) {
        let path = custos_tests::fill_route(
            r.path,
            &[("agent_id", "0123456789abcdef0123456789abcdef"), ("id", "999999999"), ("seq", "1")],
        );
        let with = |query: &str| format!("{path}?{query}");
        match r.path {
            "/api/v1/effectiveness" => {
                out.push((with("control=iso27001:2022/A.8.20&from=2026-01-01T00:00:00Z&points=2"), 200));
            }
            "/api/v1/risks" => out.extend([(path.clone(), 200), (with("status=all&format=csv"), 200)]),
            "/api/v1/log/consistency" => out.push((with("from=0&to=0"), 200)),
            // A fresh server's log has no checkpoint and no leaf yet, so
            // nothing to prove and nothing to export.
            "/api/v1/log/checkpoint" => out.push((path, 404)),
            "/api/v1/log/inclusion" => out.push((with("index=0&size=1"), 400)),
            "/api/v1/export" => out.push((with("from=2026-01-01T00:00:00Z"), 400)),
            _ => out.push((path, if r.path.contains('{') { 404 } else { 200 })),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_requires_a_valid_token() {
    let server = TestServer::start().await;
    for (route, expected) in read_requests() {
        let route = route.as_str();
        let (status, _) = server.api_with(route, None).await;
        assert_eq!(status, 401, "{route} without a token");
        let (status, _) = server.api_with(route, Some("cadm_wrong")).await;
        assert_eq!(status, 401, "{route} with a wrong token");
        let (status, _) = server.api(route).await;
        // A route naming an object that does not exist answers 404, but only once authenticated.
        assert_eq!(status, expected, "{route} with the admin token");
    }
    // Write routes need a valid token too (that read-only tokens get 403 on
    // each of them is tests/tests/auditor_access.rs).
    let read_token = server.read_token();
    assert_eq!(server.api_with("/api/v1/hosts", Some(&read_token)).await.0, 200);
    let client = reqwest::Client::new();
    for (method, template) in custos_tests::write_routes() {
        let path =
            custos_tests::fill_route(template, &[("agent_id", "0123456789abcdef"), ("id", "999999999")]);
        for token in [None, Some("cadm_wrong")] {
            let mut req = client.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("http://{}{path}", server.http_addr),
            );
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.json(&serde_json::json!({})).send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with token {token:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        }
    }
    let (status, body) = server.api_with("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _) = server.api("/api/v1/controls?framework=nonsense").await;
    assert_eq!(status, 400);
    let (status, _) = server.api("/api/v1/risks?status=1;DROP TABLE risks").await;
    assert_eq!(status, 400);
    let (status, _) = server.api("/api/v1/controls?sort=x").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_is_refused_and_its_open_stream_is_closed() {
    let server = TestServer::start().await;
    let (a, key, recs) = enrolled_with_two_records(&server, "a").await;
    let (b, key_b, recs_b) = enrolled_with_two_records(&server, "b").await;

    // An evidence stream that stays open across the revocation.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut client =
        custos_proto::v1::agent_service_client::AgentServiceClient::new(a.agent.channel().await.unwrap());
    let mut acks =
        client.submit_evidence(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let r3 = record(&key, &a.id(), 3, Some(payload_digest(&recs[1].payload)));
    let wire = |e: Envelope, n| custos_proto::v1::EvidenceRecord {
        envelope: Some(custos_agent::transport::to_wire(e)),
        client_ref: n,
    };
    tx.send(wire(r3.clone(), 3)).await.unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().status, AckStatus::Accepted as i32);

    let (status, _) =
        server.post_with(&format!("/api/v1/agents/{}/revoke", a.id()), Some(&server.admin_token)).await;
    assert_eq!(status, 200);
    let (status, _) =
        server.post_with(&format!("/api/v1/agents/{}/revoke", a.id()), Some(&server.admin_token)).await;
    assert_eq!(status, 404, "already revoked");

    // The open stream ends at its next record, with nothing stored.
    let r4 = record(&key, &a.id(), 4, Some(payload_digest(&r3.payload)));
    tx.send(wire(r4, 4)).await.unwrap();
    let err =
        tokio::time::timeout(Duration::from_secs(10), acks.message()).await.expect("no hang").unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert_eq!(stored(&server, &a), 3);
    // New connections are refused at the handshake (the server sends a CertificateRevoked alert).
    let again = async {
        let ch = a.agent.channel().await.map_err(|e| e.to_string())?;
        send_raw(ch, vec![recs[0].clone()]).await.map_err(|e| e.to_string())
    };
    let refused = tokio::time::timeout(Duration::from_secs(10), again).await.expect("no hang");
    assert!(refused.is_err(), "a revoked agent got through: {refused:?}");
    // The revoked host leaves the evaluated fleet; others are still served.
    let acks = send_raw(
        b.agent.channel().await.unwrap(),
        vec![record(&key_b, &b.id(), 3, Some(payload_digest(&recs_b[1].payload)))],
    )
    .await
    .unwrap();
    assert_eq!(acks[0].status, AckStatus::Accepted as i32);
    // (The local packet-filter requirement rests on the firewall check alone.)
    let (_, controls) = server.api("/api/v1/controls?framework=bsi-grundschutz:2023").await;
    let a820 = controls["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["control_id"] == "bsi-grundschutz:2023/SYS.1.1.A19")
        .unwrap();
    assert_eq!(a820["passing"], serde_json::json!([b.id()]));
}
