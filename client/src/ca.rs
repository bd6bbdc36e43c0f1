//! The cluster certificate authority: making the CA, issuing identities, loading the CA back
//! (the `ca` feature, which brings rcgen; a client that only loads its identity does without).
//!
//! See [`crate::tls`] for the files, the names in certificates and the roles. This module must
//! NOT know about the wire protocol, requests, rings or storage.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use dynamo_protocol::{Role, validate_name};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::tls::{
    CA_CERT_FILE, CA_KEY_FILE, Identity, NODE_SERVER_NAME, TlsError, create_private_dir, io_error,
    read_to_string, write_private,
};

/// How long issued certificates (and the CA) are valid, in years.
const VALIDITY_YEARS: i32 = 10;

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

    /// Writes `ca.pem` and `ca.key` into the CA directory `dir` (created 0700, files 0600 on
    /// unix). Refuses to overwrite an existing CA: that would orphan every issued certificate.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        create_private_dir(dir)?;
        for file in [CA_KEY_FILE, CA_CERT_FILE] {
            let path = dir.join(file);
            if path.exists() {
                return Err(TlsError::AlreadyExists {
                    path,
                    what: "a cluster CA (every certificate it issued would stop working)",
                });
            }
        }
        write_private(&dir.join(CA_KEY_FILE), &self.key_pem, false)?;
        write_private(&dir.join(CA_CERT_FILE), &self.cert_pem, false)
    }

    /// Writes the CA certificate (not the key) as `ca.pem` into an identity directory, creating
    /// it if needed. Does nothing if the same certificate is there; refuses another CA's.
    pub fn install_cert(&self, dir: &Path) -> Result<(), TlsError> {
        create_private_dir(dir)?;
        let path = dir.join(CA_CERT_FILE);
        match fs::read_to_string(&path) {
            Ok(existing) if existing == self.cert_pem => Ok(()),
            Ok(_) => Err(TlsError::OtherCa { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_private(&path, &self.cert_pem, false)
            }
            Err(source) => Err(io_error(&path, source)),
        }
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
            Role::Admin | Role::Client | Role::ReadOnly => vec![own_name.clone()],
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
            Role::Admin | Role::Client | Role::ReadOnly => {
                vec![ExtendedKeyUsagePurpose::ClientAuth]
            }
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
