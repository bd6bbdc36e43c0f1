//! Certificates and TLS configuration for mutually authenticated QUIC.
//!
//! Every Dynamo cluster has its own certificate authority (the *cluster CA*), created once with
//! [`ClusterCa::generate`] and kept in a directory (`ca.pem`, `ca.key`). The CA issues an
//! [`Identity`] for each storage node ([`Role::Node`]) and each client ([`Role::Client`]).
//! [`TlsConfig`] turns the CA certificate and one identity into the quinn server and client
//! configurations used by [`crate::transport`]: TLS 1.3 only, the `ring` crypto provider chosen
//! explicitly (no process-wide default is consulted), the cluster CA as the only trust root,
//! client certificates *required*, and the ALPN protocol [`ALPN`].
//!
//! Names live in the certificates' DNS subject-alternative names:
//! - a node certificate carries `node.dynamo` (the name every dialer verifies, so that dialers
//!   need not know which node answers at an address) and `{name}.node.dynamo`;
//! - a client certificate carries `{name}.client.dynamo` only, so it cannot act as a node.
//!
//! [`PeerIdentity::from_certificate`] reads those names back from a certificate that rustls has
//! *already verified* against the cluster CA, using the same parser rustls uses (`rustls-webpki`).
//!
//! This module must NOT know about the wire protocol, requests, rings or storage: it only makes,
//! stores and loads keys and certificates and builds TLS configurations.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol name, which names the protocol and its version. Peers that offer anything
/// else fail the handshake.
pub const ALPN: &[u8] = b"dynamo/1";

/// The DNS name that every dialer verifies on the node it connects to. Every node certificate
/// carries it, no client certificate does.
pub const NODE_SERVER_NAME: &str = "node.dynamo";

/// QUIC idle timeout: a connection with no traffic (not even keep-alives) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// QUIC keep-alive interval, well below [`IDLE_TIMEOUT`], so idle peer connections stay open.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// How many bidirectional streams (requests) a peer may have open on one connection at once.
/// Further requests wait for a stream to free up.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// How long issued certificates (and the CA) are valid, in years.
const VALIDITY_YEARS: i32 = 10;

/// Errors from making, storing, loading or using certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A node, client or cluster name is not acceptable.
    #[error(
        "invalid name {name:?}: {reason} (use 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-')"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Refused to overwrite an existing CA key (that would orphan every issued certificate).
    #[error(
        "{} already exists; refusing to overwrite a cluster CA (remove it first if you really mean to)",
        path.display()
    )]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A PEM file does not contain what it should.
    #[error("{what} is not valid PEM: {source}")]
    Pem {
        /// What was being read (a path or a description).
        what: String,
        /// The underlying error.
        source: rustls::pki_types::pem::Error,
    },
    /// rcgen failed to generate, sign or load a key or certificate.
    #[error("certificate operation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The CA key does not belong to the CA certificate.
    #[error("the CA key in {} does not match the CA certificate next to it", dir.display())]
    KeyMismatch {
        /// The CA directory.
        dir: PathBuf,
    },
    /// A certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Parse(webpki::Error),
    /// A certificate carries no (or more than one) `*.node.dynamo` / `*.client.dynamo` name.
    #[error("certificate carries {0}")]
    NoIdentity(&'static str),
    /// An identity file holds a certificate for another name.
    #[error("identity file for {expected:?} holds a certificate for {found:?}")]
    NameMismatch {
        /// The name that was asked for.
        expected: String,
        /// The name found in the certificate.
        found: String,
    },
    /// rustls refused the configuration (for example a key that does not fit the certificate).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The TLS configuration is not usable for QUIC.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// What a certificate holder is: a storage node or a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A storage node: accepts connections and dials other nodes.
    Node,
    /// A client: only dials nodes.
    Client,
}

impl Role {
    /// The DNS domain under which names of this role are issued.
    pub fn domain(self) -> &'static str {
        match self {
            Role::Node => "node.dynamo",
            Role::Client => "client.dynamo",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Node => "node",
            Role::Client => "client",
        })
    }
}

/// Who is on the other end of a connection, as read from its verified certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerIdentity {
    /// Node or client.
    pub role: Role,
    /// The name the CA issued the certificate for.
    pub name: String,
}

