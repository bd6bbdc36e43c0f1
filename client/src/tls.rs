//! Certificates and TLS configuration for mutually authenticated QUIC.
//!
//! Every Dynamo cluster has its own certificate authority (the *cluster CA*), created once with
//! `ClusterCa::generate` (the `ca` module, `ca` feature) and kept in a private directory of its
//! own (`ca.pem`, `ca.key`). The CA issues an [`Identity`] for each storage node ([`Role::Node`]), each administrator
//! ([`Role::Admin`]), each client ([`Role::Client`]) and each read-only client
//! ([`Role::ReadOnly`]). The role is part of the signed certificate, so a holder cannot claim
//! another one; what each role may ask for is decided by the node (`Role` only names them).
//!
//! Files. The CA directory holds `ca.pem` and `ca.key` and nothing else; an identity directory
//! (what is handed to a node or a client) holds `ca.pem` and identities saved as
//! `{name}.{role}.pem` / `{name}.{role}.key`. Identity file names always contain a dot and CA
//! file names never do, so no identity can overwrite the CA, and an identity is never written
//! next to a CA key. Directories are created 0700 and files 0600 (on unix), from the start.
//! [`TlsConfig`] turns the CA certificate and one identity into the quinn server and client
//! configurations used by [`crate::transport`]: TLS 1.3 only, the `ring` crypto provider chosen
//! explicitly (no process-wide default is consulted), the cluster CA as the only trust root,
//! client certificates *required*, and an ALPN name `dynamo/N` for each protocol version spoken
//! (see [`dynamo_protocol::PROTOCOL_VERSION`]).
//!
//! Names live in the certificates' DNS subject-alternative names:
//! - a node certificate carries `node.dynamo` (the name every dialer verifies, so that dialers
//!   need not know which node answers at an address) and `{name}.node.dynamo`;
//! - an admin, client or read-only certificate carries `{name}.admin.dynamo`,
//!   `{name}.client.dynamo` or `{name}.readonly.dynamo` only, so it cannot act as a node.
//!
//! [`peer_identity`] reads those names back from a certificate that rustls has
//! *already verified* against the cluster CA, using the same parser rustls uses (`rustls-webpki`).
//!
//! This module must NOT know about the wire protocol, requests, rings or storage: it only makes,
//! stores and loads keys and certificates and builds TLS configurations.

use std::fmt;
use std::fs;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// The roles and names certificates carry are the protocol's; re-exported for callers of this module.
pub use dynamo_protocol::{NameError, PeerIdentity, Role, validate_name};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN name of the oldest protocol version, the only one builds before protocol versions
/// offered. Peers offer `dynamo/N` for every version they speak (see
/// [`dynamo_protocol::PROTOCOL_VERSION`]); peers with no version in common fail the
/// handshake.
pub const ALPN: &[u8] = b"dynamo/1";

/// The ALPN names of protocol `versions`, newest first (the server picks the first of its
/// own list that the client offers).
fn alpn_names(versions: &RangeInclusive<u32>) -> Vec<Vec<u8>> {
    versions
        .clone()
        .rev()
        .map(dynamo_protocol::alpn_name)
        .collect()
}

