//! Known-answer vectors for the evidence format (computed independently with
//! the Python `cryptography` package over the RFC 8032 test key 1), and the
//! refusals a verifier must make.

use custos_proto::evidence::statement::{MAX_PAYLOAD_BYTES, excerpt};
use custos_proto::evidence::*;
use ed25519_dalek::{SigningKey, VerifyingKey};

const RFC8032_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn rfc_key() -> SigningKey {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(RFC8032_SECRET, &mut seed).unwrap();
    SigningKey::from_bytes(&seed)
}

#[test]
fn pae_matches_the_dsse_specification_example() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
}

#[test]
fn key_id_is_sha256_of_raw_public_key() {
    let key = rfc_key();
    assert_eq!(hex::encode(key.verifying_key().as_bytes()), RFC8032_PUBLIC);
    assert_eq!(
        key_id(&key.verifying_key()),
        "sha256:21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9"
    );
}

#[test]
fn envelope_signature_matches_independent_implementation() {
    let payload = br#"{"_type":"https://in-toto.io/Statement/v1"}"#.to_vec();
    let env = sign_envelope(payload, &rfc_key());
    assert_eq!(env.payload_type, PAYLOAD_TYPE);
    assert_eq!(
        hex::encode(&env.signatures[0].sig),
        "d9601f6879b98e5ba8d30fb4ae4f2e56496e10b2585a34a653dc7b114cf1f80c\
         ad783189e3f9eac895df98051514802841a7d69bb031059370e4cf62c4d1e208"
    );
    verify_envelope(&env, &rfc_key().verifying_key()).unwrap();
    // The DSSE JSON form round-trips to identical bytes.
    let back = Envelope::from_json(&env.to_json()).unwrap();
    assert_eq!(back, env);
}

#[test]
fn tampered_payload_or_signature_is_refused() {
    let key = rfc_key();
    let env = sign_envelope(b"{\"a\":1}".to_vec(), &key);
    let mut altered = env.clone();
    altered.payload[5] ^= 1;
    assert!(matches!(verify_envelope(&altered, &key.verifying_key()), Err(EvidenceError::BadSignature)));
    let mut bad_sig = env.clone();
    bad_sig.signatures[0].sig[0] ^= 1;
    assert!(matches!(verify_envelope(&bad_sig, &key.verifying_key()), Err(EvidenceError::BadSignature)));
    let mut short = env.clone();
    short.signatures[0].sig.truncate(10);
    assert!(matches!(verify_envelope(&short, &key.verifying_key()), Err(EvidenceError::SignatureLength(10))));
    let mut other_type = env.clone();
    other_type.payload_type = "text/plain".into();
    assert!(matches!(
        verify_envelope(&other_type, &key.verifying_key()),
        Err(EvidenceError::PayloadType { .. })
    ));
    let mut two = env.clone();
    two.signatures.push(two.signatures[0].clone());
    assert!(matches!(verify_envelope(&two, &key.verifying_key()), Err(EvidenceError::SignatureCount(2))));
}

#[test]
fn another_key_is_refused_by_key_id() {
    let env = sign_envelope(b"{}".to_vec(), &SigningKey::from_bytes(&[7; 32]));
    assert!(matches!(
        verify_envelope(&env, &rfc_key().verifying_key()),
        Err(EvidenceError::KeyIdMismatch { .. })
    ));
}

#[test]
fn small_order_key_is_refused() {
    // The identity point: a small-order key under which "signatures" can be forged.
    let mut enc = [0u8; 32];
    enc[0] = 1;
    let weak = VerifyingKey::from_bytes(&enc).unwrap();
    let mut env = sign_envelope(b"{}".to_vec(), &rfc_key());
    env.signatures[0].keyid = key_id(&weak);
    // R = identity, S = 0: valid under the cofactored equation for a small-order key.
    let mut sig = [0u8; 64];
    sig[0] = 1;
    env.signatures[0].sig = sig.to_vec();
    assert!(matches!(verify_envelope(&env, &weak), Err(EvidenceError::WeakKey)));
}

fn sample_predicate(seq: u64, prev: Option<String>) -> EvidencePredicate {
    EvidencePredicate {
        agent_id: "ag-1".into(),
        seq,
        prev,
        collected_at: "2026-11-23T10:00:00Z".into(),
        agent_version: "0.1.0".into(),
        host: HostInfo { os: "linux".into(), ..Default::default() },
        gap: None,
        checks: vec![CheckResult {
            id: "firewall".into(),
            status: CheckStatus::Fail,
            backend: "nftables".into(),
            facts: serde_json::Map::new(),
            observation: Observation::default(),
            reason: Some("input policy accept".into()),
        }],
    }
}

