//! What the simulator reads out of a run for the invariants: every replica's versions, the
//! hints held, the metadata each node has, the final reads; and the sabotages that break a run
//! on purpose.
//!
//! This module must not decide anything: it observes the nodes' stores and cores.

use std::collections::BTreeMap;

use dynamo_core::{NodeCore, StoreError, StoreOp, StoreResult};
use dynamo_protocol::{Request, Response};
use dynamo_quorum::{Object, ReplicaReply, ReplicaRequest, Value};
use dynamo_storage::{Durability, MemoryStore, Store};

use super::check::storage_key_text;
use super::{SIM_BUCKET, Sabotage, Sim, check, invariants};

impl Sim {
    /// Every replica's stored set of every key the workload wrote, by key.
    pub(super) fn replica_view(&self) -> invariants::convergence::ReplicaView {
        let mut view = invariants::convergence::ReplicaView::default();
        let Some(ring) = self
            .nodes
            .iter()
            .find_map(|n| n.core.as_ref()?.ring().cloned())
        else {
            return view;
        };
        for key in self.history.keys() {
            let skey = dynamo_protocol::storage_key(SIM_BUCKET, key);
            let partition = ring.partition_of_key(&skey);
            for replica in ring.preference_list(&skey, 3) {
                let stored = self
                    .nodes
                    .iter()
                    .find(|n| n.name == replica.as_str())
                    .and_then(|n| n.store.as_ref())
                    .and_then(|s| s.get(partition, &skey).ok().flatten());
                view.add(key.clone(), replica.to_string(), stored);
            }
        }
        view
    }

