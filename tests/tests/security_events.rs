//! Security events through a real server (mTLS, the store, the API): a
//! flood of refused records is answered record by record and kept as one
//! aggregated event; enrollment guesses are throttled per source address
//! while another address still enrolls; a foreign client certificate and
//! an oversized record are events; the API pages and filters them.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use custos_agent::host::FixtureHost;
use custos_agent::signing::sign_record;
use custos_agent::spool::ChainTip;
use custos_proto::evidence::{CheckStatus, Envelope, HostInfo, payload_digest, sign_envelope};
use custos_proto::v1::{self, AckStatus, RejectReason};
use custos_server::config::Config;
use custos_tests::{TestAgent, TestServer, core_results, rfc3339};
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::Value;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A TLS channel to the server's gRPC port, with a client identity or
/// none, from `local` (a loopback address) or the default one.
async fn channel(server: &TestServer, identity: Option<(&str, &str)>, local: Option<IpAddr>) -> Channel {
    try_channel(server, identity, local).await.expect("connect")
}

async fn try_channel(
    server: &TestServer,
    identity: Option<(&str, &str)>,
    local: Option<IpAddr>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server.ca_pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{}", server.grpc()))?
        .tls_config(tls)?
        .local_address(local)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
}

/// The agent's own mTLS channel, from the files enrollment wrote.
async fn agent_channel(server: &TestServer, a: &TestAgent) -> Channel {
    let cert = std::fs::read_to_string(a.state.client_cert()).expect("client cert");
    let key = std::fs::read_to_string(a.state.tls_key()).expect("TLS key");
    channel(server, Some((&cert, &key)), None).await
}

fn wire(e: Envelope, client_ref: u64) -> v1::EvidenceRecord {
    v1::EvidenceRecord {
        envelope: Some(v1::Envelope {
            payload: e.payload,
            payload_type: e.payload_type,
            signatures: e
                .signatures
                .into_iter()
                .map(|s| v1::Signature { keyid: s.keyid, sig: s.sig })
                .collect(),
        }),
        client_ref,
    }
}

/// A record at chain position (seq, prev), signed with `key`.
fn record(key: &SigningKey, agent_id: &str, seq: u64, prev: Option<[u8; 32]>) -> Envelope {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).expect("zero nanoseconds");
    sign_record(
        key,
        agent_id,
        &ChainTip { seq, prev, gap: None },
        &rfc3339(now),
        HostInfo { os: "linux".into(), ..Default::default() },
        core_results(CheckStatus::Pass, &[]),
    )
}

