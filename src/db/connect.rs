//! Connecting to PostgreSQL as libpq would from the same `DATABASE_URL`: `sslmode` and
//! `sslrootcert` choose TLS and what the server's certificate must prove, and `PGPASSWORD`
//! supplies the password a URL leaves out. tokio-postgres knows only `disable`, `prefer` and
//! `require`, and checks no certificate; what `verify-ca` and `verify-full` check is rustls's,
//! set up here.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::SyncPgConnection;

/// libpq's `sslmode`: whether to use TLS, and what the server's certificate must prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, else plain; no certificate check (libpq's default).
    Prefer,
    /// TLS or no connection; no certificate check, unless `sslrootcert` names a file (then as
    /// `verify-ca`, which is what libpq does).
    Require,
    /// TLS with a certificate that chains to a trusted root, for any host name.
    VerifyCa,
    /// TLS with a certificate that chains to a trusted root and names the host connected to.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is none of disable, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// The roots a verified certificate must chain to: `sslrootcert=PATH`, or the system's
/// (`sslrootcert=system`, and when none is named; libpq would read `~/.postgresql/root.crt`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    File(PathBuf),
    System,
}

/// A PostgreSQL server to connect to, parsed once from a `DATABASE_URL`.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    mode: SslMode,
    roots: Roots,
    tls: MakeRustlsConnect,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("Target")
            .field("host", &self.host())
            .field("sslmode", &self.mode)
            .finish()
    }
}

impl Target {
    /// Parses a `postgres://` URL with libpq's `sslmode` (default `prefer`) and `sslrootcert`;
    /// a URL without a password takes `PGPASSWORD`'s, as libpq does.
    pub fn parse(url: &str) -> ConnectionResult<Self> {
        let invalid = |reason: String| ConnectionError::InvalidConnectionUrl(reason);
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = SslMode::Prefer;
        let mut roots = None;
        // Every other parameter goes to tokio-postgres as written (it decodes them itself).
        let mut passed = Vec::new();
        for param in query.split('&').filter(|param| !param.is_empty()) {
            let (name, raw) = param.split_once('=').unwrap_or((param, ""));
            let value = || {
                percent_encoding::percent_decode_str(raw)
                    .decode_utf8()
                    .map(|value| value.into_owned())
                    .map_err(|_| invalid(format!("DATABASE_URL: {name} is not UTF-8")))
            };
            match name {
                "sslmode" => mode = value()?.parse().map_err(invalid)?,
                "sslrootcert" => {
                    let value = value()?;
                    roots = Some(if value == "system" {
                        Roots::System
                    } else {
                        Roots::File(PathBuf::from(value))
                    });
                }
                _ => passed.push(param),
            }
        }
        if mode == SslMode::Require && matches!(roots, Some(Roots::File(_))) {
            mode = SslMode::VerifyCa;
        }
        passed.push(match mode {
            SslMode::Disable => "sslmode=disable",
            SslMode::Prefer => "sslmode=prefer",
            _ => "sslmode=require",
        });
        let mut config = tokio_postgres::Config::from_str(&format!("{base}?{}", passed.join("&")))
            .map_err(|error| invalid(format!("DATABASE_URL: {}", with_causes(&error))))?;
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        let roots = roots.unwrap_or(Roots::System);
        let tls = client_config(mode, &roots).map_err(invalid)?;
        Ok(Target {
            config,
            mode,
            roots,
            tls: MakeRustlsConnect::new(tls),
        })
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// The first host named, for messages.
    fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        }
    }

    /// Opens one connection. Its error names the server, the `sslmode` and the reason (a
    /// certificate the roots did not sign, one for another host name, a server that takes
    /// only TLS).
    pub async fn connect(&self) -> ConnectionResult<AsyncPgConnection> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|error| ConnectionError::BadConnection(self.explain(&error)))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }

    /// Opens a blocking connection (migrations, database administration). Its socket is driven
    /// by a runtime of its own, so it works outside any runtime and inside `spawn_blocking`.
    pub fn connect_blocking(&self) -> ConnectionResult<SyncPgConnection> {
        let runtime = blocking_runtime()?;
        let _entered = runtime.enter();
        let conn = runtime.handle().block_on(self.connect())?;
        // Within `enter`, the wrapper blocks on this runtime's handle too.
        Ok(SyncPgConnection::from(conn))
    }

    fn explain(&self, error: &tokio_postgres::Error) -> String {
        let text = with_causes(error);
        let hint = if self.mode == SslMode::Disable && text.contains("no encryption") {
            " (the server accepts only TLS connections: use sslmode=require, verify-ca or \
             verify-full)"
                .to_owned()
        } else if text.contains("UnknownIssuer") {
            match &self.roots {
                Roots::File(path) => format!(
                    " (no CA of sslrootcert={} signed the server's certificate)",
                    path.display()
                ),
                Roots::System => {
                    " (no system root signed the server's certificate: name its CA with \
                     sslrootcert=PATH)"
                        .to_owned()
                }
            }
        } else {
            String::new()
        };
        format!(
            "connecting to PostgreSQL at {} with sslmode={}: {text}{hint}",
            self.host(),
            self.mode
        )
    }
}