    /// Every key of the bucket with its versions, exported page by page through a running
    /// ring member as `dynamo backup` does (`None`: a page failed).
    pub(super) fn export_bucket(&mut self) -> Option<Vec<(Vec<u8>, dynamo_quorum::Object)>> {
        let target = self.running_members().first().copied()?;
        let mut entries = Vec::new();
        let mut cursor = None;
        loop {
            let request = Request::ExportVersions {
                bucket: SIM_BUCKET.into(),
                cursor,
                limit: 4,
            };
            match self.admin_request(target, request) {
                Some(Response::Versions(page)) => {
                    entries.extend(page.entries);
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => return Some(entries),
                    }
                }
                _ => return None,
            }
        }
    }

    /// Every key of the bucket, listed page by page through a running ring member (`None`: a
    /// page failed).
    pub(super) fn list_keys(&mut self) -> Option<Vec<Vec<u8>>> {
        let target = (0..self.nodes.len()).find(|&i| {
            self.nodes[i]
                .core
                .as_ref()
                .is_some_and(|c| c.ring().is_some_and(|r| r.member(c.id()).is_some()))
        })?;
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let request = Request::ListKeys {
                bucket: SIM_BUCKET.into(),
                cursor,
                limit: 5,
            };
            match self.admin_request(target, request) {
                Some(Response::Keys(page)) => {
                    keys.extend(page.keys);
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None if self.config.sabotage == Sabotage::SkipListedKey => {
                            return Some(keys.split_off(1.min(keys.len())));
                        }
                        None => return Some(keys),
                    }
                }
                _ => return None,
            }
        }
    }

    /// The hints every running node still holds, by owner.
    pub(super) fn hints_held(&self) -> Vec<(String, Vec<(String, usize)>)> {
        self.nodes
            .iter()
            .filter(|n| n.core.is_some())
            .filter_map(|n| {
                let store = n.store.as_ref()?;
                let owners = store.hint_owners().ok()?;
                let counts = owners
                    .into_iter()
                    .map(|owner| {
                        let count = store.pending_hints(&owner).unwrap_or(0);
                        (owner, count)
                    })
                    .collect();
                Some((n.name.clone(), counts))
            })
            .collect()
    }

    /// What every running node holds of the cluster metadata.
    pub(super) fn metadata_view(&mut self) -> invariants::metadata::MetadataView {
        let mut view = invariants::metadata::MetadataView {
            created: self.history.buckets().to_vec(),
            nodes: Vec::new(),
            left: Vec::new(),
        };
        for (attempt, node) in self.leaves.clone() {
            if matches!(self.clients.take_admin_answer(attempt), Some(Response::Ack)) {
                view.left.push(self.nodes[node].name.clone());
            }
        }
        for node in &self.nodes {
            if let Some(core) = &node.core {
                let in_ring = core.ring().is_some_and(|r| r.member(core.id()).is_some());
                view.nodes.push(invariants::metadata::NodeMetadata {
                    name: node.name.clone(),
                    status: core.status().map(|s| format!("{s:?}")),
                    in_ring,
                    ring: core.ring().map(|r| (r.version(), postcard_digest(r))),
                    buckets: core.buckets().cloned().collect(),
                });
            }
        }
        view
    }

    /// The running ring members.
    fn running_members(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i]
                    .core
                    .as_ref()
                    .is_some_and(|c| c.ring().is_some_and(|r| r.member(c.id()).is_some()))
            })
            .collect()
    }

    /// Reads `key` with R = N (or fewer when removals left fewer members) through `target`;
    /// a failure is noted as a problem of the run.
    fn read_every_replica(&mut self, target: usize, key: &[u8]) -> Option<check::ReadResult> {
        let replicas = self.nodes[target]
            .core
            .as_ref()
            .and_then(|c| c.ring().map(|r| r.members().len()))
            .unwrap_or(3)
            .min(3);
        let request = Request::Get {
            bucket: SIM_BUCKET.into(),
            key: key.to_vec(),
            options: dynamo_protocol::RequestOptions {
                r: Some(replicas),
                ..Default::default()
            },
        };
        let shown = String::from_utf8_lossy(key).into_owned();
        let Some(response) = self.admin_request(target, request) else {
            self.history
                .problem(format!("final read of {shown:?} got no answer"));
            return None;
        };
        let read = check::ReadResult::from_response(key, &response);
        if read.is_none() {
            self.history
                .problem(format!("final read of {shown:?} failed: {response:?}"));
        }
        read
    }

    /// Reads every key the workload wrote with R = N through a ring member, after healing.
    pub(super) fn final_reads(&mut self) -> BTreeMap<Vec<u8>, check::ReadResult> {
        let mut finals = BTreeMap::new();
        let members = self.running_members();
        if members.is_empty() {
            self.history
                .problem("no ring member is running after healing".into());
            return finals;
        }
        let keys: Vec<Vec<u8>> = self.history.keys().cloned().collect();
        for (i, key) in keys.into_iter().enumerate() {
            let target = members[i % members.len()];
            if let Some(read) = self.read_every_replica(target, &key) {
                finals.insert(key, read);
            }
        }
        finals
    }

    /// Reads every key the workload wrote with R = N through every running ring member in
    /// turn, after healing: what each coordinator answers, by key and node name.
    pub(super) fn reads_through_every_member(
        &mut self,
    ) -> BTreeMap<Vec<u8>, Vec<(String, check::ReadResult)>> {
        let members = self.running_members();
        let keys: Vec<Vec<u8>> = self.history.keys().cloned().collect();
        let mut reads: BTreeMap<Vec<u8>, Vec<(String, check::ReadResult)>> = BTreeMap::new();
        for key in keys {
            for &target in &members {
                if let Some(read) = self.read_every_replica(target, &key) {
                    let name = self.nodes[target].name.clone();
                    reads.entry(key.clone()).or_default().push((name, read));
                }
            }
        }
        reads
    }
}

