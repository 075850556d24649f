//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures: strict
//! parsing, signing, verification against trusted keys, and the key string
//! formats of Go's `golang.org/x/mod/sumdb/note`, so that notes and keys move
//! between this log and Go tooling unchanged.
//!
//! A note is a text ending in a newline, a blank line, and one or more lines
//! `— <key name> <base64(key ID (4 bytes, big-endian) || signature)>`. The
//! Ed25519 key ID is SHA-256(key name || 0x0A || 0x01 || public key)[:4].
//! Verification follows the spec: signatures by unknown keys are ignored, a
//! signature by a known key must verify (else the whole note is refused), and
//! at least one must.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Largest note accepted: 16 witness cosignatures of post-quantum size
/// (about 5 kB each in base64) fit many times over; a checkpoint is ~150 bytes.
pub const MAX_NOTE_BYTES: usize = 256 * 1024;

/// Most signatures accepted on one note (the spec demands at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// Signature type byte of Ed25519 in key IDs and key strings.
const ALG_ED25519: u8 = 0x01;

/// Start of a signature line: em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// Why a note, a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note is {size} bytes, more than the {max} accepted")]
    TooLarge { size: usize, max: usize },
    #[error("note is not valid UTF-8 (at byte {offset})")]
    NotUtf8 { offset: usize },
    #[error("note contains the control character 0x{byte:02x} at byte {offset}")]
    ControlCharacter { byte: u8, offset: usize },
    #[error("note text is empty")]
    EmptyText,
    #[error("note text does not end in a newline")]
    TextNotTerminated,
    #[error("note has no blank line between its text and its signatures")]
    NoSeparator,
    #[error("note has no signature lines")]
    NoSignatures,
    #[error("note has {count} signatures, more than the {max} accepted")]
    TooManySignatures { count: usize, max: usize },
    #[error("line {line} of the note is not a valid signature line: {reason}")]
    BadSignatureLine { line: usize, reason: String },
    #[error("invalid key name {name:?}: {reason}")]
    BadKeyName { name: String, reason: &'static str },
    #[error("invalid verifier key {key:?}: {reason}")]
    BadVerifierKey { key: String, reason: String },
    #[error("invalid private key string: {reason}")]
    BadPrivateKey { reason: String },
    #[error("the signature by {name}+{key_id:08x} does not verify: {reason}")]
    InvalidSignature { name: String, key_id: u32, reason: String },
    #[error("the note carries two signatures by {name}+{key_id:08x}")]
    DuplicateSignature { name: String, key_id: u32 },
    #[error("no signature by a trusted key ({trusted}); the note is signed by {present}")]
    NoTrustedSignature { trusted: String, present: String },
}

/// The recommended Ed25519 key ID: SHA-256(name || 0x0A || 0x01 || key)[:4].
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Key names are non-empty and hold neither Unicode spaces nor `+`.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    let bad = |reason| Err(NoteError::BadKeyName { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.chars().any(char::is_whitespace) {
        return bad("contains a space");
    }
    if name.contains('+') {
        return bad("contains '+'");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    Ok(())
}

/// The whole note (or a text to sign): bounded, UTF-8, and without control
/// characters other than newline.
pub(crate) fn check_note_bytes(msg: &[u8]) -> Result<&str, NoteError> {
    if msg.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge { size: msg.len(), max: MAX_NOTE_BYTES });
    }
    let text = std::str::from_utf8(msg).map_err(|e| NoteError::NotUtf8 { offset: e.valid_up_to() })?;
    // Bytes below 0x20 never occur inside multi-byte UTF-8 sequences.
    if let Some(offset) = msg.iter().position(|&b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter { byte: msg[offset], offset });
    }
    Ok(text)
}

/// A key that signs notes: an Ed25519 key under a key name.
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    // Never print the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.key_id)
    }
}