impl PeerIdentity {
    /// Reads the identity from a certificate's DNS subject-alternative names.
    ///
    /// Exactly one name of the form `{name}.node.dynamo` or `{name}.client.dynamo` (with a valid
    /// `name`) must be present; the generic `node.dynamo` is ignored. This does NOT verify the
    /// certificate: call it only on certificates rustls has verified against the cluster CA.
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Result<PeerIdentity, TlsError> {
        let parsed = webpki::EndEntityCert::try_from(cert).map_err(TlsError::Parse)?;
        let mut found: Option<PeerIdentity> = None;
        for dns in parsed.valid_dns_names() {
            for role in [Role::Node, Role::Client] {
                let Some(label) = dns
                    .strip_suffix(role.domain())
                    .and_then(|rest| rest.strip_suffix('.'))
                else {
                    continue;
                };
                if validate_name(label).is_err() {
                    continue;
                }
                if found.is_some() {
                    return Err(TlsError::NoIdentity("more than one dynamo identity name"));
                }
                found = Some(PeerIdentity {
                    role,
                    name: label.to_owned(),
                });
            }
        }
        found.ok_or(TlsError::NoIdentity(
            "no *.node.dynamo or *.client.dynamo name",
        ))
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.role.domain())
    }
}

/// Checks a node, client or cluster name: 1 to 63 characters of `[a-z0-9-]`, not starting or
/// ending with `-` (one DNS label, so it can sit in a certificate name).
///
/// ```
/// use dynamo_node::tls::validate_name;
/// assert!(validate_name("node-1").is_ok());
/// assert!(validate_name("Node_1").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), TlsError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("it contains a character other than a-z, 0-9 or '-'")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it starts or ends with '-'")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(TlsError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
    }
}

/// A cluster certificate authority: its certificate and the key that signs identities.
pub struct ClusterCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Creates a new CA (fresh ECDSA P-256 key, self-signed, valid for about 10 years) for the
    /// cluster `cluster_name` (a valid name, see [`validate_name`]).
    pub fn generate(cluster_name: &str) -> Result<ClusterCa, TlsError> {
        validate_name(cluster_name)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{cluster_name} dynamo cluster CA"),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "dynamo");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600 on unix) into `dir`, creating `dir` if needed.
    /// Refuses to overwrite an existing `ca.key`.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let key_path = dir.join(CA_KEY_FILE);
        if key_path.exists() {
            return Err(TlsError::AlreadyExists { path: key_path });
        }
        write_private(&key_path, &self.key_pem)?;
        let cert_path = dir.join(CA_CERT_FILE);
        fs::write(&cert_path, &self.cert_pem).map_err(|source| io_error(&cert_path, source))
    }

    /// Loads a CA saved by [`ClusterCa::save`], checking that the key belongs to the certificate.
    pub fn load(dir: &Path) -> Result<ClusterCa, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = read_to_string(&cert_path)?;
        let key_pem = read_to_string(&key_path)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|source| {
            TlsError::Pem {
                what: cert_path.display().to_string(),
                source,
            }
        })?;
        let key = KeyPair::from_pem(&key_pem)?;
        let parsed = webpki::EndEntityCert::try_from(&cert_der).map_err(TlsError::Parse)?;
        if parsed.subject_public_key_info().as_ref() != key.subject_public_key_info().as_slice() {
            return Err(TlsError::KeyMismatch {
                dir: dir.to_path_buf(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(ClusterCa {
            cert_pem,
            key_pem,
            issuer,
        })
    }

    /// The CA certificate in PEM, to hand to every node and client as their trust root.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate and key for the node or client `name` (see [`validate_name`]).
    pub fn issue(&self, role: Role, name: &str) -> Result<Identity, TlsError> {
        validate_name(name)?;
        let own_name = format!("{name}.{}", role.domain());
        let sans = match role {
            Role::Node => vec![NODE_SERVER_NAME.to_owned(), own_name.clone()],
            Role::Client => vec![own_name.clone()],
        };
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, own_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "dynamo");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match role {
            Role::Node => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            role,
            name: name.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A certificate and private key issued by the cluster CA for one node or client.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// Node or client.
    pub role: Role,
    /// The issued name.
    pub name: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM. Keep it secret.
    pub key_pem: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Writes `{name}.pem` and `{name}.key` (mode 0600 on unix) into `dir`, creating it if
    /// needed. Overwrites an earlier identity of the same name.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        validate_name(&self.name)?;
        fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        write_private(&dir.join(format!("{}.key", self.name)), &self.key_pem)?;
        let cert_path = dir.join(format!("{}.pem", self.name));
        fs::write(&cert_path, &self.cert_pem).map_err(|source| io_error(&cert_path, source))
    }

    /// Loads the identity `name` saved by [`Identity::save`]. The role is read from the
    /// certificate, which must be issued for `name`.
    pub fn load(dir: &Path, name: &str) -> Result<Identity, TlsError> {
        validate_name(name)?;
        let cert_path = dir.join(format!("{name}.pem"));
        let cert_pem = read_to_string(&cert_path)?;
        let key_pem = read_to_string(&dir.join(format!("{name}.key")))?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|source| {
            TlsError::Pem {
                what: cert_path.display().to_string(),
                source,
            }
        })?;
        let peer = PeerIdentity::from_certificate(&der)?;
        if peer.name != name {
            return Err(TlsError::NameMismatch {
                expected: name.to_owned(),
                found: peer.to_string(),
            });
        }
        Ok(Identity {
            role: peer.role,
            name: peer.name,
            cert_pem,
            key_pem,
        })
    }
}

/// Quinn server and client configurations for one identity in one cluster.
#[derive(Clone)]
pub struct TlsConfig {
    identity: PeerIdentity,
    server: Arc<quinn::crypto::rustls::QuicServerConfig>,
    client: Arc<quinn::crypto::rustls::QuicClientConfig>,
    transport: Arc<quinn::TransportConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Builds the configurations: trust only `ca_cert_pem`, present `identity`, require a client
    /// certificate from every connecting peer, speak [`ALPN`] over TLS 1.3 with the ring provider.
    ///
    /// It does not check that `identity` was issued by `ca_cert_pem`; a mismatch shows up as a
    /// refused handshake on the other side.
    pub fn new(ca_cert_pem: &str, identity: &Identity) -> Result<TlsConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes()).map_err(|source| {
            TlsError::Pem {
                what: "the CA certificate".to_owned(),
                source,
            }
        })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca)?;
        let roots = Arc::new(roots);

        let cert =
            CertificateDer::from_pem_slice(identity.cert_pem.as_bytes()).map_err(|source| {
                TlsError::Pem {
                    what: format!("the certificate of {:?}", identity.name),
                    source,
                }
            })?;
        let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).map_err(|source| {
            TlsError::Pem {
                what: format!("the private key of {:?}", identity.name),
                source,
            }
        })?;
        let own = PeerIdentity::from_certificate(&cert)?;

        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert.clone()], key.clone_key())?;
        server.alpn_protocols = vec![ALPN.to_vec()];

        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)?;
        client.alpn_protocols = vec![ALPN.to_vec()];

        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
                IDLE_TIMEOUT.as_millis() as u32,
            ))))
            .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_CONCURRENT_STREAMS))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(0));

        Ok(TlsConfig {
            identity: own,
            server: Arc::new(quinn::crypto::rustls::QuicServerConfig::try_from(server)?),
            client: Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(client)?),
            transport: Arc::new(transport),
        })
    }

    /// The identity this configuration presents, as peers will see it.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// The quinn server configuration (client certificates required).
    pub fn server_config(&self) -> quinn::ServerConfig {
        let mut config = quinn::ServerConfig::with_crypto(self.server.clone());
        config.transport_config(self.transport.clone());
        config
    }

    /// The quinn client configuration (dial with server name [`NODE_SERVER_NAME`]).
    pub fn client_config(&self) -> quinn::ClientConfig {
        let mut config = quinn::ClientConfig::new(self.client.clone());
        config.transport_config(self.transport.clone());
        config
    }
}

