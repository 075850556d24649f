//! Fuzz targets for the evidence format: DSSE envelopes and in-toto
//! statements, as the server reads them from agents and bundles.

use super::*;

/// `Envelope::from_json` (the DSSE JSON of `records/*.dsse.json` and of
/// `GET /records/...`), then `verify_envelope` and the statement parsers on
/// its payload. Asserts: an envelope re-serialises to JSON that reads back
/// to the same envelope and prints the same again; one that verifies
/// against [`AGENT_KEY`] is exactly the envelope signing its payload gives
/// (strict verification admits no second form).
pub fn dsse_envelope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(env) = Envelope::from_json(text) else { return };
    let json = env.to_json();
    let again = Envelope::from_json(&json).unwrap_or_else(|e| panic!("re-serialised envelope refused: {e}"));
    assert_eq!(again, env, "envelope changed through its JSON");
    assert_eq!(again.to_json(), json, "envelope JSON is not stable");
    let _ = pae(&env.payload_type, &env.payload);
    let key = SigningKey::from_bytes(&AGENT_KEY);
    if verify_envelope(&env, &key.verifying_key()).is_ok() {
        assert_eq!(sign_envelope(env.payload.clone(), &key), env, "a second envelope form verified");
    }
    statement(&env.payload);
}

/// `Statement::from_payload`, `summary_from_payload` and `raw_from_payload`
/// (what ingest and the verifier run on a signed payload). Asserts: the
/// three agree (the full parse succeeds exactly when the raw one does, and
/// then the summary's does too, with the same fields); an accepted statement
/// re-serialises to a payload that reads back to the same statement.
pub fn intoto_statement(data: &[u8]) {
    statement(data);
}

fn statement(payload: &[u8]) {
    let full = Statement::from_payload(payload);
    let summary = StatementSummary::summary_from_payload(payload);
    let raw = StatementRaw::raw_from_payload(payload);
    assert_eq!(full.is_ok(), raw.is_ok(), "full {full:?} and raw {raw:?} parses disagree");
    let Ok(st) = full else { return };
    let summary = summary.unwrap_or_else(|e| panic!("summary refuses what the full parse accepts: {e}"));
    assert_eq!(summary.predicate.agent_id, st.predicate.agent_id);
    assert_eq!(summary.predicate.seq, st.predicate.seq);
    assert_eq!(summary.predicate.prev, st.predicate.prev);
    assert_eq!(summary.prev_digest(), st.prev_digest());
    assert_eq!(st.prev_digest().is_some(), st.predicate.prev.is_some(), "prev is not a digest");
    let of_summary: Vec<(&str, CheckStatus)> =
        summary.predicate.checks.iter().map(|c| (c.id.as_str(), c.status)).collect();
    let of_full: Vec<(&str, CheckStatus)> =
        st.predicate.checks.iter().map(|c| (c.id.as_str(), c.status)).collect();
    assert_eq!(of_summary, of_full, "summary and full parse see other checks");
    let reprinted = st.to_payload();
    let again = Statement::from_payload(&reprinted).unwrap_or_else(|e| {
        panic!("re-serialised statement refused: {e}\n{}", String::from_utf8_lossy(&reprinted))
    });
    let (a, b) = (serde_json::to_value(&st), serde_json::to_value(&again));
    let (Ok(a), Ok(b)) = (a, b) else { panic!("statement does not serialise") };
    assert!(same_json(&a, &b), "statement changed through its payload:\n{a}\n{b}");
}