/// The DNS name that every dialer verifies on the node it connects to. Every node certificate
/// carries it, no client certificate does.
pub const NODE_SERVER_NAME: &str = "node.dynamo";

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Errors from making, storing, loading or using certificates.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A node, client or cluster name is not acceptable.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A configuration offering no protocol version would connect to nobody.
    #[error("a TLS configuration must offer at least one protocol version")]
    NoProtocolVersion,
    /// Reading or writing a file failed.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Refused to overwrite an existing CA or identity.
    #[error("{} already exists; refusing to overwrite {what}", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
        /// What overwriting it would destroy, and how to proceed.
        what: &'static str,
    },
    /// Refused to write an identity into a directory that holds the CA's private key: that
    /// directory would be handed to a node or client with the key to the whole cluster in it.
    #[error(
        "{} holds the cluster CA's private key; write identities to another directory (the one you hand to nodes and clients)",
        dir.display()
    )]
    BesideCaKey {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory already trusts another cluster CA.
    #[error(
        "{} already holds the certificate of another cluster CA; use a separate directory per cluster",
        path.display()
    )]
    OtherCa {
        /// The `ca.pem` found.
        path: PathBuf,
    },
    /// No identity (or no identity of that name) in a directory.
    #[error("no identity {wanted} in {} (found: {found})", dir.display())]
    IdentityNotFound {
        /// The directory searched.
        dir: PathBuf,
        /// What was looked for.
        wanted: String,
        /// The identities that are there.
        found: String,
    },
    /// More than one identity matches; name the one to use.
    #[error("{} holds several identities ({found}); name the one to use", dir.display())]
    AmbiguousIdentity {
        /// The directory searched.
        dir: PathBuf,
        /// The identities that are there.
        found: String,
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
    #[cfg(feature = "ca")]
    #[error("certificate operation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The CA key does not belong to the CA certificate.
    #[cfg(feature = "ca")]
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

/// Reads the identity from a certificate's DNS subject-alternative names.
///
/// Exactly one name of the form `{name}.node.dynamo` or `{name}.client.dynamo` (with a valid
/// `name`) must be present; the generic `node.dynamo` is ignored. This does NOT verify the
/// certificate: call it only on certificates rustls has verified against the cluster CA.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Result<PeerIdentity, TlsError> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(TlsError::Parse)?;
    let mut found: Option<PeerIdentity> = None;
    for dns in parsed.valid_dns_names() {
        for role in Role::ALL {
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
        "no *.node.dynamo, *.admin.dynamo, *.client.dynamo or *.readonly.dynamo name",
    ))
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
    /// The file name (without extension) of this identity: `{name}.{role}`.
    pub fn file_stem(&self) -> String {
        file_stem(self.role, &self.name)
    }

    /// Writes `{name}.{role}.pem` and `{name}.{role}.key` into the identity directory `dir`
    /// (created 0700, files 0600 on unix). Refuses a directory that holds a CA key, and an
    /// identity that already exists unless `overwrite`.
    pub fn save(&self, dir: &Path, overwrite: bool) -> Result<(), TlsError> {
        validate_name(&self.name)?;
        create_private_dir(dir)?;
        if dir.join(CA_KEY_FILE).exists() {
            return Err(TlsError::BesideCaKey {
                dir: dir.to_path_buf(),
            });
        }
        let stem = self.file_stem();
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        if !overwrite {
            for path in [&cert_path, &key_path] {
                if path.exists() {
                    return Err(TlsError::AlreadyExists {
                        path: path.clone(),
                        what: "an identity (pass --force to replace it)",
                    });
                }
            }
        }
        write_private(&key_path, &self.key_pem, overwrite)?;
        write_private(&cert_path, &self.cert_pem, overwrite)
    }

    /// The identities saved in `dir`, as `(role, name)`, sorted.
    pub fn list(dir: &Path) -> Result<Vec<(Role, String)>, TlsError> {
        let entries = fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| io_error(dir, source))?;
            let file = entry.file_name();
            let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".pem")) else {
                continue;
            };
            let Some((name, label)) = stem.rsplit_once('.') else {
                continue;
            };
            let Some(role) = Role::ALL.into_iter().find(|r| r.label() == label) else {
                continue;
            };
            if validate_name(name).is_ok() {
                found.push((role, name.to_owned()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// Loads an identity saved by [`Identity::save`]: the one of `role` (any role if `None`)
    /// and `name` (the only one there if `None`). The certificate must name what its file says.
    pub fn load(dir: &Path, role: Option<Role>, name: Option<&str>) -> Result<Identity, TlsError> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        let all = Identity::list(dir)?;
        let matching: Vec<&(Role, String)> = all
            .iter()
            .filter(|(r, n)| {
                role.is_none_or(|role| role == *r) && name.is_none_or(|name| name == n)
            })
            .collect();
        let describe = |list: &[&(Role, String)]| {
            if list.is_empty() {
                "none".to_owned()
            } else {
                list.iter()
                    .map(|(r, n)| format!("{n} ({r})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let (role, name) = match matching.as_slice() {
            [one] => (*one).clone(),
            [] => {
                let wanted = match (role, name) {
                    (Some(role), Some(name)) => format!("{name} ({role})"),
                    (None, Some(name)) => name.to_owned(),
                    (Some(role), None) => format!("of role {role}"),
                    (None, None) => "at all".to_owned(),
                };
                return Err(TlsError::IdentityNotFound {
                    dir: dir.to_path_buf(),
                    wanted,
                    found: describe(&all.iter().collect::<Vec<_>>()),
                });
            }
            several => {
                return Err(TlsError::AmbiguousIdentity {
                    dir: dir.to_path_buf(),
                    found: describe(several),
                });
            }
        };
        let stem = file_stem(role, &name);
        let cert_path = dir.join(format!("{stem}.pem"));
        let cert_pem = read_to_string(&cert_path)?;
        let key_pem = read_to_string(&dir.join(format!("{stem}.key")))?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|source| {
            TlsError::Pem {
                what: cert_path.display().to_string(),
                source,
            }
        })?;
        let peer = peer_identity(&der)?;
        if peer.name != name || peer.role != role {
            return Err(TlsError::NameMismatch {
                expected: format!("{name}.{}", role.domain()),
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

/// `{name}.{role}`: the file name, without extension, of an identity.
fn file_stem(role: Role, name: &str) -> String {
    format!("{name}.{}", role.label())
}

/// The SHA-256 fingerprint of a CA certificate (of its DER bytes), in lowercase hex: what a
/// store records to know which cluster it belongs to.
pub fn ca_fingerprint(ca_cert_pem: &str) -> Result<String, TlsError> {
    let der =
        CertificateDer::from_pem_slice(ca_cert_pem.as_bytes()).map_err(|source| TlsError::Pem {
            what: "the CA certificate".to_owned(),
            source,
        })?;
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        let _ = fmt::Write::write_fmt(&mut hex, format_args!("{byte:02x}"));
    }
    Ok(hex)
}

/// Quinn server and client configurations for one identity in one cluster.
#[derive(Clone)]
pub struct TlsConfig {
    identity: PeerIdentity,
    server: Arc<quinn::crypto::rustls::QuicServerConfig>,
    client: Arc<quinn::crypto::rustls::QuicClientConfig>,
    https_server: Arc<rustls::ServerConfig>,
    https_client: Arc<rustls::ClientConfig>,
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
    /// certificate from every connecting peer, offer every protocol version from
    /// [`dynamo_protocol::OLDEST_PROTOCOL_VERSION`] to [`dynamo_protocol::PROTOCOL_VERSION`]
    /// by ALPN, over TLS 1.3 with the ring provider.
    ///
    /// It does not check that `identity` was issued by `ca_cert_pem`; a mismatch shows up as a
    /// refused handshake on the other side.
    pub fn new(ca_cert_pem: &str, identity: &Identity) -> Result<TlsConfig, TlsError> {
        let versions = dynamo_protocol::OLDEST_PROTOCOL_VERSION..=dynamo_protocol::PROTOCOL_VERSION;
        Self::speaking(ca_cert_pem, identity, versions)
    }

    /// [`TlsConfig::new`] offering only the protocol `versions`: to test how peers of other
    /// versions are served or refused.
    pub fn speaking(
        ca_cert_pem: &str,
        identity: &Identity,
        versions: RangeInclusive<u32>,
    ) -> Result<TlsConfig, TlsError> {
        if versions.is_empty() {
            return Err(TlsError::NoProtocolVersion);
        }
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
        let own = peer_identity(&cert)?;

        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert.clone()], key.clone_key())?;
        let mut https_server = server.clone();
        https_server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        server.alpn_protocols = alpn_names(&versions);

        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)?;
        let mut https_client = client.clone();
        https_client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        client.alpn_protocols = alpn_names(&versions);

        Ok(TlsConfig {
            identity: own,
            https_server: Arc::new(https_server),
            https_client: Arc::new(https_client),
            server: Arc::new(quinn::crypto::rustls::QuicServerConfig::try_from(server)?),
            client: Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(client)?),
        })
    }

    /// Loads the configuration an application needs from an identity directory (what
    /// `dynamo cert issue` wrote): the cluster CA's `ca.pem` and the identity `name` (the only
    /// one there if `None`).
    pub fn load(dir: &Path, name: Option<&str>) -> Result<TlsConfig, TlsError> {
        let ca_cert_pem = read_to_string(&dir.join(CA_CERT_FILE))?;
        TlsConfig::new(&ca_cert_pem, &Identity::load(dir, None, name)?)
    }

    /// The identity this configuration presents, as peers will see it.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// The quinn server configuration (client certificates required), with quinn's default
    /// transport settings; [`crate::transport`] sets its own.
    pub fn server_config(&self) -> quinn::ServerConfig {
        quinn::ServerConfig::with_crypto(self.server.clone())
    }

    /// The rustls configuration of the HTTP API's server: the same trust and client
    /// certificate requirement as QUIC, with ALPN `h2` and `http/1.1`.
    pub fn https_server_config(&self) -> Arc<rustls::ServerConfig> {
        self.https_server.clone()
    }

    /// A rustls client configuration for the HTTP API (connect to the name
    /// [`NODE_SERVER_NAME`]), presenting this identity; ALPN `h2` and `http/1.1`.
    pub fn https_client_config(&self) -> rustls::ClientConfig {
        (*self.https_client).clone()
    }

    /// The quinn client configuration (dial with server name [`NODE_SERVER_NAME`]), with quinn's
    /// default transport settings; [`crate::transport`] sets its own.
    pub fn client_config(&self) -> quinn::ClientConfig {
        quinn::ClientConfig::new(self.client.clone())
    }
}

pub(crate) fn io_error(path: &Path, source: io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn read_to_string(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| io_error(path, source))
}

/// Creates a private directory (see [`crate::files::create_private_dir`]).
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    crate::files::create_private_dir(dir).map_err(|source| io_error(dir, source))
}

/// Writes a file readable only by its owner (0600 on unix, set when it is created). Fails if
/// the file exists, unless `overwrite`.
pub(crate) fn write_private(path: &Path, contents: &str, overwrite: bool) -> Result<(), TlsError> {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
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
        // `mode` only applies to new files; a replaced identity must be private too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|source| io_error(path, source))?;
    }
    io::Write::write_all(&mut file, contents.as_bytes()).map_err(|source| io_error(path, source))
}

#[cfg(all(test, feature = "ca"))]
mod tests {
    use super::*;
    use crate::ca::ClusterCa;

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
        for (role, name) in Role::ALL.into_iter().zip(["n1", "a1", "c1", "r1"]) {
            let id = ca.issue(role, name).expect("issue");
            let der = CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).expect("pem");
            let peer = peer_identity(&der).expect("identity");
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
