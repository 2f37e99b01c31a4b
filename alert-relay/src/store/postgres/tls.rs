//! TLS to PostgreSQL: `sslmode` and `sslrootcert` read as libpq reads them, and the rustls
//! connector (ring, through `tokio-postgres-rustls`) that checks what the mode asks for.
//!
//! The driver knows only `disable`, `prefer` and `require`, so the relay takes both keys
//! out of the URL, tells the driver whether TLS is asked for, and does the checking in the
//! connector: none for `prefer` and `require` (encrypted, any certificate), the chain to a
//! trusted CA for `verify-ca` (and for `prefer`/`require` given a `sslrootcert`, as libpq
//! does), the chain and the host name for `verify-full`. The trusted CAs are those of the
//! `sslrootcert` file, else the public ones built in (`webpki-roots`; `sslrootcert=system`
//! says so explicitly). A refused certificate is told in an operator's words: which CA
//! file, which host name, which mode (`verify`).

mod verify;

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use verify::{Explain, Verifier};

/// `sslmode`, with libpq's meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS if the server offers it, plain text if not (the default).
    Prefer,
    /// TLS or nothing; the certificate is checked only against a given `sslrootcert`.
    Require,
    /// TLS, and a certificate signed by a trusted CA, whatever host name it is for.
    VerifyCa,
    /// TLS, a certificate signed by a trusted CA, and for the host connected to.
    VerifyFull,
}

impl SslMode {
    const ALL: [(&'static str, SslMode); 5] = [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];

    fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, mode)| *mode)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(name, _)| *name).collect();
                format!("sslmode={text} is not a mode (one of {})", names.join(", "))
            })
    }

    /// Whether a connection without TLS is refused.
    pub fn requires_tls(self) -> bool {
        !matches!(self, SslMode::Disable | SslMode::Prefer)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(_, mode)| mode == self)
            .map_or("?", |(name, _)| *name);
        f.write_str(name)
    }
}

/// The CAs that sign the server's certificate, as `sslrootcert` gives them.
#[derive(Clone, Debug)]
enum Roots {
    /// The Mozilla set built into the relay (`webpki-roots`): `sslrootcert=system` or none.
    BuiltIn,
    /// The certificates of a PEM file, read when the URL was checked.
    File {
        path: PathBuf,
        store: Arc<RootCertStore>,
    },
}

impl Roots {
    /// Reads the CA file now, so that a missing or empty one is refused at start.
    fn read(text: &str) -> Result<Self, String> {
        if text == "system" {
            return Ok(Roots::BuiltIn);
        }
        let path = PathBuf::from(text);
        let shown = path.display();
        let pem = std::fs::read(&path)
            .map_err(|e| format!("sslrootcert={shown}: cannot read the CA file: {e}"))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("sslrootcert={shown}: not a PEM file of certificates: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "sslrootcert={shown}: no certificate in the file (a CA file holds one or more \
                 -----BEGIN CERTIFICATE----- blocks)"
            ));
        }
        let mut store = RootCertStore::empty();
        for (n, cert) in certs.into_iter().enumerate() {
            store.add(cert).map_err(|e| {
                format!(
                    "sslrootcert={shown}: certificate {} is unusable: {e}",
                    n + 1
                )
            })?;
        }
        Ok(Roots::File {
            path,
            store: Arc::new(store),
        })
    }

    fn store(&self) -> Arc<RootCertStore> {
        match self {
            Roots::BuiltIn => Arc::new(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            Roots::File { store, .. } => store.clone(),
        }
    }

    /// Where the trusted CAs come from, for an error message.
    fn describe(&self) -> String {
        match self {
            Roots::BuiltIn => "the public CAs built into the relay (a private CA is given \
                               with sslrootcert=/path/to/ca.pem)"
                .to_owned(),
            Roots::File { path, .. } => path.display().to_string(),
        }
    }
}

/// What the URL asks of TLS, checked when the URL is parsed.
#[derive(Clone, Debug)]
pub struct Tls {
    mode: SslMode,
    /// `None`: no `sslrootcert` given.
    roots: Option<Roots>,
}

/// libpq's default: TLS if the server offers it, no certificate checked.
impl Default for Tls {
    fn default() -> Self {
        Self {
            mode: SslMode::Prefer,
            roots: None,
        }
    }
}

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

impl Tls {
    /// `sslmode` (default `prefer`) and `sslrootcert` as the URL gives them; the CA file is
    /// read now.
    pub fn parse(mode: Option<&str>, root_cert: Option<&str>) -> Result<Self, String> {
        let mode = mode.map_or(Ok(SslMode::Prefer), SslMode::parse)?;
        let roots = match root_cert {
            None => None,
            Some(_) if mode == SslMode::Disable => {
                let why = "sslrootcert is of no use with sslmode=disable: leave one of them out";
                return Err(why.to_owned());
            }
            Some(text) => Some(Roots::read(text)?),
        };
        Ok(Self { mode, roots })
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The mode the driver is told: it negotiates TLS, the connector checks the rest.
    pub fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self.mode {
            SslMode::Disable => Driver::Disable,
            SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }

    fn check(&self) -> Check {
        match (self.mode, &self.roots) {
            (SslMode::VerifyFull, _) => Check::ChainAndName,
            (SslMode::VerifyCa, _) | (_, Some(_)) => Check::Chain,
            _ => Check::Nothing,
        }
    }

    /// The connector for the driver and the pool.
    pub fn connector(&self) -> Result<Connector, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = self.roots.clone().unwrap_or(Roots::BuiltIn);
        let verifier = Verifier {
            check: self.check(),
            roots: roots.store(),
            provider: provider.clone(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set TLS up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        // What PostgreSQL 17 asks for with `sslnegotiation=direct`; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Connector {
            inner: MakeRustlsConnect::new(config),
            explain: Arc::new(Explain {
                mode: self.mode,
                roots: roots.describe(),
            }),
        })
    }
}

/// The connector given to the driver: `tokio-postgres-rustls` (which also gives the
/// server's certificate hash for SCRAM channel binding), with refusals explained.
#[derive(Clone)]
pub struct Connector {
    inner: MakeRustlsConnect,
    explain: Arc<Explain>,
}

impl<S> MakeTlsConnect<S> for Connector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = Connect<<MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect>;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(Connect {
            inner: MakeTlsConnect::<S>::make_tls_connect(&mut self.inner, host)?,
            explain: self.explain.clone(),
        })
    }
}

/// One handshake; see [`Connector`].
pub struct Connect<T> {
    inner: T,
    explain: Arc<Explain>,
}

impl<S, T> TlsConnect<S> for Connect<T>
where
    T: TlsConnect<S, Error = io::Error>,
    T::Future: Send + 'static,
{
    type Stream = T::Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<T::Stream>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let handshake = self.inner.connect(stream);
        let explain = self.explain;
        Box::pin(async move { handshake.await.map_err(|e| explain.io(e)) })
    }
}

#[cfg(test)]
mod tests;
