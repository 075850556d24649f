//! The server's own certificate authority: creates the CA and the server's
//! TLS certificate at `init`, and issues short-lived agent client certificates
//! from CSRs at enrollment and renewal.
//!
//! Invariants: an agent certificate's identity is always the URI SAN
//! `urn:custos:agent:<id>` the server chose; nothing the agent put in its CSR
//! (subject, extensions) is copied. The CA key never leaves the data dir.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// URI SAN prefix naming an agent in its client certificate.
pub const AGENT_URI_PREFIX: &str = "urn:custos:agent:";

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate request is malformed or its signature is invalid: {0}")]
    BadCsr(rcgen::Error),
    #[error("could not issue certificate: {0}")]
    Issue(rcgen::Error),
    #[error("CA material in {what} is unusable: {source}")]
    Load { what: String, source: rcgen::Error },
}

/// A CA certificate and key, as PEM, able to issue certificates.
pub struct CertAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A newly created certificate and its private key (PEM).
pub struct IssuedPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// An issued agent certificate.
pub struct AgentCertificate {
    pub cert_pem: String,
    pub serial_hex: String,
    pub not_after: OffsetDateTime,
}

impl CertAuthority {
    /// Creates a new CA (ECDSA P-256) valid for ten years.
    pub fn generate(name: &str, now: OffsetDateTime) -> Result<(Self, String), CaError> {
        let key = KeyPair::generate().map_err(CaError::Issue)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "Custos");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key).map_err(CaError::Issue)?;
        let key_pem = key.serialize_pem();
        let cert_pem = cert.pem();
        let issuer = Issuer::new(params, key);
        Ok((CertAuthority { cert_pem, issuer }, key_pem))
    }

    /// Loads an existing CA from its certificate and key PEM.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key =
            KeyPair::from_pem(key_pem).map_err(|source| CaError::Load { what: "CA key".into(), source })?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|source| CaError::Load { what: "CA certificate".into(), source })?;
        Ok(CertAuthority { cert_pem: cert_pem.to_string(), issuer })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues the server's TLS certificate for `names` (DNS names or IPs).
    pub fn issue_server(&self, names: &[String], now: OffsetDateTime) -> Result<IssuedPair, CaError> {
        let key = KeyPair::generate().map_err(CaError::Issue)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(CaError::Issue)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "custos-server");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(825);
        let cert = params.signed_by(&key, &self.issuer).map_err(CaError::Issue)?;
        Ok(IssuedPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Issues a client certificate for `agent_id` to the key in `csr_der`
    /// (whose self-signature is verified), valid for `lifetime`.
    pub fn issue_agent(
        &self,
        agent_id: &str,
        csr_der: &[u8],
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<AgentCertificate, CaError> {
        let csr =
            CertificateSigningRequestParams::from_der(&csr_der.to_vec().into()).map_err(CaError::BadCsr)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, agent_id);
        params.distinguished_name = dn;
        let uri = format!("{AGENT_URI_PREFIX}{agent_id}");
        params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(CaError::Issue)?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let mut serial: [u8; 16] = crate::identity::secrets::random();
        // A positive INTEGER: DER would otherwise need a leading zero byte.
        serial[0] &= 0x7f;
        params.serial_number = Some(serial.to_vec().into());
        params.not_before = now - Duration::minutes(5);
        let not_after = now + lifetime;
        params.not_after = not_after;
        let cert = params.signed_by(&csr.public_key, &self.issuer).map_err(CaError::Issue)?;
        Ok(AgentCertificate { cert_pem: cert.pem(), serial_hex: hex::encode(serial), not_after })
    }
}

/// Extracts the agent id from a DER client certificate's URI SAN.
pub fn agent_id_from_cert(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(uri) => uri.strip_prefix(AGENT_URI_PREFIX).map(str::to_string),
        _ => None,
    })
}
