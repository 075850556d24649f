//! TLS on the HTTP port: rustls with the process's provider
//! (`identity::tls::provider`), a certificate chain and key read once at
//! start, ALPN `http/1.1` (the port speaks HTTP/1 only), no client
//! certificates (the API authenticates by bearer token); and the handshake
//! of one connection, which must finish within the handshake timeout.
//!
//! The handshake runs while the connection holds its global slot and its
//! client's slot (taken at accept), so a client that opens connections and
//! never finishes a handshake holds them for the handshake timeout at most,
//! and within its own per-client cap.
//!
//! A failed handshake is logged at debug level only: on this port it is
//! mostly a browser refusing a certificate it does not know, or a client
//! speaking plain HTTP to it, nothing refused by the server.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::identity::tls::provider;
use crate::shutdown::stopped;

/// A certificate or key the HTTP port cannot serve; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum HttpTlsError {
    #[error("HTTP TLS {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: io::Error },
    #[error("HTTP TLS {what} {path}: {message}")]
    Pem { what: &'static str, path: PathBuf, message: String },
    #[error("HTTP TLS certificate {path}: no certificate (PEM `CERTIFICATE`) in it")]
    NoCertificate { path: PathBuf },
    #[error("HTTP TLS certificate {cert} with key {key}: {source}")]
    Rustls { cert: PathBuf, key: PathBuf, source: rustls::Error },
}

/// The HTTP port's TLS configuration: the chain in `cert` (the server's
/// certificate first) and the key in `key`, both PEM, read now and never
/// again while the server runs.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, HttpTlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| HttpTlsError::Read { what, path: path.to_path_buf(), source })
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read("certificate", cert)?)
        .collect::<Result<_, _>>()
        .map_err(pem("certificate", cert))?;
    if chain.is_empty() {
        return Err(HttpTlsError::NoCertificate { path: cert.to_path_buf() });
    }
    let private = PrivateKeyDer::from_pem_slice(&read("key", key)?).map_err(pem("key", key))?;
    let rustls = |source| HttpTlsError::Rustls { cert: cert.to_path_buf(), key: key.to_path_buf(), source };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls)?
        .with_no_client_auth()
        // Also refuses a key that is not the certificate's.
        .with_single_cert(chain, private)
        .map_err(rustls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The error of a PEM file that does not parse.
fn pem<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(rustls::pki_types::pem::Error) -> HttpTlsError + 'a {
    move |e| HttpTlsError::Pem { what, path: path.to_path_buf(), message: e.to_string() }
}

/// The TLS handshake on `tcp` within `deadline`; `None` when it fails,
/// runs out of time or the server stops meanwhile (the connection is then
/// closed when `tcp` is dropped).
pub(super) async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<TlsStream<TcpStream>> {
    tokio::select! {
        done = tokio::time::timeout(deadline, acceptor.accept(tcp)) => match done {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "HTTP TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "HTTP TLS handshake not finished within {} s", deadline.as_secs());
                None
            }
        },
        _ = stopped(shutdown) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate and key for `localhost` from a throwaway key pair.
    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_and_its_key_load_and_every_fault_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (cert_pem, key_pem) = pair();
        let (cert, key) = (file("api.pem", &cert_pem), file("api.key", &key_pem));
        let config = tls_config(&cert, &key).expect("a matching pair loads");
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);

        let missing = dir.path().join("missing.pem");
        let other_key = file("other.key", &pair().1);
        let empty = file("empty.pem", "");
        for (c, k, names) in [
            (&missing, &key, &missing),
            (&cert, &missing, &missing),
            (&empty, &key, &empty),
            (&cert, &empty, &empty),
            (&key, &key, &key),
            (&cert, &other_key, &other_key),
        ] {
            let e = tls_config(c, k).expect_err("refused").to_string();
            assert!(e.contains(&names.display().to_string()), "{} + {}: {e}", c.display(), k.display());
        }
    }
}
