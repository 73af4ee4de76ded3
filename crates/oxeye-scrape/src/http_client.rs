//! The HTTP client of one scrape pool: rustls on the `ring` provider (no C toolchain beyond ring's own
//! assembly), gzip, the job's redirect policy and `tls_config`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::BuilderVerifierExt;

use crate::ScrapeError;
use crate::config::ScrapeConfig;

/// How many redirects a scrape follows when `follow_redirects` is on (Prometheus' Go client: 10).
const MAX_REDIRECTS: usize = 10;

/// Builds the client for `config`'s targets.
///
/// # Errors
/// [`ScrapeError::InvalidConfig`] for an unreadable or empty `tls_config.ca_file`;
/// [`ScrapeError::Client`] when rustls or reqwest cannot be set up.
pub(crate) fn build_client(config: &ScrapeConfig, user_agent: &str) -> Result<reqwest::Client, ScrapeError> {
    let client_error = |reason: String| ScrapeError::Client { reason };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| client_error(error.to_string()))?;
    let tls_config = config.tls_config.clone().unwrap_or_default();
    let tls = if tls_config.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCertificate { provider }))
            .with_no_client_auth()
    } else if let Some(ca_file) = &tls_config.ca_file {
        let invalid_ca_file = |reason: String| ScrapeError::InvalidConfig {
            job: config.job_name.clone(),
            field: "tls_config.ca_file".to_string(),
            reason,
        };
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
            .map_err(|error| invalid_ca_file(format!("reading {ca_file}: {error}")))?
            .collect::<Result<_, _>>()
            .map_err(|error| invalid_ca_file(format!("reading {ca_file}: {error}")))?;
        if certificates.is_empty() {
            return Err(invalid_ca_file(format!("{ca_file} holds no PEM certificate")));
        }
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(certificates, provider)
            .map_err(|error| client_error(error.to_string()))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
    } else {
        builder.with_platform_verifier().map_err(|error| client_error(error.to_string()))?.with_no_client_auth()
    };
    let redirect_policy = if config.follow_redirects() {
        reqwest::redirect::Policy::limited(MAX_REDIRECTS)
    } else {
        reqwest::redirect::Policy::none()
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(user_agent)
        .gzip(true)
        .redirect(redirect_policy)
        .build()
        .map_err(|error| client_error(error.to_string()))
}

/// `insecure_skip_verify`: accepts any certificate but still checks handshake signatures, so the
/// connection is encrypted, just not authenticated.
#[derive(Debug)]
struct AcceptAnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(json: &str) -> ScrapeConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn clients_build_for_default_insecure_and_custom_ca_settings() {
        build_client(&config(r#"{"job_name": "a"}"#), "oxeye-test").unwrap();
        build_client(&config(r#"{"job_name": "a", "tls_config": {"insecure_skip_verify": true}}"#), "t").unwrap();
        let ca_file = format!("{}/tests/fixtures/test-ca.pem", env!("CARGO_MANIFEST_DIR"));
        let with_ca =
            format!(r#"{{"job_name": "a", "follow_redirects": false, "tls_config": {{"ca_file": "{ca_file}"}}}}"#);
        build_client(&config(&with_ca), "t").unwrap();
    }

    #[test]
    fn unreadable_ca_file_names_the_field() {
        let missing = config(r#"{"job_name": "a", "tls_config": {"ca_file": "/nonexistent/ca.pem"}}"#);
        match build_client(&missing, "t") {
            Err(ScrapeError::InvalidConfig { job, field, .. }) => {
                assert_eq!((job.as_str(), field.as_str()), ("a", "tls_config.ca_file"));
            }
            other => panic!("expected an invalid config error, got {:?}", other.map(|_| ())),
        }
        let not_pem = format!(
            r#"{{"job_name": "a", "tls_config": {{"ca_file": "{}/tests/fixtures/generate.py"}}}}"#,
            env!("CARGO_MANIFEST_DIR")
        );
        assert!(matches!(build_client(&config(&not_pem), "t"), Err(ScrapeError::InvalidConfig { .. })));
    }
}
