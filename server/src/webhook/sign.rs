//! Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, and the
//! secret file they are keyed with (the recipe is in the module above).

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::AsyncReadExt;

use super::WebhookError;

/// Shortest secret accepted: RFC 2104 discourages HMAC keys shorter than
/// the hash output.
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest secret file read: anything larger is the wrong file.
const MAX_SECRET_BYTES: usize = 4096;
const PREFIX: &str = "sha256=";

fn mac(secret: &[u8], timestamp: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Custos-Signature` value: `sha256=<hex>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp.to_string().as_bytes(), body).finalize().into_bytes();
    format!("{PREFIX}{}", hex::encode(tag))
}

/// Whether `header` (`X-Custos-Signature`) is the signature of `body` at
/// `timestamp` (the `X-Custos-Timestamp` text as received). The comparison
/// of the MAC is constant-time. It does not judge the timestamp's age: a
/// receiver refuses old timestamps itself (see the module documentation).
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Some(hex_tag) = header.trim().strip_prefix(PREFIX) else {
        return false;
    };
    // Decoding the received tag reveals nothing about the secret; only the
    // comparison with the expected tag has to be constant-time.
    let Ok(tag) = hex::decode(hex_tag) else {
        return false;
    };
    tag.len() == 32 && mac(secret, timestamp.as_bytes(), body).verify_slice(&tag).is_ok()
}

/// Reads a webhook secret: the file's content without trailing whitespace,
/// at least [`MIN_SECRET_BYTES`] long. Every error names the file.
pub async fn load_secret(path: &Path) -> Result<Vec<u8>, WebhookError> {
    let read = |source| WebhookError::SecretRead { path: path.to_path_buf(), source };
    let file = tokio::fs::File::open(path).await.map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES as u64 + 1).read_to_end(&mut bytes).await.map_err(read)?;
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(WebhookError::SecretLong { path: path.to_path_buf(), max: MAX_SECRET_BYTES });
    }
    let len = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    bytes.truncate(len);
    if bytes.is_empty() {
        return Err(WebhookError::SecretEmpty { path: path.to_path_buf() });
    }
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(WebhookError::SecretShort { path: path.to_path_buf(), len: bytes.len() });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"custos-test-secret-0123456789abcdef";
    const BODY: &[u8] = br#"{"type":"risk.opened"}"#;

    #[test]
    fn known_answer() {
        // printf '%s' '1700000000.{"type":"risk.opened"}' \
        //   | openssl dgst -sha256 -hmac 'custos-test-secret-0123456789abcdef'
        assert_eq!(
            signature(KEY, 1_700_000_000, BODY),
            "sha256=4be03333291c3cac56356236bcb4f533cc0c33d243e76219d33b43e6f38ce3bc"
        );
    }

    #[test]
    fn verify_accepts_only_the_exact_message() {
        let sig = signature(KEY, 1_700_000_000, BODY);
        assert!(verify(KEY, "1700000000", BODY, &sig));
        assert!(!verify(KEY, "1700000001", BODY, &sig), "other timestamp");
        assert!(!verify(KEY, "1700000000", br#"{"type":"risk.closed"}"#, &sig), "other body");
        assert!(!verify(b"custos-test-secret-0123456789abcdeF", "1700000000", BODY, &sig), "other key");
        assert!(!verify(KEY, "01700000000", BODY, &sig), "timestamp text differs");
        assert!(!verify(KEY, "", BODY, &sig));
        assert!(!verify(KEY, "-1", BODY, &signature(KEY, -1, BODY)), "only digits are timestamps");
        assert!(!verify(KEY, "1700000000", BODY, &sig[PREFIX.len()..]), "prefix missing");
        assert!(!verify(KEY, "1700000000", BODY, "sha256="));
        assert!(!verify(KEY, "1700000000", BODY, "sha256=zz"));
        assert!(!verify(KEY, "1700000000", BODY, &sig[..sig.len() - 2]), "truncated tag");
        assert!(!verify(KEY, "1700000000", BODY, &format!("{sig}00")), "extended tag");
        let upper = format!("{PREFIX}{}", sig[PREFIX.len()..].to_uppercase());
        assert!(verify(KEY, "1700000000", BODY, &upper), "hex case does not matter");
    }

    #[tokio::test]
    async fn secret_files_are_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(load_secret(&path).await.unwrap(), "ab".repeat(32).as_bytes());

        std::fs::write(&path, "short-secret\n").unwrap();
        let err = load_secret(&path).await.unwrap_err();
        assert!(matches!(err, WebhookError::SecretShort { len: 12, .. }), "{err}");
        // Whitespace does not count towards the length.
        std::fs::write(&path, format!("{}{}", "a".repeat(31), " ".repeat(40))).unwrap();
        assert!(matches!(load_secret(&path).await, Err(WebhookError::SecretShort { len: 31, .. })));
        // Empty, or only whitespace: refused as empty, naming the file.
        for empty in ["", " \n\t\n"] {
            std::fs::write(&path, empty).unwrap();
            let err = load_secret(&path).await.unwrap_err();
            assert!(matches!(err, WebhookError::SecretEmpty { .. }), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        }
        std::fs::write(&path, vec![b'a'; 5000]).unwrap();
        assert!(matches!(load_secret(&path).await, Err(WebhookError::SecretLong { .. })));
        let missing = dir.path().join("missing");
        let err = load_secret(&missing).await.unwrap_err();
        assert!(matches!(err, WebhookError::SecretRead { .. }));
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
