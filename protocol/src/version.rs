//! Protocol versions: which messages a peer of each version understands, and how peers agree
//! on one.
//!
//! Two peers agree on a version during the TLS handshake, by ALPN: each offers
//! `dynamo/N` for every version it speaks, newest first, and the server picks the newest both
//! speak. A peer that speaks none of the other's versions fails the handshake. After that,
//! a sender checks [`Request::since_version`] against the version of the connection and does
//! not send a request the peer would not understand.
//!
//! What a version may change: a later version adds request and response variants at the end
//! of their enums (postcard numbers variants by position), so every message of an earlier
//! version decodes unchanged. A change to an existing message (a field added, a variant
//! changed) needs a version of its own and a sender that encodes for the version it
//! negotiated. A node speaks its own version and the one before it, so a cluster upgrades one
//! node at a time.
//!
//! | version | since | adds |
//! |---|---|---|
//! | 1 | the first release | everything not listed below |
//! | 2 | issue 28 | [`Request::ReadCopy`] and [`Response::Copy`] (client-side reads) |
//! | 3 | issue 29 | [`Request::ExportVersions`], [`Request::ScanVersions`], [`Request::MergeVersions`] and [`Response::Versions`] (backup and restore) |
//!
//! This module must not know how handshakes are done; it names versions and what they hold.
//!
//! [`Response::Copy`]: crate::Response::Copy
//! [`Response::Versions`]: crate::Response::Versions

use crate::Request;

/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 3;

/// The oldest protocol version this build still speaks: peers and clients of the previous
/// version keep working while a cluster is upgraded.
pub const OLDEST_PROTOCOL_VERSION: u32 = 1;

/// The ALPN name of protocol `version` (`dynamo/2`).
///
/// ```
/// use dynamo_protocol::{alpn_name, version_of_alpn};
/// assert_eq!(alpn_name(2), b"dynamo/2");
/// assert_eq!(version_of_alpn(b"dynamo/2"), Some(2));
/// assert_eq!(version_of_alpn(b"h2"), None);
/// ```
pub fn alpn_name(version: u32) -> Vec<u8> {
    format!("dynamo/{version}").into_bytes()
}

/// The protocol version an ALPN name stands for; `None` for any other name.
pub fn version_of_alpn(name: &[u8]) -> Option<u32> {
    let digits = name.strip_prefix(b"dynamo/")?;
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Request {
    /// The first protocol version whose peers understand this request.
    pub fn since_version(&self) -> u32 {
        match self {
            Request::ReadCopy { .. } => 2,
            Request::ExportVersions { .. }
            | Request::ScanVersions { .. }
            | Request::MergeVersions { .. } => 3,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_names_round_trip_and_nothing_else_parses() {
        for version in [OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION, 10, 999] {
            assert_eq!(version_of_alpn(&alpn_name(version)), Some(version));
        }
        for name in [
            &b"dynamo/"[..],
            b"dynamo/x",
            b"dynamo/-1",
            b"dynamo/1 ",
            b"dynamo/99999999999",
            b"h2",
            b"",
        ] {
            assert_eq!(version_of_alpn(name), None, "{name:?}");
        }
    }

    /// Every request of version 1 stays sendable to version 1 peers; only the requests a
    /// later version added need it.
    #[test]
    fn requests_name_the_version_that_added_them() {
        let copy = Request::ReadCopy {
            bucket: "b".into(),
            key: b"k".to_vec(),
        };
        let cases = [
            (Request::Status, 1),
            (Request::Ring, 1),
            (Request::PartitionRoots, 1),
            (copy, 2),
            (
                Request::ExportVersions {
                    bucket: "b".into(),
                    cursor: None,
                    limit: 1,
                },
                3,
            ),
        ];
        for (request, version) in cases {
            assert_eq!(request.since_version(), version, "{request:?}");
            assert!(request.since_version() <= PROTOCOL_VERSION);
        }
    }
}
