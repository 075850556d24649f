//! DSSE v1 envelopes: pre-authentication encoding (PAE), Ed25519 signing and
//! strict verification, and the standard JSON form an offline verifier reads.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::EvidenceError;
use super::statement::PAYLOAD_TYPE;

/// A DSSE envelope with its payload as raw bytes (exactly the signed bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub payload: Vec<u8>,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: Vec<u8>,
}

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// The key id used in envelopes: `sha256:` + hex(SHA-256(raw 32-byte public key)).
pub fn key_id(key: &VerifyingKey) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// SHA-256 of the payload bytes: the record digest used by the hash chain.
pub fn payload_digest(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

/// Signs `payload` (an in-toto Statement) into a single-signature envelope.
pub fn sign_envelope(payload: Vec<u8>, key: &SigningKey) -> Envelope {
    let sig = key.sign(&pae(PAYLOAD_TYPE, &payload));
    Envelope {
        payload,
        payload_type: PAYLOAD_TYPE.to_string(),
        signatures: vec![EnvelopeSignature {
            keyid: key_id(&key.verifying_key()),
            sig: sig.to_bytes().to_vec(),
        }],
    }
}

/// Verifies an envelope against the one key allowed to have signed it.
///
/// Exactly one signature is accepted; its key id must name `key`; the
/// signature is checked with `verify_strict` over PAE of the received bytes.
pub fn verify_envelope(env: &Envelope, key: &VerifyingKey) -> Result<(), EvidenceError> {
    if env.payload_type != PAYLOAD_TYPE {
        return Err(EvidenceError::PayloadType { found: env.payload_type.clone(), expected: PAYLOAD_TYPE });
    }
    let [sig] = env.signatures.as_slice() else {
        return Err(EvidenceError::SignatureCount(env.signatures.len()));
    };
    let expected = key_id(key);
    if sig.keyid != expected {
        return Err(EvidenceError::KeyIdMismatch { found: sig.keyid.clone(), expected });
    }
    if key.is_weak() {
        return Err(EvidenceError::WeakKey);
    }
    let bytes: [u8; 64] =
        sig.sig.as_slice().try_into().map_err(|_| EvidenceError::SignatureLength(sig.sig.len()))?;
    key.verify_strict(&pae(&env.payload_type, &env.payload), &Signature::from_bytes(&bytes))
        .map_err(|_| EvidenceError::BadSignature)
}

/// The standard DSSE JSON form (base64 payload and signatures).
#[derive(Debug, Serialize, Deserialize)]
struct EnvelopeJson {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SignatureJson {
    keyid: String,
    sig: String,
}

impl Envelope {
    /// Serializes to the DSSE JSON envelope any DSSE verifier reads.
    pub fn to_json(&self) -> String {
        let json = EnvelopeJson {
            payload: B64.encode(&self.payload),
            payload_type: self.payload_type.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|s| SignatureJson { keyid: s.keyid.clone(), sig: B64.encode(&s.sig) })
                .collect(),
        };
        serde_json::to_string(&json).unwrap_or_default()
    }

    /// Parses a DSSE JSON envelope.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let json: EnvelopeJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let payload = B64.decode(&json.payload).map_err(|e| format!("payload: {e}"))?;
        let signatures = json
            .signatures
            .into_iter()
            .map(|s| {
                Ok(EnvelopeSignature {
                    keyid: s.keyid,
                    sig: B64.decode(&s.sig).map_err(|e| format!("sig: {e}"))?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Envelope { payload, payload_type: json.payload_type, signatures })
    }
}
