//! The certificate check `sslmode` asks for, and a refused certificate told in an
//! operator's words.

use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{Check, SslMode};

/// Checks the server's certificate as far as [`Check`] says; the handshake's own
/// signatures are always checked, so that the key is the certificate's.
#[derive(Debug)]
pub(super) struct Verifier {
    pub(super) check: Check,
    pub(super) roots: Arc<RootCertStore>,
    pub(super) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        let algorithms = self.provider.signature_verification_algorithms.all;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            algorithms,
        )?;
        if self.check == Check::ChainAndName {
            verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a refused handshake means, for the operator.
#[derive(Debug)]
pub(super) struct Explain {
    pub(super) mode: SslMode,
    /// Where the trusted CAs come from.
    pub(super) roots: String,
}

impl Explain {
    /// The refusal in words, or `None` when rustls's own are as good.
    fn certificate(&self, error: &rustls::Error) -> Option<String> {
        let rustls::Error::InvalidCertificate(why) = error else {
            return None;
        };
        let cause = match why {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                format!(
                    "the server's certificate is not signed by a CA in {}",
                    self.roots
                )
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => name_mismatch(&expected.to_str(), presented),
            CertificateError::NotValidForName => {
                "the server's certificate is not for the host connected to".to_owned()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (is this machine's clock right?)"
                    .to_owned()
            }
            other => format!("the server's certificate is refused: {other}"),
        };
        Some(format!("{cause} (sslmode={})", self.mode))
    }

    pub(super) fn io(&self, error: io::Error) -> io::Error {
        let explained = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|inner| self.certificate(inner));
        match explained {
            Some(message) => io::Error::new(error.kind(), message),
            None => error,
        }
    }
}

/// The names a certificate is for, against the host in the URL.
fn name_mismatch(expected: &str, presented: &[String]) -> String {
    let names: Vec<&str> = presented.iter().map(|n| plain_name(n)).collect();
    if names.is_empty() {
        return format!("the server's certificate names no host, and {expected} was asked for");
    }
    format!(
        "the server's certificate is for {}, not for {expected}; connect by a name it lists",
        names.join(", ")
    )
}

/// `localhost` out of webpki's `DnsName("localhost")`, `10.0.0.5` out of `IpAddress(10.0.0.5)`.
fn plain_name(presented: &str) -> &str {
    let inner = presented
        .strip_prefix("DnsName(")
        .or_else(|| presented.strip_prefix("IpAddress("))
        .and_then(|rest| rest.strip_suffix(')'));
    inner.map_or(presented, |name| name.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explained(roots: &str, error: CertificateError) -> String {
        let explain = Explain {
            mode: SslMode::VerifyFull,
            roots: roots.to_owned(),
        };
        let error = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(error),
        );
        explain.io(error).to_string()
    }

    #[test]
    fn an_unknown_ca_names_the_ca_file_and_the_mode() {
        let message = explained("/etc/relay/ca.pem", CertificateError::UnknownIssuer);
        assert_eq!(
            message,
            "the server's certificate is not signed by a CA in /etc/relay/ca.pem \
             (sslmode=verify-full)"
        );
    }

    #[test]
    fn a_host_name_mismatch_names_both_names() {
        let expected = ServerName::try_from("127.0.0.1").expect("an address");
        let message = explained(
            "ca.pem",
            CertificateError::NotValidForNameContext {
                expected,
                presented: vec!["DnsName(\"localhost\")".into()],
            },
        );
        assert!(
            message.starts_with("the server's certificate is for localhost, not for 127.0.0.1"),
            "{message}"
        );
        assert!(message.contains("sslmode=verify-full"), "{message}");
    }

    #[test]
    fn other_failures_keep_their_own_words() {
        let plain = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let explain = Explain {
            mode: SslMode::Require,
            roots: String::new(),
        };
        assert_eq!(explain.io(plain).to_string(), "reset by peer");
    }
}
