//! A data dir for export tests and benchmarks, seeded through the real
//! paths: initialised as `custos-server init` does, agents enrolled with a
//! real enrollment token (each key binding logged), records signed by the
//! agent's own code and verified by the server's before they are appended.

use std::path::PathBuf;
use std::time::Duration;

use custos_agent::spool::ChainTip;
use custos_proto::evidence::statement::Facts;
use custos_proto::evidence::{CheckResult, CheckStatus, HostInfo, Observation, payload_digest};
use custos_server::app;
use custos_server::config::Config;
use custos_server::datadir::DataDir;
use custos_server::store::Store;
use custos_server::store::agents::{AgentKey, NewAgent};
use custos_server::store::records::NewRecord;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub struct Seeded {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub store: Store,
    /// Whole seconds, so times survive RFC 3339 round trips.
    pub now: OffsetDateTime,
    token_hash: [u8; 32],
}

impl Seeded {
    /// A fresh data dir with an enrollment token good for `enrolments`.
    pub fn new(enrolments: u32) -> Seeded {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        app::init(&data, &[], None).unwrap();
        let token = app::create_enrollment_token(&data, enrolments, Duration::from_secs(3600)).unwrap();
        let store = Store::open(&DataDir(data.clone()).database()).unwrap();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        Seeded { dir, data, store, now, token_hash: custos_server::identity::secrets::token_hash(&token) }
    }

    /// Enrols agent `id` at `at` (Unix seconds) with a key derived from
    /// `seed`; returns the key.
    pub fn enroll(&self, id: &str, display_name: &str, seed: &str, at: i64) -> SigningKey {
        let key = SigningKey::from_bytes(&Sha256::digest(seed).into());
        let agent = NewAgent {
            agent_id: id,
            display_name,
            evidence_key: &key.verifying_key().to_bytes(),
            cert_serial: &hex::encode(&Sha256::digest(id)[..8]),
            cert_not_after: self.now.unix_timestamp() + 86_400,
            agent_version: "0.1.0",
        };
        self.store.enroll_agent(&self.token_hash, &agent, at).unwrap().unwrap();
        key
    }

    pub fn config(&self) -> Config {
        Config::load(&DataDir(self.data.clone()).config()).unwrap()
    }

    /// The log's verifier key, as the organisation publishes it and an
    /// auditor pins it (`verify --log-key`); the log key is made if missing.
    pub fn log_key(&self) -> custos_verify::tlog::VerifierKey {
        app::log_signer(&self.data, &self.config()).unwrap().verifier_key()
    }

    /// A checkpoint over the whole log, through the store's checkpoint path.
    pub fn sign_checkpoint(&self) {
        let config = self.config();
        let signer = app::log_signer(&self.data, &config).unwrap();
        self.store.sign_checkpoint(&signer, &config.log_origin(), self.now.unix_timestamp()).unwrap();
    }
}

/// A firewall result (filtering inbound traffic, or not) and a screen lock
/// the agent could not tell.
pub fn firewall_checks(filtered: bool) -> Vec<CheckResult> {
    let facts = |v: serde_json::Value| -> Facts { v.as_object().cloned().unwrap_or_default() };
    vec![
        CheckResult {
            id: "firewall".into(),
            status: if filtered { CheckStatus::Pass } else { CheckStatus::Fail },
            backend: "nftables".into(),
            facts: facts(serde_json::json!({"ipv4_filtered": filtered, "ipv6_enabled": false})),
            observation: Observation {
                sha256: hex::encode(payload_digest(b"nft")),
                excerpt: "table inet filter".into(),
            },
            reason: (!filtered).then(|| "inbound not filtered".to_string()),
        },
        CheckResult {
            id: "screen_lock".into(),
            status: CheckStatus::Unknown,
            backend: "gsettings".into(),
            facts: Facts::new(),
            observation: Observation::default(),
            reason: Some("no graphical session".into()),
        },
    ]
}

/// `checks` signed by agent `agent_id` as its record at `tip`, collected at
/// `collected`, and verified as ingest does at `now` (Unix seconds).
pub fn signed(
    key: &SigningKey,
    agent_id: &str,
    tip: &ChainTip,
    collected: OffsetDateTime,
    checks: Vec<CheckResult>,
    now: i64,
) -> NewRecord {
    let env = custos_agent::signing::sign_record(
        key,
        agent_id,
        tip,
        &collected.format(&Rfc3339).unwrap(),
        HostInfo { os: "linux".into(), ..HostInfo::default() },
        checks,
    );
    let agent = AgentKey {
        agent_id: agent_id.to_string(),
        evidence_key: key.verifying_key().to_bytes(),
        revoked: false,
    };
    custos_server::intake::ingest::verify_record(env, &agent, now).unwrap()
}