fn io_error(path: &Path, source: io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_to_string(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| io_error(path, source))
}

/// Writes a secret file readable only by its owner (on unix).
fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|source| io_error(path, source))?;
    #[cfg(unix)]
    {
        // `mode` only applies to new files; tighten an existing one too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|source| io_error(path, source))?;
    }
    io::Write::write_all(&mut file, contents.as_bytes()).map_err(|source| io_error(path, source))
}

/// Valid from the start of last year (so clock skew between machines does not matter) to about
/// [`VALIDITY_YEARS`] years from now.
fn set_validity(params: &mut CertificateParams) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Approximate calendar year; being off by one near New Year is harmless here.
    let year = 1970 + (secs / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + VALIDITY_YEARS, 1, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("node-1", true),
            ("0", true),
            (&"a".repeat(63), true),
            (&"a".repeat(64), false),
            ("", false),
            ("-a", false),
            ("a-", false),
            ("A", false),
            ("a.b", false),
            ("a_b", false),
            ("ü", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_name(name).is_ok(), *ok, "{name:?}");
        }
    }

    #[test]
    fn issued_identity_reads_back() {
        let ca = ClusterCa::generate("test").expect("ca");
        for (role, name) in [(Role::Node, "n1"), (Role::Client, "c1")] {
            let id = ca.issue(role, name).expect("issue");
            let der = CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).expect("pem");
            let peer = PeerIdentity::from_certificate(&der).expect("identity");
            assert_eq!(
                peer,
                PeerIdentity {
                    role,
                    name: name.to_owned()
                }
            );
        }
    }
}
