//! Node addresses as people and gossip give them (`10.0.0.1:7000`, `[fd00::1]:7000` or
//! `dynamo-0.dynamo.db.svc:7000`), and their resolution to socket addresses when dialled.
//!
//! A name is resolved when it is first dialled and again once its answer is older than
//! [`RESOLVED_FOR`] or a request to it failed ([`Resolver::forget`]): a member that comes back
//! under the same name with a new IP (a rescheduled Kubernetes pod, a container restarted on
//! its network) is found again without a restart of anyone who knew it.
//!
//! This module must not know what is sent to an address or who lives there.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long a name's resolution is used before it is asked again.
pub const RESOLVED_FOR: Duration = Duration::from_secs(10);

/// Longest host name accepted (RFC 1035's limit on a whole name).
const MAX_HOST_LEN: usize = 253;

/// A node's address: an IP address and port, or a host name and port, checked for shape.
///
/// ```
/// use dynamo_client::address::NodeAddress;
///
/// let named: NodeAddress = "dynamo-0.dynamo:7000".parse().unwrap();
/// assert_eq!((named.host(), named.port()), ("dynamo-0.dynamo", 7000));
/// assert!(named.socket_addr().is_none());
/// let literal: NodeAddress = "[::1]:7000".parse().unwrap();
/// assert_eq!(literal.socket_addr(), Some("[::1]:7000".parse().unwrap()));
/// assert!("dynamo-0".parse::<NodeAddress>().is_err()); // no port
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeAddress {
    text: String,
    /// Where the host part ends in `text` (before `:port`).
    host_end: usize,
    port: u16,
    /// The socket address when the host is an IP address, parsed once: every request to a
    /// node asks for it.
    literal: Option<SocketAddr>,
}

/// Why text is not a node address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a node address: {reason} (give HOST:PORT, for example 10.0.0.1:7000, [fd00::1]:7000 or dynamo-0.example:7000)"
)]
pub struct AddressError {
    text: String,
    reason: &'static str,
}

impl NodeAddress {
    /// The host part: an IP address (without brackets) or a name.
    pub fn host(&self) -> &str {
        let host = &self.text[..self.host_end];
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address when the host is an IP address; `None` for a name.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.literal
    }

    /// The address as text, as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for NodeAddress {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| AddressError {
            text: text.to_owned(),
            reason,
        };
        if let Ok(socket) = text.parse::<SocketAddr>() {
            if socket.port() == 0 {
                return Err(error("port 0 cannot be dialled"));
            }
            return Ok(NodeAddress::from(socket));
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| error("no port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| error("the port is not a number from 1 to 65535"))?;
        if host.is_empty() || host.len() > MAX_HOST_LEN {
            return Err(error("the host name is empty or too long"));
        }
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !host.trim_end_matches('.').split('.').all(valid_label) {
            return Err(error(
                "the host is neither an IP address nor a DNS name (IPv6 addresses go in brackets)",
            ));
        }
        Ok(NodeAddress {
            text: text.to_owned(),
            host_end: host.len(),
            port,
            literal: None,
        })
    }
}

