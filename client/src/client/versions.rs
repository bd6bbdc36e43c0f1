//! Whole version sets, for backup and restore: a bucket exported page by page with every
//! version of every key, and versions merged back through a key's coordinator.
//!
//! This module must not know the backup file's format or how nodes scan and merge; it only
//! asks.

use dynamo_protocol::{ListCursor, PutReply, Request, RequestOptions, Response, VersionPage};
use dynamo_quorum::Object;

use super::{Client, ClientError, unexpected};

impl Client {
    /// One page of a bucket's export: up to `limit` keys (1 to
    /// [`dynamo_protocol::MAX_LIST_KEYS`]) after `cursor`, each with the join of the versions
    /// its reachable replicas hold, deleted keys included. Pass the page's `next` to continue;
    /// `None` there means the bucket is done. Needs nodes of protocol version 3.
    pub async fn export_page(
        &self,
        bucket: &str,
        cursor: Option<ListCursor>,
        limit: u32,
    ) -> Result<VersionPage, ClientError> {
        let request = Request::ExportVersions {
            bucket: bucket.into(),
            cursor,
            limit,
        };
        match self.request_any(&request).await? {
            Response::Versions(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    /// Merges `object` into the key's versions through the write path (a restore): a join
    /// that never overwrites, so a version the cluster already superseded stays superseded.
    /// Safe to repeat. Needs an admin certificate and nodes of protocol version 3.
    pub async fn merge_versions(
        &self,
        bucket: &str,
        key: &[u8],
        object: Object,
        options: RequestOptions,
    ) -> Result<PutReply, ClientError> {
        let request = Request::MergeVersions {
            bucket: bucket.into(),
            key: key.to_vec(),
            object,
            options,
            forwarded: false,
        };
        match self.routed(bucket, key, &request).await? {
            Response::Put(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }
}