impl NoteSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key_id = key_id(name, &key.verifying_key());
        Ok(Self { name: name.to_string(), key_id, key })
    }

    /// Reads Go's private key string `PRIVATE+KEY+<name>+<hex key
    /// ID>+<base64(0x01 || 32-byte seed)>`.
    pub fn from_private_key_string(s: &str) -> Result<Self, NoteError> {
        let bad = |reason: &str| NoteError::BadPrivateKey { reason: reason.to_string() };
        let rest = s.strip_prefix(PRIVATE_PREFIX).ok_or_else(|| bad("does not start with PRIVATE+KEY+"))?;
        let (name, rest) = rest.split_once('+').ok_or_else(|| bad("no key ID after the name"))?;
        let (id_hex, key64) = rest.split_once('+').ok_or_else(|| bad("no key after the key ID"))?;
        check_key_name(name)?;
        let id = parse_key_id(id_hex).ok_or_else(|| bad("the key ID is not 8 hexadecimal digits"))?;
        let raw = B64.decode(key64).map_err(|_| bad("the key is not base64"))?;
        let seed: [u8; 33] = raw.try_into().map_err(|_| bad("the key is not 33 bytes"))?;
        if seed[0] != ALG_ED25519 {
            return Err(bad("the key is not an Ed25519 key (type byte is not 0x01)"));
        }
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&seed[1..]);
        let signer = Self::new(name, SigningKey::from_bytes(&secret))?;
        if signer.key_id != id {
            return Err(bad("the key ID does not match the key"));
        }
        Ok(signer)
    }

    /// Go's private key string (see [`NoteSigner::from_private_key_string`]).
    /// A secret: store it like any private key.
    pub fn private_key_string(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        format!("{PRIVATE_PREFIX}{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public half, for auditors.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    fn sign_text(&self, text: &str) -> NoteSignature {
        NoteSignature {
            key_name: self.name.clone(),
            key_id: self.key_id,
            signature: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        }
    }
}

/// A trusted public key in Go's verifier key form
/// `<name>+<hex key ID>+<base64(0x01 || 32-byte public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        if key.is_weak() {
            return Err(NoteError::BadVerifierKey {
                key: name.to_string(),
                reason: "weak (small-order) Ed25519 key".to_string(),
            });
        }
        Ok(Self { name: name.to_string(), key_id: key_id(name, &key), key })
    }

    /// Parses a verifier key string; the key ID must match the key.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let bad = |reason: String| NoteError::BadVerifierKey { key: s.to_string(), reason };
        let (name, rest) = s.split_once('+').ok_or_else(|| bad("no key ID after the name".into()))?;
        let (id_hex, key64) = rest.split_once('+').ok_or_else(|| bad("no key after the key ID".into()))?;
        check_key_name(name)?;
        let id = parse_key_id(id_hex).ok_or_else(|| bad("the key ID is not 8 hexadecimal digits".into()))?;
        let raw = B64.decode(key64).map_err(|e| bad(format!("the key is not base64 ({e})")))?;
        let Some((&alg, key)) = raw.split_first() else {
            return Err(bad("the key is empty".into()));
        };
        if alg != ALG_ED25519 {
            return Err(bad(format!("signature type 0x{alg:02x} is not Ed25519 (0x01)")));
        }
        let key: [u8; 32] =
            key.try_into().map_err(|_| bad(format!("an Ed25519 key is 32 bytes, not {}", key.len())))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not an Ed25519 public key".into()))?;
        let parsed = Self::new(name, key).map_err(|_| bad("weak (small-order) Ed25519 key".into()))?;
        if parsed.key_id != id {
            return Err(bad(format!("key ID {id:08x} does not match the key ({:08x})", parsed.key_id)));
        }
        Ok(parsed)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    fn verify(&self, text: &str, signature: &[u8]) -> Result<(), NoteError> {
        let invalid = |reason: String| NoteError::InvalidSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            reason,
        };
        let sig: [u8; 64] = signature
            .try_into()
            .map_err(|_| invalid(format!("it is {} bytes, an Ed25519 signature is 64", signature.len())))?;
        self.key
            .verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| invalid("Ed25519 verification failed".into()))
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }
}

fn parse_key_id(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// One signature line of a note, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub key_name: String,
    pub key_id: u32,
    /// The signature proper, without the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    fn line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.key_name, B64.encode(raw))
    }

    fn parse(line: &str, number: usize) -> Result<Self, NoteError> {
        let bad = |reason: &str| NoteError::BadSignatureLine { line: number, reason: reason.to_string() };
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("it does not start with an em dash (U+2014) and a space"))?;
        let (name, sig64) =
            rest.split_once(' ').ok_or_else(|| bad("no space between the key name and the signature"))?;
        check_key_name(name).map_err(|e| bad(&e.to_string()))?;
        if sig64.contains(' ') {
            return Err(bad("more than one space"));
        }
        // The standard engine refuses missing padding and non-zero trailing
        // bits, so each signature has exactly one encoding.
        let raw =
            B64.decode(sig64).map_err(|e| bad(&format!("the signature is not canonical base64 ({e})")))?;
        if raw.len() < 5 {
            return Err(bad("the signature is shorter than a key ID and one byte"));
        }
        Ok(Self {
            key_name: name.to_string(),
            key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            signature: raw[4..].to_vec(),
        })
    }
}