/// Streams `records` and collects every answer and the status the stream ends with.
async fn stream(ch: Channel, records: Vec<v1::EvidenceRecord>) -> (Vec<v1::Ack>, Result<(), tonic::Status>) {
    let mut client = v1::agent_service_client::AgentServiceClient::new(ch);
    let mut acks = match client.submit_evidence(tokio_stream::iter(records)).await {
        Ok(r) => r.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut out = Vec::new();
    loop {
        match acks.message().await {
            Ok(Some(a)) => out.push(a),
            Ok(None) => return (out, Ok(())),
            Err(status) => return (out, Err(status)),
        }
    }
}

/// Events under `query` (one page).
async fn events(server: &TestServer, query: &str) -> Vec<Value> {
    let (status, body) = server.api(&format!("/api/v1/security-events{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().expect("events").clone()
}

fn rows(server: &TestServer) -> i64 {
    let db = rusqlite::Connection::open(server.dir.join("custos.db")).expect("database");
    db.query_row("SELECT count(*) FROM security_events", [], |r| r.get(0)).expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_signatures_is_answered_record_by_record_and_kept_as_one_event() {
    const FLOOD: u64 = 5000;
    let server = TestServer::start().await;
    let a = TestAgent::enroll(&server, "forger", std::sync::Arc::new(FixtureHost::new())).await;
    let key = a.state.load_evidence_key().unwrap();
    let mut forged = record(&key, &a.id(), 1, None);
    forged.signatures[0].sig[10] ^= 0x40;
    let before = rows(&server);

    let started = Instant::now();
    let flood: Vec<_> = (1..=FLOOD).map(|i| wire(forged.clone(), i)).collect();
    let (acks, end) = stream(agent_channel(&server, &a).await, flood).await;
    let elapsed = started.elapsed();
    end.expect("the stream ends OK");
    assert_eq!(acks.len() as u64, FLOOD);
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack.client_ref, i as u64 + 1, "answers in order");
        assert_eq!(ack.status, AckStatus::Rejected as i32, "{ack:?}");
        assert_eq!(ack.reject_reason, RejectReason::BadSignature as i32, "{ack:?}");
    }

    // Every answer left after its event committed: no waiting needed.
    let found = events(&server, &format!("?kind=bad_signature&source={}", a.id())).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    let e = &found[0];
    assert_eq!(e["count"], FLOOD, "{e}");
    assert_eq!(e["agent_id"], a.id().as_str());
    assert!(e["first_at"].as_i64() <= e["last_at"].as_i64());
    assert!(e["detail"].as_str().unwrap().chars().count() <= 201, "{e}");
    let written = rows(&server) - before;
    assert_eq!(written, 1, "one row for {FLOOD} refusals");
    println!(
        "{FLOOD} bad-signature records refused in {:.2} s ({:.0}/s): {written} security-event row(s) written",
        elapsed.as_secs_f64(),
        FLOOD as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(server.handle().store.records_of(&a.id()).unwrap().len(), 0);
}

/// A well-formed enrollment request for `token` with fresh keys.
fn enroll_request(token: &str) -> v1::EnrollRequest {
    let evidence = SigningKey::from_bytes(&custos_server::identity::secrets::random::<32>());
    let tls_key = rcgen::KeyPair::generate().unwrap();
    let csr_der = rcgen::CertificateParams::default().serialize_request(&tls_key).unwrap().der().to_vec();
    let proof = evidence.sign(&custos_proto::enrollment_proof_message(&csr_der, token));
    v1::EnrollRequest {
        token: token.to_string(),
        csr_der,
        evidence_public_key: evidence.verifying_key().as_bytes().to_vec(),
        evidence_key_proof: proof.to_bytes().to_vec(),
        display_name: "guess".into(),
        agent_version: "test".into(),
    }
}

async fn enroll(ch: &Channel, token: &str) -> Result<v1::EnrollResponse, tonic::Status> {
    let mut client = v1::enrollment_client::EnrollmentClient::new(ch.clone());
    client.enroll(enroll_request(token)).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_guesses_are_throttled_per_source_and_another_source_still_enrolls() {
    const GUESSES: usize = 200;
    let server = TestServer::start().await;
    let limits = Config::default().limits;
    let guesser = channel(&server, None, Some("127.0.0.1".parse().unwrap())).await;
    let (mut denied, mut throttled) = (0u64, 0u64);
    let started = Instant::now();
    for _ in 0..GUESSES {
        let err = enroll(&guesser, &custos_server::identity::secrets::new_token("cenr")).await.unwrap_err();
        match err.code() {
            tonic::Code::PermissionDenied => {
                assert_eq!(throttled, 0, "no guess is judged once throttling began: {err:?}");
                denied += 1;
            }
            tonic::Code::ResourceExhausted => {
                let retry = err.metadata().get("custos-retry-after-seconds").expect("retry metadata");
                assert!(retry.to_str().unwrap().parse::<u64>().unwrap() >= 1, "{err:?}");
                throttled += 1;
            }
            other => panic!("unexpected {other:?}: {err:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst, plus what the rate refilled while the guesses ran.
    let allowed = u64::from(limits.enroll_burst)
        + (elapsed * f64::from(limits.enroll_attempts_per_minute) / 60.0).floor() as u64;
    assert!(
        denied >= u64::from(limits.enroll_burst) && denied <= allowed,
        "{denied} judged, {allowed} allowed"
    );
    assert_eq!(denied + throttled, GUESSES as u64);
    println!("{GUESSES} guesses in {elapsed:.2} s: {denied} judged, {throttled} throttled");

    // Even a valid token is throttled from that address now...
    let token = server.token(1);
    let err = enroll(&guesser, &token).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    // ...while another address enrolls with it.
    let other = channel(&server, None, Some("127.0.0.2".parse().unwrap())).await;
    let enrolled = enroll(&other, &token).await.expect("enrollment from 127.0.0.2");
    assert!(!enrolled.agent_id.is_empty());

    let from_guesser = events(&server, "?source=127.0.0.1").await;
    let count = |kind: &str| -> u64 {
        from_guesser.iter().filter(|e| e["kind"] == kind).map(|e| e["count"].as_u64().unwrap()).sum()
    };
    assert_eq!(count("enrollment_refused"), denied, "{from_guesser:#?}");
    assert_eq!(count("enrollment_throttled"), throttled + 1, "{from_guesser:#?}");
    assert_eq!(from_guesser.len(), 2, "one event per kind: {from_guesser:#?}");
    assert!(events(&server, "?source=127.0.0.2").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_with_a_foreign_certificate_is_an_event_before_the_connection_closes() {
    let server = TestServer::start().await;
    let other_ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, other_ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names =
        vec![rcgen::SanType::URI("urn:custos:agent:0123456789abcdef".try_into().unwrap())];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let forged = params.signed_by(&client_key, &issuer).unwrap();

    let attempt = async {
        let ch = try_channel(&server, Some((&forged.pem(), &client_key.serialize_pem())), None)
            .await
            .map_err(|e| e.to_string())?;
        let mut client = v1::agent_service_client::AgentServiceClient::new(ch);
        client.get_policy(v1::PolicyRequest::default()).await.map_err(|e| e.to_string())
    };
    let result = tokio::time::timeout(Duration::from_secs(20), attempt).await.expect("no hang");
    assert!(result.is_err(), "a foreign certificate got through: {result:?}");
    let found = events(&server, "?kind=tls_certificate_refused").await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["source"], "127.0.0.1");
    assert!(found[0]["detail"].as_str().unwrap().contains("client certificate refused"), "{}", found[0]);

    // A call without any certificate is refused and recorded too.
    let anon = channel(&server, None, None).await;
    let err = v1::agent_service_client::AgentServiceClient::new(anon)
        .get_policy(v1::PolicyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let found = events(&server, "?kind=no_client_certificate&source=127.0.0.1").await;
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_calling_is_an_event_on_its_open_stream_and_at_the_handshake() {
    let server = TestServer::start().await;
    let a = TestAgent::enroll(&server, "revoked", std::sync::Arc::new(FixtureHost::new())).await;
    let key = a.state.load_evidence_key().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut client = v1::agent_service_client::AgentServiceClient::new(agent_channel(&server, &a).await);
    let mut acks =
        client.submit_evidence(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let r1 = record(&key, &a.id(), 1, None);
    tx.send(wire(r1.clone(), 1)).await.unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().status, AckStatus::Accepted as i32);

    let (status, _) =
        server.post_with(&format!("/api/v1/agents/{}/revoke", a.id()), Some(&server.admin_token)).await;
    assert_eq!(status, 200);
    tx.send(wire(record(&key, &a.id(), 2, Some(payload_digest(&r1.payload))), 2)).await.unwrap();
    let err = acks.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let found = events(&server, &format!("?kind=revoked_agent&source={}", a.id())).await;
    assert_eq!(found.len(), 1, "{found:#?}");

    // A new connection with the revoked certificate fails its handshake.
    let cert = std::fs::read_to_string(a.state.client_cert()).unwrap();
    let tls_key = std::fs::read_to_string(a.state.tls_key()).unwrap();
    let again = async {
        let ch = try_channel(&server, Some((&cert, &tls_key)), None).await.map_err(|e| e.to_string())?;
        let mut client = v1::agent_service_client::AgentServiceClient::new(ch);
        client.get_policy(v1::PolicyRequest::default()).await.map_err(|e| e.to_string())
    };
    let refused = tokio::time::timeout(Duration::from_secs(20), again).await.expect("no hang");
    assert!(refused.is_err(), "a revoked agent got through: {refused:?}");
    let found = events(&server, "?kind=revoked_agent&source=127.0.0.1").await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0]["detail"].as_str().unwrap().contains("revoked"), "{}", found[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_ends_the_stream_after_the_answers_with_resource_exhausted() {
    const LIMIT: usize = 64 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.limits.max_message_bytes = LIMIT;
    let server = TestServer::start_in(&tmp.path().join("server"), config).await;
    let a = TestAgent::enroll(&server, "big", std::sync::Arc::new(FixtureHost::new())).await;
    let key = a.state.load_evidence_key().unwrap();
    let mut good = Vec::new();
    let mut prev = None;
    for seq in 1..=3 {
        let r = record(&key, &a.id(), seq, prev);
        prev = Some(payload_digest(&r.payload));
        good.push(wire(r, seq));
    }
    let garbage = sign_envelope(b"{\"hello\":1}".to_vec(), &key);
    let huge = sign_envelope(vec![b' '; LIMIT + 1024], &key);
    let mut sent = good;
    sent.push(wire(garbage, 4));
    sent.push(wire(huge, 5));
    sent.push(wire(record(&key, &a.id(), 4, prev), 6));

    let (acks, end) = stream(agent_channel(&server, &a).await, sent).await;
    assert_eq!(acks.iter().map(|a| a.client_ref).collect::<Vec<_>>(), [1, 2, 3, 4], "{acks:?}");
    assert!(acks[..3].iter().all(|a| a.status == AckStatus::Accepted as i32), "{acks:?}");
    assert_eq!(acks[3].reject_reason, RejectReason::Malformed as i32, "{acks:?}");
    let status = end.expect_err("the stream ends with an error");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().starts_with("record too large"), "{status:?}");
    let limit = status.metadata().get("custos-max-record-bytes").expect("limit in the trailers");
    assert_eq!(limit.to_str().unwrap(), LIMIT.to_string());
    assert_eq!(server.handle().store.records_of(&a.id()).unwrap().len(), 3);

    for kind in ["malformed_record", "oversized_record"] {
        let found = events(&server, &format!("?kind={kind}&source={}", a.id())).await;
        assert_eq!(found.len(), 1, "{kind}: {found:#?}");
        assert_eq!(found[0]["count"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_paged_newest_first_and_filtered_and_bad_queries_are_400() {
    let server = TestServer::start().await;
    let store = &server.handle().store;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // 30 events apart in time, so none aggregates with another.
    for i in 0..30i64 {
        let kind = ["bad_signature", "replay", "enrollment_refused"][(i % 3) as usize];
        let source = format!("agent-{}", i % 2);
        store
            .record_security_event(now - 3000 + 100 * i, Some(&source), kind, &format!("event {i}"))
            .unwrap();
    }
    let mut all = Vec::new();
    let mut query = "?limit=7".to_string();
    loop {
        let (status, body) = server.api(&format!("/api/v1/security-events{query}")).await;
        assert_eq!(status, 200, "{body}");
        all.extend(body["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()));
        match body["next"].as_str() {
            Some(next) => query = format!("?limit=7&cursor={next}"),
            None => break,
        }
    }
    let mut sorted = all.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(all, sorted, "newest first, no event twice");
    assert_eq!(all.len(), 30);
    assert_eq!(events(&server, "").await.len(), 30, "default limit 100");

    let replays = events(&server, "?kind=replay&source=agent-1").await;
    assert_eq!(replays.len(), 5);
    assert!(replays.iter().all(|e| e["kind"] == "replay" && e["source"] == "agent-1"));
    let since = rfc3339(time::OffsetDateTime::from_unix_timestamp(now - 3000 + 100 * 25).unwrap());
    assert_eq!(events(&server, &format!("?since={since}")).await.len(), 5);
    let until = rfc3339(time::OffsetDateTime::from_unix_timestamp(now - 3000 + 100 * 4).unwrap());
    assert_eq!(events(&server, &format!("?until={until}")).await.len(), 5);

    for bad in [
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?cursor=abc",
        "?cursor=-5",
        "?since=yesterday",
        "?until=2026-13-01T00:00:00Z",
        "?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
        "?sort=id",
        "?kind=",
    ] {
        let (status, body) = server.api(&format!("/api/v1/security-events{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {body}");
    }
}

/// Not a check: how many guesses a second one address gets judged with the
/// limit out of the way (`cargo test -p custos-tests --test security_events
/// -- --ignored --nocapture`), the rate the limiter brings down to
/// `enroll_attempts_per_minute`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_enrollment_guesses_judged_per_second_without_the_limit() {
    const GUESSES: usize = 400;
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.limits.enroll_burst = 1_000_000;
    let server = TestServer::start_in(&tmp.path().join("server"), config).await;
    let ch = channel(&server, None, None).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let ch = ch.clone();
            tokio::spawn(async move {
                for _ in 0..GUESSES / 8 {
                    let err =
                        enroll(&ch, &custos_server::identity::secrets::new_token("cenr")).await.unwrap_err();
                    assert_eq!(err.code(), tonic::Code::PermissionDenied);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let found = events(&server, "?kind=enrollment_refused").await;
    println!(
        "{GUESSES} guesses judged in {elapsed:.2} s ({:.0}/s), kept as {} event(s)",
        GUESSES as f64 / elapsed,
        found.len()
    );
}
