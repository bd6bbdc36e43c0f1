//! A workload from a client host and a checker of its history, for fault runs on real hosts
//! ([`crate::host_cluster`]): what a user of the cluster was told, against what the cluster
//! holds once the faults are healed.
//!
//! The workload mixes unique blind writes, shopping-cart adds (read-modify-writes with the
//! read's context, in a `cart` bucket) and deletes of keys it wrote, each labelled with the
//! fault phase it ran in. The checker waits until no node holds a hint and every replica of
//! every partition has the same Merkle root (paper 4.7), then reads everything back with
//! R = N: every acknowledged write must be there, every acknowledged cart add in its cart, and
//! every acknowledged delete still deleted.
//!
//! This module must not know how nodes work inside; it is a client and a judge.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dynamo_client::Client;
use dynamo_client::client::GetOutcome;
use dynamo_client::sets::SetOp;
use dynamo_client::tls::TlsConfig;
use dynamo_protocol::{Request, RequestOptions, Response};

use crate::host_cluster::{HostCluster, PORT};

/// The bucket of blind writes and deletes.
pub const BUCKET: &str = "default";
/// The bucket of carts (resolver `cart`).
pub const CARTS: &str = "carts";
/// Carts the workload adds to.
const CART_COUNT: u64 = 16;

/// The label of the phase running now, set by whoever injects faults.
#[derive(Debug, Default)]
pub struct Phase(Mutex<String>);

impl Phase {
    /// A phase called `name`.
    pub fn new(name: &str) -> Arc<Phase> {
        Arc::new(Phase(Mutex::new(name.to_owned())))
    }