impl TryFrom<String> for NodeAddress {
    type Error = AddressError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<NodeAddress> for String {
    fn from(address: NodeAddress) -> Self {
        address.text
    }
}

impl From<SocketAddr> for NodeAddress {
    fn from(socket: SocketAddr) -> Self {
        let text = socket.to_string();
        let host_end = text.rfind(':').unwrap_or(text.len());
        NodeAddress {
            text,
            host_end,
            port: socket.port(),
            literal: Some(socket),
        }
    }
}

impl From<&SocketAddr> for NodeAddress {
    fn from(socket: &SocketAddr) -> Self {
        NodeAddress::from(*socket)
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why an address could not be turned into a socket address.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// The text is not an address at all.
    #[error(transparent)]
    Invalid(#[from] AddressError),
    /// The name did not resolve.
    #[error("cannot resolve {address}: {reason}")]
    Lookup {
        /// The address whose host did not resolve.
        address: String,
        /// What the resolver said.
        reason: String,
    },
}

/// Resolves node addresses, keeping each name's answer for [`RESOLVED_FOR`]. Cheap to share
/// behind an `Arc`; literal IP addresses never touch the cache.
#[derive(Debug, Default)]
pub struct Resolver {
    answers: Mutex<HashMap<NodeAddress, (SocketAddr, Instant)>>,
}

/// Names whose answers a resolver keeps at most; past it the cache starts again (names come
/// from configuration and gossip, a handful per member).
const MAX_CACHED_NAMES: usize = 4096;

impl Resolver {
    /// The socket address to dial for `address`: the address itself when it is an IP address,
    /// otherwise the first answer of the system resolver (which orders them by RFC 6724).
    pub async fn resolve(&self, address: &NodeAddress) -> Result<SocketAddr, ResolveError> {
        if let Some(socket) = address.socket_addr() {
            return Ok(socket);
        }
        if let Some(&(socket, at)) = self.lock().get(address)
            && at.elapsed() < RESOLVED_FOR
        {
            return Ok(socket);
        }
        let lookup = |reason: String| ResolveError::Lookup {
            address: address.to_string(),
            reason,
        };
        let socket = tokio::net::lookup_host((address.host(), address.port()))
            .await
            .map_err(|e| lookup(e.to_string()))?
            .next()
            .ok_or_else(|| lookup("no address found".to_owned()))?;
        let mut answers = self.lock();
        if answers.len() >= MAX_CACHED_NAMES {
            answers.clear();
        }
        answers.insert(address.clone(), (socket, Instant::now()));
        Ok(socket)
    }

    /// Parses `text` and resolves it (see [`Resolver::resolve`]).
    pub async fn resolve_text(&self, text: &str) -> Result<SocketAddr, ResolveError> {
        self.resolve(&text.parse()?).await
    }

    /// Drops what `address` resolved to, so the next dial asks the resolver again: a request
    /// to it failed, and the name may point elsewhere now.
    pub fn forget(&self, address: &NodeAddress) {
        if address.socket_addr().is_none() {
            self.lock().remove(address);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeAddress, (SocketAddr, Instant)>> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `--seed`, `--nodes`, `--advertise` and join targets accept, and what they refuse.
    #[test]
    fn address_shapes() {
        /// The text, and what it parses to: host, port, and whether it is an IP address.
        type Parsed = Option<(&'static str, u16, bool)>;
        let cases: [(&str, Parsed); 14] = [
            ("10.0.0.1:7000", Some(("10.0.0.1", 7000, true))),
            ("[fd00::1]:7000", Some(("fd00::1", 7000, true))),
            ("localhost:7000", Some(("localhost", 7000, false))),
            (
                "dynamo-0.dynamo.db.svc.cluster.local:7000",
                Some(("dynamo-0.dynamo.db.svc.cluster.local", 7000, false)),
            ),
            (
                "node_a.example.:7000",
                Some(("node_a.example.", 7000, false)),
            ),
            ("10.0.0.1", None),
            ("dynamo-0", None),
            ("dynamo-0:0", None),
            ("10.0.0.1:0", None),
            ("dynamo-0:70000", None),
            (":7000", None),
            ("fd00::1:7000", None),
            ("-bad.example:7000", None),
            ("a b:7000", None),
        ];
        for (text, expected) in cases {
            let parsed = text.parse::<NodeAddress>();
            match expected {
                Some((host, port, literal)) => {
                    let address = parsed.unwrap_or_else(|e| panic!("{text}: {e}"));
                    assert_eq!(address.host(), host, "{text}");
                    assert_eq!(address.port(), port, "{text}");
                    assert_eq!(address.socket_addr().is_some(), literal, "{text}");
                    assert_eq!(address.to_string(), text);
                }
                None => assert!(parsed.is_err(), "{text} should be refused"),
            }
        }
    }

    #[test]
    fn socket_addresses_convert_both_ways() {
        for text in ["127.0.0.1:7100", "[::1]:7100"] {
            let socket: SocketAddr = text.parse().expect("socket");
            let address = NodeAddress::from(socket);
            assert_eq!(address.socket_addr(), Some(socket));
            assert_eq!(address, text.parse().expect("address"));
        }
    }

    #[tokio::test]
    async fn names_resolve_and_literals_skip_the_resolver() {
        let resolver = Resolver::default();
        let local = resolver
            .resolve(&"localhost:7000".parse().expect("address"))
            .await
            .expect("localhost resolves");
        assert!(local.ip().is_loopback());
        assert_eq!(local.port(), 7000);
        assert_eq!(resolver.lock().len(), 1);
        let literal = resolver
            .resolve_text("127.0.0.1:7001")
            .await
            .expect("literal");
        assert_eq!(literal, "127.0.0.1:7001".parse().expect("socket"));
        assert_eq!(resolver.lock().len(), 1, "literals are not cached");
        resolver.forget(&"localhost:7000".parse().expect("address"));
        assert!(resolver.lock().is_empty());
    }
}