/// An error and its causes: tokio-postgres's own text is only its kind ("db error", "error
/// performing TLS handshake"), the reason is in the causes.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

/// The runtime that drives every blocking connection's socket.
fn blocking_runtime() -> ConnectionResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("postgres-blocking")
                .enable_all()
                .build()
                .map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(|error| ConnectionError::BadConnection(format!("a runtime: {error}")))
}

fn client_config(mode: SslMode, roots: &Roots) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS versions: {error}"))?;
    let algorithms = provider.signature_verification_algorithms;
    let webpki = || {
        WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(roots)?), provider.clone())
            .build()
            .map_err(|error| format!("TLS verifier: {error}"))
    };
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        // `disable` never shakes hands.
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(Lenient {
            chain: None,
            algorithms,
        }),
        SslMode::VerifyCa => Arc::new(Lenient {
            chain: Some(webpki()?),
            algorithms,
        }),
        SslMode::VerifyFull => webpki()?,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn root_store(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let unreadable =
                |error: &dyn fmt::Display| format!("sslrootcert={}: {error}", path.display());
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
                let cert = cert.map_err(|e| unreadable(&e))?;
                store.add(cert).map_err(|e| unreadable(&e))?;
            }
            if store.is_empty() {
                return Err(unreadable(&"holds no certificate"));
            }
        }
        Roots::System => {
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if store.is_empty() {
                return Err(
                    "no system root certificates (name a CA file: sslrootcert=PATH)".into(),
                );
            }
        }
    }
    Ok(store)
}

/// What `prefer`, `require` and `verify-ca` check of the server's certificate: nothing of its
/// identity (`prefer`, `require`: TLS against eavesdropping only), or its chain to the roots
/// whatever host name it names (`verify-ca`). The handshake's signatures are always checked
/// against the certificate presented.
#[derive(Debug)]
struct Lenient {
    /// `verify-ca`'s chain check: webpki's, whose refusal of the name alone means everything
    /// else held (it checks the name last).
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_read_as_libpq_reads_them() {
        let mode = |url: &str| Target::parse(url).map(|target| target.ssl_mode());
        assert_eq!(mode("postgres://u@h/db").unwrap(), SslMode::Prefer);
        assert_eq!(
            mode("postgres://u@h/db?sslmode=disable").unwrap(),
            SslMode::Disable
        );
        assert_eq!(
            mode("postgres://u@h/db?sslmode=verify-full&sslrootcert=system").unwrap(),
            SslMode::VerifyFull
        );
        let refused = mode("postgres://u@h/db?sslmode=allow")
            .unwrap_err()
            .to_string();
        assert!(refused.contains("sslmode=allow is none of"), "{refused}");
        let missing = mode("postgres://u@h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("sslrootcert=/nonexistent/ca.pem"),
            "{missing}"
        );
        let unknown = mode("postgres://u@h/db?sslcompression=1")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("sslcompression"), "{unknown}");
    }

    #[test]
    fn other_parameters_pass_through_and_no_password_is_shown() {
        let target =
            Target::parse("postgres://u:secret@db.example:6432/crm?application_name=a%20b")
                .unwrap();
        assert_eq!(target.config.get_application_name(), Some("a b"));
        assert_eq!(target.config.get_ports(), [6432]);
        assert_eq!(target.config.get_password(), Some(&b"secret"[..]));
        assert!(!format!("{target:?}").contains("secret"));
    }
}