impl Sim {
    /// Breaks a healed cluster on purpose (see [`Sabotage`]).
    pub(super) fn sabotage_after_heal(&mut self) {
        match self.config.sabotage {
            Sabotage::DropAcknowledgedWrite => {
                let victim = self
                    .history
                    .writes()
                    .iter()
                    .find(|w| w.acknowledged && w.value.is_some())
                    .map(|w| w.key.clone());
                if let Some(key) = victim {
                    self.on_every_store(&key, |store, partition, skey| {
                        if let Ok(Some(current)) = store.get(partition, skey) {
                            let _ =
                                store.remove_if_equal(partition, skey, &current, Durability::Sync);
                        }
                    });
                }
            }
            Sabotage::DivergeReplica => {
                let key = self.history.keys().next().cloned();
                let stray = dynamo_vclock::DvvSet::new(
                    &dynamo_vclock::Actor::new("saboteur#1"),
                    Value::Data(b"stray".to_vec()),
                    self.now,
                );
                if let (Some(key), Some(node)) = (key, self.nodes.first()) {
                    let skey = dynamo_protocol::storage_key(SIM_BUCKET, &key);
                    if let (Some(store), Some(ring)) =
                        (&node.store, node.core.as_ref().and_then(NodeCore::ring))
                    {
                        let partition = ring.partition_of_key(&skey);
                        let _ = store.apply(partition, &skey, &stray, Durability::Sync);
                    }
                }
            }
            Sabotage::Resurrect => {
                // A value an acknowledged delete had read, written back everywhere as it was.
                let victim = self.history.writes().iter().find_map(|delete| {
                    if !delete.acknowledged || delete.value.is_some() {
                        return None;
                    }
                    self.history.writes().iter().find_map(|w| {
                        (w.key == delete.key
                            && w.value.is_some()
                            && w.fully_seen_by(&delete.context))
                        .then(|| (w.key.clone(), w.stored.clone()))
                    })
                });
                if let Some((key, Some(old))) = victim {
                    self.on_every_store(&key, |store, partition, skey| {
                        if let Ok(Some(current)) = store.get(partition, skey) {
                            let _ =
                                store.remove_if_equal(partition, skey, &current, Durability::Sync);
                        }
                        let _ = store.apply(partition, skey, &old, Durability::Sync);
                    });
                }
            }
            _ => {}
        }
    }

    /// Runs `action` on every node's store for `key` of the workload's bucket.
    pub(super) fn on_every_store(
        &self,
        key: &[u8],
        action: impl Fn(&MemoryStore<Value>, u32, &[u8]),
    ) {
        let skey = dynamo_protocol::storage_key(SIM_BUCKET, key);
        let Some(ring) = self
            .nodes
            .iter()
            .find_map(|n| n.core.as_ref()?.ring().cloned())
        else {
            return;
        };
        let partition = ring.partition_of_key(&skey);
        for node in &self.nodes {
            if let Some(store) = &node.store {
                action(store, partition, &skey);
            }
        }
    }

    /// Alters an answer to a client's read on purpose (see [`Sabotage`]).
    pub(super) fn sabotage_read(&self, response: Response) -> Response {
        match (self.config.sabotage, response) {
            (Sabotage::HideSibling, Response::Get(mut reply)) if !reply.values.is_empty() => {
                reply.values.remove(0);
                Response::Get(reply)
            }
            (Sabotage::StaleSibling, Response::Get(mut reply)) if !reply.values.is_empty() => {
                let first = reply.values[0].clone();
                reply.values.push(first);
                Response::Get(reply)
            }
            // Every copy is altered alike, so a client-side read shows what a coordinated one
            // would.
            (_, Response::Copy(mut copy)) => {
                copy.answer = self.sabotage_read(copy.answer);
                Response::Copy(copy)
            }
            (_, response) => response,
        }
    }
}

/// A short description of a request for the trace.
pub(super) fn describe(request: &Request) -> String {
    match request {
        Request::Get { key, .. } => format!("get {}", String::from_utf8_lossy(key)),
        Request::ReadCopy { key, .. } => format!("copy of {}", String::from_utf8_lossy(key)),
        Request::Put { key, value, .. } => format!(
            "put {} {}",
            String::from_utf8_lossy(key),
            value
                .as_deref()
                .map_or("<delete>".into(), |v| String::from_utf8_lossy(v)
                    .into_owned())
        ),
        Request::Replica { partition, request } => {
            format!("replica p{partition} {}", describe_replica(request))
        }
        Request::Gossip { .. } => "gossip".into(),
        Request::DeliverHint { partition, key, .. } => {
            format!("hint p{partition} {}", storage_key_text(key))
        }
        Request::Handoff { partition, entries } => {
            format!("handoff p{partition} {}", keys_text(entries))
        }
        Request::Diff { partition, .. } => format!("diff p{partition}"),
        Request::Fetch { partition, keys } => {
            let keys: Vec<String> = keys.iter().map(|k| storage_key_text(k)).collect();
            format!("fetch p{partition} {}", keys.join(" "))
        }
        Request::Buckets(entries) => format!("buckets ({} entries)", entries.len()),
        other => format!("{other:?}").chars().take(80).collect(),
    }
}