#[test]
fn statement_round_trips_and_pins_the_key() {
    let key = rfc_key();
    let st = Statement::new(sample_predicate(1, None), key.verifying_key().as_bytes());
    let payload = st.to_payload();
    let back = Statement::from_payload(&payload).unwrap();
    assert_eq!(back, st);
    assert_eq!(back.subject[0].name, "urn:custos:agent:ag-1");
    assert_eq!(
        back.subject[0].digest["sha256"],
        "21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9"
    );
}

/// Facts nested `levels` deep under the key `deep`, next to a plain fact.
fn nested_facts(levels: usize) -> Vec<u8> {
    let mut p = sample_predicate(1, None);
    let mut v = serde_json::json!(true);
    for _ in 1..levels {
        v = serde_json::json!({ "x": v });
    }
    p.checks[0].facts.insert("deep".into(), v);
    p.checks[0].facts.insert("ipv4_filtered".into(), true.into());
    Statement::new(p, &[9u8; 32]).to_payload()
}

#[test]
fn every_reading_of_a_payload_holds_it_to_one_depth() {
    // Deep but allowed: all three readings take it, the facts readable in full.
    let ok = nested_facts(40);
    assert!(Statement::from_payload(&ok).is_ok());
    assert!(StatementSummary::summary_from_payload(&ok).is_ok());
    let raw = StatementRaw::raw_from_payload(&ok).unwrap();
    let facts: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw.predicate.checks[0].facts.get()).unwrap();
    assert_eq!(facts["ipv4_filtered"], true);
    // Past the limit (yet within serde_json's own 128): every reading refuses
    // it alike, naming the depth, where skipping and raw reading took any depth.
    let deep = nested_facts(100);
    for e in [
        Statement::from_payload(&deep).unwrap_err(),
        StatementSummary::summary_from_payload(&deep).unwrap_err(),
        StatementRaw::raw_from_payload(&deep).unwrap_err(),
    ] {
        assert!(matches!(e, StatementError::TooDeep(d) if d > 100), "{e}");
        assert!(e.to_string().contains("more than the limit of 64"), "{e}");
    }
}

#[test]
fn malformed_statements_are_refused_with_a_reason() {
    let key = [9u8; 32];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "not a valid statement"),
        (vec![b'['; 100_000], "nests 100000 levels"),
        (vec![b' '; MAX_PAYLOAD_BYTES + 1], "more than the limit"),
        (
            {
                let mut st = Statement::new(sample_predicate(1, None), &key);
                st.type_ = "https://in-toto.io/Statement/v0.1".into();
                st.to_payload()
            },
            "_type",
        ),
        (
            {
                let mut st = Statement::new(sample_predicate(1, None), &key);
                st.predicate_type = "https://example.com/other".into();
                st.to_payload()
            },
            "predicateType",
        ),
        (Statement::new(sample_predicate(0, None), &key).to_payload(), "seq must start at 1"),
        (Statement::new(sample_predicate(2, None), &key).to_payload(), "has no prev"),
        (Statement::new(sample_predicate(2, Some("xyz".into())), &key).to_payload(), "not a hex"),
        (
            {
                let mut p = sample_predicate(1, None);
                p.checks[0].reason = None;
                Statement::new(p, &key).to_payload()
            },
            "without a reason",
        ),
        (
            {
                let mut p = sample_predicate(1, None);
                p.agent_id = "../../etc".into();
                Statement::new(p, &key).to_payload()
            },
            "not a short token",
        ),
        (
            {
                let mut st = Statement::new(sample_predicate(1, None), &key);
                st.subject[0].name = "urn:custos:agent:someone-else".into();
                st.to_payload()
            },
            "does not name agent",
        ),
        (
            {
                let mut p = sample_predicate(1, None);
                p.host.tags = vec!["laptop".into(), "Not A Tag".into()];
                Statement::new(p, &key).to_payload()
            },
            "host tag \"Not A Tag\"",
        ),
        (
            {
                let mut p = sample_predicate(1, None);
                p.host.tags = (0..33).map(|i| format!("t{i}")).collect();
                Statement::new(p, &key).to_payload()
            },
            "33 host tags",
        ),
    ];
    for (payload, want) in cases {
        let err = Statement::from_payload(&payload).unwrap_err().to_string();
        assert!(err.contains(want), "expected {want:?} in {err:?}");
    }
}

#[test]
fn excerpt_is_bounded_and_keeps_utf8_whole() {
    let long = "ä".repeat(5000);
    let ex = excerpt(&long);
    assert!(ex.len() <= 520, "{}", ex.len());
    assert!(ex.ends_with('…'));
    assert_eq!(excerpt("short"), "short");
}
