//! Who may talk to a node: the roles a cluster CA writes into certificates and the names it
//! issues them for.
//!
//! A certificate's role is signed by the CA, so a holder cannot claim another one; what each
//! role may ask for is decided by the node. This module must NOT know X.509 or TLS: reading an
//! identity out of a verified certificate is `dynamo-client`'s `tls` module.

use std::fmt;

/// What a certificate holder is. The CA writes it into the certificate's name, so it cannot be
/// claimed by a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A storage node: accepts connections and dials other nodes.
    Node,
    /// An operator: membership changes, node removal and bucket changes, and what a client may do.
    Admin,
    /// An application: reads, writes, deletes, and read-only cluster information.
    Client,
    /// Reads and read-only cluster information only.
    ReadOnly,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Node, Role::Admin, Role::Client, Role::ReadOnly];

    /// The label of this role in certificate names and file names.
    pub fn label(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Admin => "admin",
            Role::Client => "client",
            Role::ReadOnly => "readonly",
        }
    }

    /// The DNS domain under which names of this role are issued.
    pub fn domain(self) -> &'static str {
        match self {
            Role::Node => "node.dynamo",
            Role::Admin => "admin.dynamo",
            Role::Client => "client.dynamo",
            Role::ReadOnly => "readonly.dynamo",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::ReadOnly => "read-only",
            other => other.label(),
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

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.role.domain())
    }
}

/// Why a node, client or cluster name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid name {name:?}: {reason} (use 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-')"
)]
pub struct NameError {
    /// The rejected name.
    pub name: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

/// Checks a node, client or cluster name: 1 to 63 characters of `[a-z0-9-]`, not starting or
/// ending with `-` (one DNS label, so it can sit in a certificate name).
///
/// ```
/// use dynamo_protocol::validate_name;
/// assert!(validate_name("node-1").is_ok());
/// assert!(validate_name("Node_1").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), NameError> {
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
        Some(reason) => Err(NameError {
            name: name.to_owned(),
            reason,
        }),
    }
}