/// A replica request with its key as text.
fn describe_replica(request: &ReplicaRequest) -> String {
    match request {
        ReplicaRequest::Read { key } => format!("read {}", storage_key_text(key)),
        ReplicaRequest::ReadSynced { key } => format!("read-synced {}", storage_key_text(key)),
        ReplicaRequest::Holdings { key } => format!("holdings {}", storage_key_text(key)),
        ReplicaRequest::Write { key, object, hint } => format!(
            "write {} {}{}",
            storage_key_text(key),
            versions_text(object),
            hint.as_ref()
                .map_or(String::new(), |owner| format!(" (hint for {owner})"))
        ),
        ReplicaRequest::Reap { key, .. } => format!("reap {}", storage_key_text(key)),
    }
}

/// An answer, short: its kind and what a reader of a failure needs.
pub(super) fn describe_response(response: &Response) -> String {
    match response {
        Response::Get(reply) => format!(
            "found {}",
            reply
                .values
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
                .join(" | ")
        ),
        Response::NotFound { .. } => "not found".into(),
        Response::Copy(copy) => format!(
            "copy {:016x}: {}",
            copy.digest,
            describe_response(&copy.answer)
        ),
        Response::Put(reply) => format!("written ({} acks)", reply.acknowledged),
        Response::Replica(reply) => match reply {
            ReplicaReply::Found(object) => format!("replica found {}", versions_text(object)),
            other => format!("replica {other:?}"),
        },
        Response::Error(error) => format!("error {:?}: {}", error.kind, error.message),
        Response::Entries(entries) => format!("entries {}", keys_text(entries)),
        other => format!("{other:?}").chars().take(60).collect(),
    }
}

/// A store operation with its keys as text.
pub(super) fn describe_store_op(op: &StoreOp) -> String {
    match op {
        StoreOp::Get { partition, key }
        | StoreOp::GetSynced { partition, key }
        | StoreOp::GetWithHints { partition, key } => {
            format!("{} p{partition} {}", op.kind(), storage_key_text(key))
        }
        StoreOp::Apply {
            partition,
            key,
            object,
            ..
        } => format!(
            "apply p{partition} {} {}",
            storage_key_text(key),
            versions_text(object)
        ),
        StoreOp::Update {
            partition,
            key,
            value,
            ..
        } => format!(
            "update p{partition} {} = {}",
            storage_key_text(key),
            value_text(value)
        ),
        StoreOp::PutHint {
            owner,
            partition,
            key,
            object,
            ..
        } => format!(
            "hint for {owner} p{partition} {} {}",
            storage_key_text(key),
            versions_text(object)
        ),
        StoreOp::RemoveIfEqual { partition, key, .. } => {
            format!("reap p{partition} {}", storage_key_text(key))
        }
        StoreOp::ApplyBatch {
            partition, entries, ..
        } => format!("apply batch p{partition} {}", keys_text(entries)),
        StoreOp::DropHandedOff { partition, sent } => {
            format!("drop handed off p{partition} {}", keys_text(sent))
        }
        other => other.kind().to_owned(),
    }
}

/// A store result, short.
pub(super) fn describe_store_result(result: &Result<StoreResult, StoreError>) -> String {
    match result {
        Ok(StoreResult::Found(Some(object)) | StoreResult::Stored(object)) => versions_text(object),
        Ok(StoreResult::Found(None)) => "absent".into(),
        Ok(other) => other.kind().into(),
        Err(error) => format!("error: {error}"),
    }
}

/// Keys of entries, as text.
fn keys_text(entries: &[(Vec<u8>, Object)]) -> String {
    let keys: Vec<String> = entries
        .iter()
        .map(|(k, object)| format!("{}={}", storage_key_text(k), versions_text(object)))
        .collect();
    format!("{} keys: {}", keys.len(), keys.join(" "))
}

/// A version set as `[actor:counter=value, ...]`.
fn versions_text(object: &Object) -> String {
    let versions: Vec<String> = object
        .iter()
        .map(|(actor, counter, value)| format!("{actor}:{counter}={}", value_text(value)))
        .collect();
    format!("[{}]", versions.join(", "))
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Data(bytes) | Value::Written { data: bytes, .. } => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        Value::Tombstone | Value::Deleted { .. } => "<deleted>".into(),
    }
}

pub(super) fn postcard_digest(ring: &dynamo_ring::Ring) -> u128 {
    postcard::to_allocvec(ring).map_or(0, |bytes| dynamo_ring::key_position(&bytes))
}