    /// Starts phase `name`.
    pub fn set(&self, name: &str) {
        name.clone_into(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The phase now.
    pub fn get(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the workload was told.
#[derive(Debug, Default)]
pub struct History {
    /// Acknowledged blind writes: key and value.
    pub writes: Vec<(String, String)>,
    /// Acknowledged cart adds: cart and item.
    pub cart_adds: Vec<(String, String)>,
    /// Acknowledged deletes.
    pub deletes: Vec<String>,
    /// Failed operations by phase, with the first error of each phase.
    pub errors: BTreeMap<String, (usize, String)>,
    /// Operations acknowledged, by phase.
    pub acknowledged: BTreeMap<String, usize>,
    /// How the workload client's reads were answered.
    pub read_paths: dynamo_client::ReadPaths,
}

impl History {
    fn record<T, E: std::fmt::Display>(&mut self, phase: &str, outcome: &Result<T, E>) -> bool {
        match outcome {
            Ok(_) => {
                *self.acknowledged.entry(phase.to_owned()).or_default() += 1;
                true
            }
            Err(error) => {
                let entry = self
                    .errors
                    .entry(phase.to_owned())
                    .or_insert_with(|| (0, error.to_string()));
                entry.0 += 1;
                false
            }
        }
    }

    fn merge(&mut self, other: History) {
        self.writes.extend(other.writes);
        self.cart_adds.extend(other.cart_adds);
        self.deletes.extend(other.deletes);
        for (phase, (count, first)) in other.errors {
            let entry = self.errors.entry(phase).or_insert((0, first));
            entry.0 += count;
        }
        for (phase, count) in other.acknowledged {
            *self.acknowledged.entry(phase).or_default() += count;
        }
    }

    /// Failed operations in `phase`.
    pub fn errors_in(&self, phase: &str) -> usize {
        self.errors.get(phase).map_or(0, |(count, _)| *count)
    }
}

/// The nodes' IP addresses (a test thread resolves through this machine's hosts file, which
/// does not know the hosts' names).
pub fn node_ips(cluster: &HostCluster) -> Vec<SocketAddr> {
    (0..cluster.node_count())
        .map(|i| (cluster.network.host(i).ip, PORT).into())
        .collect()
}

/// A current-thread runtime for a test thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Creates the cart bucket (N=3, R=2, W=2) with the CLI as the cluster's admin.
pub fn create_buckets(cluster: &HostCluster) {
    cluster.cli_until_ok(
        &["bucket", "create", CARTS, "--resolver", "cart"],
        Duration::from_secs(30),
    );
}

/// The phase that ends the workload before its deadline (for a fault whose length is not
/// known in advance).
pub const STOP: &str = "stop";

/// Runs `workers` clients on the client host until `until` (or the phase [`STOP`]), each doing blind writes, cart adds
/// and deletes with requests bounded by `timeout`, labelled by `phase`.
pub fn run_workload(
    cluster: &HostCluster,
    tls: &TlsConfig,
    phase: &Arc<Phase>,
    workers: usize,
    until: Instant,
    timeout: Duration,
) -> History {
    let seeds = node_ips(cluster);
    cluster.network.on_host(cluster.client_host(), || {
        runtime().block_on(async {
            let client = Arc::new(Client::new(tls, seeds.clone(), timeout).expect("client"));
            let mut tasks = tokio::task::JoinSet::new();
            for worker in 0..workers {
                tasks.spawn(worker_loop(
                    client.clone(),
                    phase.clone(),
                    worker,
                    until,
                    timeout,
                ));
            }
            let mut history = History::default();
            while let Some(joined) = tasks.join_next().await {
                history.merge(joined.expect("worker"));
            }
            history.read_paths = client.read_paths();
            client.close().await;
            history
        })
    })
}

async fn worker_loop(
    client: Arc<Client>,
    phase: Arc<Phase>,
    worker: usize,
    until: Instant,
    timeout: Duration,
) -> History {
    let options = RequestOptions {
        timeout_ms: Some(timeout.as_millis() as u64),
        ..RequestOptions::default()
    };
    let mut history = History::default();
    let mut sequence: u64 = 0;
    while Instant::now() < until && phase.get() != STOP {
        sequence += 1;
        let label = phase.get();
        match sequence % 8 {
            // Cart read-modify-writes with the read's context.
            0 | 1 => {
                let cart = format!("cart-{}", (sequence / 8 + worker as u64) % CART_COUNT);
                let item = format!("i{worker}-{sequence}");
                let op = Some(SetOp::Add(item.clone().into_bytes()));
                let outcome = client.update_set(CARTS, cart.as_bytes(), op, options).await;
                if history.record(&label, &outcome) {
                    history.cart_adds.push((cart, item));
                }
            }
            // A key written, then deleted with the write's context.
            2 => {
                let key = format!("d{worker}-{sequence}");
                let written = client
                    .put(BUCKET, key.as_bytes(), b"doomed".to_vec(), None, options)
                    .await;
                if !history.record(&label, &written) {
                    continue;
                }
                let context = written.ok().map(|reply| reply.context);
                let deleted = client
                    .delete(BUCKET, key.as_bytes(), context, options)
                    .await;
                if history.record(&label, &deleted) {
                    history.deletes.push(key);
                }
            }
            // Unique blind writes.
            _ => {
                let key = format!("w{worker}-{sequence}");
                let value = format!("v{worker}-{sequence}");
                let outcome = client
                    .put(
                        BUCKET,
                        key.as_bytes(),
                        value.clone().into_bytes(),
                        None,
                        options,
                    )
                    .await;
                if history.record(&label, &outcome) {
                    history.writes.push((key, value));
                }
            }
        }
    }
    history
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Acknowledged writes, cart adds and deletes checked.
    pub checked: usize,
    /// Acknowledged writes not readable with R = N (key: what was read instead).
    pub lost_writes: Vec<String>,
    /// Acknowledged cart adds missing from their cart.
    pub lost_cart_adds: Vec<String>,
    /// Acknowledged deletes whose key reads as present again.
    pub undone_deletes: Vec<String>,
    /// Seconds from the heal until no node held a hint (`None`: not within the bound).
    pub seconds_to_no_hints: Option<f64>,
    /// Seconds from the heal until every replica of every partition had the same Merkle root.
    pub seconds_to_equal_roots: Option<f64>,
    /// Partitions whose replicas still disagreed at the bound, with their roots.
    pub unequal_partitions: Vec<String>,
}

impl Verdict {
    /// Whether nothing acknowledged was lost or undone and the replicas converged.
    pub fn passed(&self) -> bool {
        self.lost_writes.is_empty()
            && self.lost_cart_adds.is_empty()
            && self.undone_deletes.is_empty()
            && self.seconds_to_no_hints.is_some()
            && self.seconds_to_equal_roots.is_some()
    }
}

/// Waits (up to `settle`) for no hint and equal roots, measured from `healed`, then reads the
/// whole history back with R = N from the client host.
pub fn check(
    cluster: &HostCluster,
    tls: &TlsConfig,
    history: &History,
    healed: Instant,
    settle: Duration,
) -> Verdict {
    let seeds = node_ips(cluster);
    cluster.network.on_host(cluster.client_host(), || {
        runtime().block_on(async {
            let client =
                Arc::new(Client::new(tls, seeds.clone(), Duration::from_secs(10)).expect("client"));
            let mut verdict = Verdict::default();
            let deadline = healed + settle;
            while Instant::now() < deadline {
                if verdict.seconds_to_no_hints.is_none() && hints_held(&client, &seeds).await == 0 {
                    verdict.seconds_to_no_hints = Some(healed.elapsed().as_secs_f64());
                }
                if verdict.seconds_to_equal_roots.is_none() {
                    let unequal = unequal_partitions(&client, &seeds).await;
                    if unequal.is_empty() {
                        verdict.seconds_to_equal_roots = Some(healed.elapsed().as_secs_f64());
                    } else {
                        verdict.unequal_partitions = unequal;
                    }
                }
                if verdict.seconds_to_no_hints.is_some() && verdict.seconds_to_equal_roots.is_some()
                {
                    verdict.unequal_partitions.clear();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            read_back(&client, history, &mut verdict).await;
            client.close().await;
            verdict
        })
    })
}

/// Hints every node holds, as each reports them (a node that does not answer counts as one).
async fn hints_held(client: &Client, nodes: &[SocketAddr]) -> usize {
    let mut total = 0;
    for &node in nodes {
        match client.request_to(node, &Request::Status).await {
            Ok(Response::Status(status)) => {
                total += status
                    .members
                    .iter()
                    .map(|m| m.pending_hints)
                    .sum::<usize>();
            }
            _ => total += 1,
        }
    }
    total
}

/// Partitions whose replicas (under the ring of the node asked) report different Merkle
/// roots, each with what every replica reported.
async fn unequal_partitions(client: &Client, nodes: &[SocketAddr]) -> Vec<String> {
    let Ok(Some(ring)) = client.ring().await else {
        return vec!["no ring".into()];
    };
    let Ok(status) = client.status().await else {
        return vec!["no status".into()];
    };
    let mut roots: HashMap<String, HashMap<u32, u64>> = HashMap::new();
    for member in &status.members {
        let Some(address) = nodes
            .iter()
            .find(|a| a.to_string() == member.address)
            .copied()
        else {
            return vec![format!(
                "{} at an unknown address {}",
                member.id, member.address
            )];
        };
        match client.request_to(address, &Request::PartitionRoots).await {
            Ok(Response::Roots(list)) => {
                let by_partition = list.iter().map(|r| (r.partition, r.root)).collect();
                roots.insert(member.id.clone(), by_partition);
            }
            other => return vec![format!("{}: {other:?}", member.id)],
        }
    }
    let mut unequal = Vec::new();
    for partition in 0..ring.partition_count() {
        let replicas = ring.replicas_of_partition(partition, ring.target_n());
        let seen: Vec<(String, Option<u64>)> = replicas
            .iter()
            .map(|node| {
                let root = roots
                    .get(node.as_str())
                    .and_then(|r| r.get(&partition).copied());
                (node.to_string(), root)
            })
            .collect();
        if seen.windows(2).any(|pair| pair[0].1 != pair[1].1) || seen.iter().any(|s| s.1.is_none())
        {
            unequal.push(format!("partition {partition}: {seen:?}"));
        }
    }
    unequal
}

/// Reads every acknowledged write, cart and delete with R = N, on several tasks at once.
async fn read_back(client: &Arc<Client>, history: &History, verdict: &mut Verdict) {
    const READERS: usize = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for reader in 0..READERS {
        let client = client.clone();
        let writes: Vec<(String, String)> = history
            .writes
            .iter()
            .skip(reader)
            .step_by(READERS)
            .cloned()
            .collect();
        let deletes: Vec<String> = history
            .deletes
            .iter()
            .skip(reader)
            .step_by(READERS)
            .cloned()
            .collect();
        tasks.spawn(async move {
            let mut found = Verdict::default();
            for (key, value) in writes {
                found.checked += 1;
                match read_all(&client, &key).await {
                    Ok(GetOutcome::Found(reply))
                        if reply.values.iter().any(|v| v == value.as_bytes()) => {}
                    other => found.lost_writes.push(format!("{key}: {other:?}")),
                }
            }
            for key in deletes {
                found.checked += 1;
                match read_all(&client, &key).await {
                    Ok(GetOutcome::NotFound { .. }) => {}
                    Ok(GetOutcome::Found(reply)) if reply.values.is_empty() => {}
                    other => found.undone_deletes.push(format!("{key}: {other:?}")),
                }
            }
            found
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let found = joined.expect("reader");
        verdict.checked += found.checked;
        verdict.lost_writes.extend(found.lost_writes);
        verdict.undone_deletes.extend(found.undone_deletes);
    }
    let mut carts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (cart, item) in &history.cart_adds {
        carts.entry(cart).or_default().push(item);
    }
    for (cart, items) in carts {
        verdict.checked += items.len();
        let view = client
            .update_set(CARTS, cart.as_bytes(), None, ALL_REPLICAS)
            .await;
        match view {
            Ok(view) => {
                for item in items {
                    if !view.items.iter().any(|i| i == item.as_bytes()) {
                        verdict.lost_cart_adds.push(format!("{cart}: {item}"));
                    }
                }
            }
            Err(error) => verdict
                .lost_cart_adds
                .push(format!("{cart}: unreadable: {error}")),
        }
    }
}

/// Reads with R = N = 3.
const ALL_REPLICAS: RequestOptions = RequestOptions {
    r: Some(3),
    w: None,
    pr: None,
    pw: None,
    timeout_ms: None,
};

/// Reads `key` with R = N, a few times: a read of every replica fails while one is briefly
/// slow.
async fn read_all(client: &Client, key: &str) -> Result<GetOutcome, String> {
    let mut last = String::new();
    for _ in 0..5 {
        match client.get(BUCKET, key.as_bytes(), ALL_REPLICAS).await {
            Ok(outcome) => return Ok(outcome),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// One row of a fault table: the fault, and what the workload and the checker saw.
pub fn report_row(fault: &str, history: &History, verdict: &Verdict, during: &str) -> String {
    let acknowledged: usize = history.acknowledged.values().sum();
    let seconds = |s: Option<f64>| s.map_or_else(|| "never".to_owned(), |s| format!("{s:.1}"));
    format!(
        "| {fault} | {acknowledged} | {} | {} | {} | {} | {} |",
        verdict.lost_writes.len() + verdict.lost_cart_adds.len(),
        verdict.undone_deletes.len(),
        history.errors_in(during),
        seconds(verdict.seconds_to_equal_roots),
        seconds(verdict.seconds_to_no_hints),
    )
}

/// The header of [`report_row`]'s table.
pub const REPORT_HEADER: &str = "| fault | acknowledged | lost | deletes undone | errors during the fault | s to equal roots | s to no hints |\n|---|---|---|---|---|---|---|";