/// A signed note: its text and at least one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// Signs `text` (which ends in a newline) with each signer.
    pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<Self, NoteError> {
        check_note_bytes(text.as_bytes())?;
        if text.is_empty() {
            return Err(NoteError::EmptyText);
        }
        if !text.ends_with('\n') {
            return Err(NoteError::TextNotTerminated);
        }
        if signers.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let mut seen = HashSet::new();
        let mut signatures = Vec::with_capacity(signers.len());
        for s in signers {
            if !seen.insert((s.name(), s.key_id())) {
                return Err(NoteError::DuplicateSignature { name: s.name.clone(), key_id: s.key_id });
            }
            signatures.push(s.sign_text(text));
        }
        let note = Self { text: text.to_string(), signatures };
        let size = note.encode().len();
        if size > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge { size, max: MAX_NOTE_BYTES });
        }
        if note.signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { count: note.signatures.len(), max: MAX_SIGNATURES });
        }
        Ok(note)
    }

    /// Parses a signed note strictly: the text is everything up to the last
    /// blank line, and every line after it is a well-formed signature line
    /// ending in a newline. Signatures are not checked here (see
    /// [`Note::verify`]).
    pub fn parse(msg: &[u8]) -> Result<Self, NoteError> {
        let msg = check_note_bytes(msg)?;
        let split = msg.rfind("\n\n").ok_or(NoteError::NoSeparator)?;
        let (text, block) = (&msg[..=split], &msg[split + 2..]);
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        // Line numbers (1-based) for messages: the text's lines, the blank line.
        let first_line = text.matches('\n').count() + 2;
        let lines: Vec<&str> = block.split('\n').collect();
        // `block` ends in '\n' exactly when the last piece is empty.
        let (last, complete) = lines.split_last().unwrap_or((&"", &[]));
        if !last.is_empty() {
            return Err(NoteError::BadSignatureLine {
                line: first_line + complete.len(),
                reason: "it does not end in a newline (trailing data)".to_string(),
            });
        }
        if complete.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { count: complete.len(), max: MAX_SIGNATURES });
        }
        let signatures = complete
            .iter()
            .enumerate()
            .map(|(i, line)| NoteSignature::parse(line, first_line + i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { text: text.to_string(), signatures })
    }

    /// The signed text, with its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// The note as it is published: text, blank line, signature lines.
    pub fn encode(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }

    /// Verifies the note against the trusted keys: signatures by other keys
    /// are ignored, every signature by a trusted key must verify, and at least
    /// one must be present. Returns the keys whose signatures verified.
    pub fn verify<'k>(&self, trusted: &'k [VerifierKey]) -> Result<Vec<&'k VerifierKey>, NoteError> {
        let mut verified = Vec::new();
        let mut seen = HashSet::new();
        for sig in &self.signatures {
            // A key is known only by name *and* ID together.
            let Some(key) = trusted.iter().find(|k| k.name == sig.key_name && k.key_id == sig.key_id) else {
                continue;
            };
            if !seen.insert((&sig.key_name, sig.key_id)) {
                return Err(NoteError::DuplicateSignature { name: sig.key_name.clone(), key_id: sig.key_id });
            }
            key.verify(&self.text, &sig.signature)?;
            verified.push(key);
        }
        if verified.is_empty() {
            let list =
                |items: Vec<String>| if items.is_empty() { "nobody".to_string() } else { items.join(", ") };
            return Err(NoteError::NoTrustedSignature {
                trusted: list(trusted.iter().map(|k| format!("{}+{:08x}", k.name, k.key_id)).collect()),
                present: list(
                    self.signatures.iter().map(|s| format!("{}+{:08x}", s.key_name, s.key_id)).collect(),
                ),
            });
        }
        Ok(verified)
    }
}
