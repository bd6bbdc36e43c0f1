//! `dynamo dev`: a local cluster of separate node processes on loopback, with its own CA and
//! data directories, and the shopping-cart demo the README runs.
//!
//! This module must not know how nodes work inside: it starts `dynamo node start` processes and
//! talks to them through the client library like any user.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use dynamo_client::Client;
use dynamo_client::ca::ClusterCa;
use dynamo_client::client::GetOutcome;
use dynamo_client::tls::{Identity, Role};
use dynamo_protocol::{BucketProps, Request, RequestOptions, Response};

/// Where and how big the local cluster is.
#[derive(clap::Args, Clone)]
pub(crate) struct ClusterArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub(crate) nodes: usize,
    /// Directory for certificates, data and logs (created if missing).
    #[arg(long, default_value = "dynamo-dev")]
    pub(crate) dir: PathBuf,
    /// Port of the first node; the others follow.
    #[arg(long, default_value_t = 7100)]
    pub(crate) base_port: u16,
    /// Partitions of the ring.
    #[arg(long, default_value_t = 64)]
    pub(crate) partitions: u32,
    /// Durability of the nodes' replica writes: sync or buffered (the node default, sync,
    /// without it).
    #[arg(long, value_parser = ["sync", "buffered"])]
    pub(crate) durability: Option<String>,
}

impl ClusterArgs {
    /// A cluster of `nodes` in `dir` from `base_port`.
    pub(crate) fn local(nodes: usize, dir: PathBuf, base_port: u16, durability: &str) -> Self {
        Self {
            nodes,
            dir,
            base_port,
            partitions: 64,
            durability: Some(durability.to_string()),
        }
    }
}

/// Worker threads for one of `processes` busy processes sharing this machine: its share of
/// the cores, at least one.
pub(crate) fn core_share(processes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cores / processes.max(1)).max(1)
}

/// A dev node's HTTP API listens on its QUIC port plus this.
pub(crate) const HTTP_PORT_OFFSET: u16 = 100;

/// A running local cluster; dropping it stops the processes.
pub(crate) struct LocalCluster {
    pub(crate) children: Vec<(String, Child)>,
    pub(crate) addresses: Vec<SocketAddr>,
    /// Each node's HTTP API (TCP), at the QUIC port plus [`HTTP_PORT_OFFSET`].
    pub(crate) http_addresses: Vec<SocketAddr>,
    /// The client's certificate directory: the CA certificate and the admin identity only.
    pub(crate) client_certs: PathBuf,
    /// How each node was started, to start it again ([`LocalCluster::restart`]).
    launches: Vec<NodeLaunch>,
    /// Held while the cluster runs: a second `dev cluster` in the same directory is refused.
    _lock: std::fs::File,
}

/// A node's command line, its log and its data directory.
struct NodeLaunch {
    exe: PathBuf,
    args: Vec<std::ffi::OsString>,
    log: PathBuf,
    data_dir: PathBuf,
}

impl NodeLaunch {
    /// Starts the node, its output appended to its log.
    fn spawn(&self, name: &str) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut command = std::process::Command::new(&self.exe);
        command.args(&self.args).stdout(Stdio::null()).stderr(log);
        for key in [
            "DYNAMO_SEEDS",
            "DYNAMO_NAME",
            "DYNAMO_LISTEN",
            "DYNAMO_HTTP_LISTEN",
            "DYNAMO_WORKER_THREADS",
            "DYNAMO_CONFIG",
            "DYNAMO_DATA_DIR",
            "DYNAMO_DURABILITY",
        ] {
            command.env_remove(key);
        }
        command.spawn().with_context(|| format!("starting {name}"))
    }
}

/// Sends SIGTERM to each of `children` still running, so they shut down gracefully, and waits
/// up to 10 s for them all; kills those still running then. A child that has exited already is
/// left alone: its process id may belong to another process by now.
fn stop_gracefully(children: &mut [(String, Child)]) {
    for (_, child) in children.iter_mut() {
        if !matches!(child.try_wait(), Ok(None)) {
            continue;
        }
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (name, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    eprintln!("{name} did not stop in time; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
}

impl LocalCluster {
    /// Stops node `index` gracefully (see [`stop_gracefully`]).
    pub(crate) fn stop(&mut self, index: usize) {
        stop_gracefully(std::slice::from_mut(&mut self.children[index]));
    }

    /// Starts node `index` again with its command line, after [`LocalCluster::stop`]; refuses
    /// while it still runs (a second process would be left untracked).
    pub(crate) fn restart(&mut self, index: usize) -> Result<()> {
        let (name, child) = &mut self.children[index];
        if matches!(child.try_wait(), Ok(None)) {
            bail!("{name} is still running; stop it before starting it again");
        }
        *child = self.launches[index].spawn(name)?;
        Ok(())
    }

    /// Node `index`'s data directory.
    pub(crate) fn data_dir(&self, index: usize) -> &Path {
        &self.launches[index].data_dir
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        stop_gracefully(&mut self.children);
    }
}

/// `dynamo dev cluster`: starts a local cluster, says how to reach it, and keeps it running
/// until Ctrl-C.
pub(crate) async fn cluster(args: ClusterArgs, log_format: &str) -> Result<ExitCode> {
    let cluster = start(&args, log_format).await?;
    let nodes: Vec<String> = cluster.addresses.iter().map(ToString::to_string).collect();
    outln!("local cluster of {} nodes is up:", args.nodes);
    for (((name, _), address), http) in cluster
        .children
        .iter()
        .zip(&cluster.addresses)
        .zip(&cluster.http_addresses)
    {
        outln!(
            "  {name} on {address}, HTTP API https://{}:{}/ (log: {})",
            dynamo_client::tls::NODE_SERVER_NAME,
            http.port(),
            args.dir.join(format!("{name}.log")).display()
        );
    }
    outln!();
    outln!("talk to it from another shell:");
    outln!(
        "  export DYNAMO_NODES={} DYNAMO_CERTS_DIR={}",
        nodes.join(","),
        cluster.client_certs.display()
    );
    outln!("  dynamo put default greeting hello && dynamo get default greeting && dynamo status");
    outln!();
    let http = cluster.http_addresses[0];
    let certs = cluster.client_certs.display();
    outln!("or over HTTPS with curl (the nodes' certificates name node.dynamo):");
    outln!(
        "  curl --cacert {certs}/ca.pem --cert {certs}/admin.admin.pem --key {certs}/admin.admin.key --resolve {name}:{port}:{ip} https://{name}:{port}/cluster/status",
        name = dynamo_client::tls::NODE_SERVER_NAME,
        port = http.port(),
        ip = http.ip(),
    );
    outln!("the status page, in a browser, through a local proxy with your certificate:");
    outln!("  dynamo proxy --to {http} --certs-dir {certs}   # then open http://127.0.0.1:8080/");
    outln!();
    outln!("Ctrl-C stops the cluster.");
    super::wait_for_signal().await;
    outln!("stopping...");
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}

/// `dynamo dev demo`: starts a local cluster, runs the shopping-cart story against it, and
/// stops it.
pub(crate) async fn demo_command(args: ClusterArgs, log_format: &str) -> Result<ExitCode> {
    let cluster = start(&args, log_format).await?;
    let outcome = demo(&cluster).await;
    drop(cluster);
    outcome?;
    Ok(ExitCode::SUCCESS)
}

/// Where the dev cluster keeps its CA (with the private key), each node's certificate
/// directory, and the client's.
struct DevCerts {
    ca: PathBuf,
    certs: PathBuf,
}

impl DevCerts {
    fn new(dir: &Path) -> DevCerts {
        DevCerts {
            ca: dir.join("ca"),
            certs: dir.join("certs"),
        }
    }

    /// The directory handed to node `name`: the CA certificate and its own identity.
    fn node(&self, name: &str) -> PathBuf {
        self.certs.join(name)
    }

    /// The directory handed to clients: the CA certificate and the admin identity.
    fn client(&self) -> PathBuf {
        self.certs.join("client")
    }

    /// Creates the CA and every identity that is missing.
    fn create(&self, nodes: &[String]) -> Result<()> {
        let ca = if self.ca.join(dynamo_client::tls::CA_KEY_FILE).exists() {
            ClusterCa::load(&self.ca).context("loading the dev CA")?
        } else {
            let ca = ClusterCa::generate("dynamo-dev").context("generating the dev CA")?;
            ca.save(&self.ca).context("writing the dev CA")?;
            ca
        };
        let identities = nodes
            .iter()
            .map(|name| (Role::Node, name.as_str(), self.node(name)))
            .chain(std::iter::once((Role::Admin, "admin", self.client())));
        for (role, name, dir) in identities {
            if Identity::load(&dir, Some(role), Some(name)).is_err() {
                ca.issue(role, name)?
                    .save(&dir, true)
                    .with_context(|| format!("writing {name}'s identity"))?;
            }
            ca.install_cert(&dir)
                .with_context(|| format!("writing the CA certificate to {}", dir.display()))?;
        }
        Ok(())
    }
}

/// Creates the CA and certificates (once), starts the node processes and waits until every
/// node is in the ring and up.
pub(crate) async fn start(args: &ClusterArgs, log_format: &str) -> Result<LocalCluster> {
    start_in(args, log_format, false).await
}

/// [`start`] on an empty directory: whatever `args.dir` held (an earlier run's cluster) is
/// removed first, once its lock is taken, so a cluster still running there is never wiped.
pub(crate) async fn start_fresh(args: &ClusterArgs, log_format: &str) -> Result<LocalCluster> {
    start_in(args, log_format, true).await
}

/// [`start`], first clearing the directory (all but the lock file) when `clear`.
async fn start_in(args: &ClusterArgs, log_format: &str, clear: bool) -> Result<LocalCluster> {
    if args.nodes == 0 {
        bail!("a cluster needs at least one node");
    }
    let Some(last_port) = u16::try_from(args.nodes - 1)
        .ok()
        .and_then(|extra| args.base_port.checked_add(extra))
        .filter(|last| last.checked_add(HTTP_PORT_OFFSET).is_some())
    else {
        bail!(
            "{} nodes from port {} (and their HTTP APIs {HTTP_PORT_OFFSET} ports above) would go past port 65535; choose a lower --base-port",
            args.nodes,
            args.base_port
        );
    };
    if args.base_port == 0 {
        bail!("--base-port must be a port number from 1 to {last_port}");
    }
    // Before anything in the directory is touched: one cluster per directory.
    let lock = lock_dir(&args.dir)?;
    if clear {
        clear_except_lock(&args.dir)?;
    }
    let names: Vec<String> = (1..=args.nodes).map(|i| format!("node-{i}")).collect();
    let certs = DevCerts::new(&args.dir);
    certs.create(&names)?;
    let exe = std::env::current_exe().context("finding the dynamo executable")?;
    // The nodes share this machine: each gets its share of the cores for its runtime, so three
    // nodes on two cores do not run six worker threads that wake one another.
    let worker_threads = core_share(args.nodes);
    let addresses: Vec<SocketAddr> = (0..args.nodes)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], args.base_port + i as u16)))
        .collect();
    let http_addresses: Vec<SocketAddr> = addresses
        .iter()
        .map(|a| SocketAddr::new(a.ip(), a.port() + HTTP_PORT_OFFSET))
        .collect();
    let mut cluster = LocalCluster {
        children: Vec::new(),
        addresses: addresses.clone(),
        http_addresses: http_addresses.clone(),
        client_certs: certs.client(),
        launches: Vec::new(),
        _lock: lock,
    };
    for (i, name) in names.iter().enumerate() {
        let log = args.dir.join(format!("{name}.log"));
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let data_dir = args.dir.join(name);
        let mut node_args: Vec<std::ffi::OsString> = vec![
            "--log-format".into(),
            log_format.into(),
            "--worker-threads".into(),
            worker_threads.to_string().into(),
            "node".into(),
            "start".into(),
            "--name".into(),
            name.into(),
            "--listen".into(),
            addresses[i].to_string().into(),
            "--http-listen".into(),
            http_addresses[i].to_string().into(),
            "--data-dir".into(),
            data_dir.clone().into(),
            "--certs-dir".into(),
            certs.node(name).into(),
            "--partitions".into(),
            args.partitions.to_string().into(),
        ];
        if i > 0 {
            node_args.extend(["--seed".into(), addresses[0].to_string().into()]);
        }
        if let Some(durability) = &args.durability {
            node_args.extend(["--durability".into(), durability.into()]);
        }
        let launch = NodeLaunch {
            exe: exe.clone(),
            args: node_args,
            log,
            data_dir,
        };
        let child = launch.spawn(name)?;
        cluster.children.push((name.clone(), child));
        cluster.launches.push(launch);
        if i == 0 {
            // The founder first, so the others join its ring.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    wait_until_ready(&mut cluster, args.nodes, &args.dir).await?;
    Ok(cluster)
}

/// The lock file a running local cluster holds in its directory.
const LOCK_FILE: &str = "dev-cluster.lock";

/// Removes everything in `dir` but its lock file (which the caller holds).
fn clear_except_lock(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.file_name() == Some(std::ffi::OsStr::new(LOCK_FILE)) {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("clearing {}", path.display()))?;
    }
    Ok(())
}

/// Creates `dir` and takes its lock file; refuses when another `dev cluster` holds it. The lock
/// goes with the process, however it ends.
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    dynamo_client::files::create_private_dir(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    match dynamo_client::files::lock_file(&path) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => bail!(
            "a dev cluster is already running in {}; stop it (Ctrl-C in its shell) or pass another --dir",
            dir.display()
        ),
        Err(error) => Err(error).with_context(|| format!("locking {}", path.display())),
    }
}

pub(crate) fn client(cluster: &LocalCluster) -> Result<Client> {
    client_to(cluster, cluster.addresses.clone())
}

/// A client of the cluster's admin identity that knows only `seeds`.
pub(crate) fn client_to(cluster: &LocalCluster, seeds: Vec<SocketAddr>) -> Result<Client> {
    let tls = super::load_tls(&cluster.client_certs, None)?;
    let client = Client::new(&tls, seeds, Duration::from_secs(5)).context("creating a client")?;
    super::close_at_exit(&client);
    Ok(client)
}

async fn wait_until_ready(cluster: &mut LocalCluster, nodes: usize, dir: &Path) -> Result<()> {
    let client = client(cluster)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (name, child) in &mut cluster.children {
            if let Ok(Some(exit)) = child.try_wait() {
                bail!(
                    "{name} stopped ({exit}); see {}",
                    dir.join(format!("{name}.log")).display()
                );
            }
        }
        let mut ready = 0;
        for &address in &cluster.addresses {
            if let Ok(Response::Status(status)) = client.request_to(address, &Request::Status).await
            {
                let in_ring = status.members.iter().filter(|m| m.in_ring && m.up).count();
                if in_ring == nodes {
                    ready += 1;
                }
            }
        }
        if ready == nodes {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the cluster did not form within 60 s; see the node logs");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn show(outcome: &GetOutcome) -> String {
    match outcome {
        GetOutcome::Found(reply) => reply
            .values
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
            .join("  |  "),
        GetOutcome::NotFound { .. } => "not found".into(),
    }
}

/// The paper's shopping cart (sections 4.4 and 6.3) against the running cluster.
async fn demo(cluster: &LocalCluster) -> Result<()> {
    let client = client(cluster)?;
    let options = RequestOptions::default();
    outln!("== a {}-node cluster is up ==", cluster.addresses.len());
    client.create_bucket(BucketProps::new("carts")).await?;
    outln!("created bucket carts (N=3, R=2, W=2)");

    let first = client
        .put("carts", b"alice", b"book".to_vec(), None, options)
        .await?;
    outln!(
        "alice puts [book]                      ({} acks)",
        first.acknowledged
    );

    // Two clients read the same version and write concurrently through different nodes.
    let put = |node: SocketAddr, value: &'static str| {
        let request = Request::Put {
            bucket: "carts".into(),
            key: b"alice".to_vec(),
            value: Some(value.as_bytes().to_vec()),
            context: Some(first.context.clone()),
            options,
            forwarded: false,
            write_id: None,
        };
        let client = &client;
        async move { client.request_to(node, &request).await }
    };
    let last = cluster.addresses[cluster.addresses.len() - 1];
    let (a, b) = tokio::join!(
        put(cluster.addresses[0], "book,pen"),
        put(last, "book,lamp")
    );
    a?;
    b?;
    outln!("phone adds a pen, laptop adds a lamp   (both from the same context)");

    let read = client.get("carts", b"alice", options).await?;
    outln!("get carts/alice -> {}", show(&read));
    let GetOutcome::Found(reply) = &read else {
        bail!("the cart vanished");
    };
    if reply.values.len() < 2 {
        bail!("expected two siblings, got {}", reply.values.len());
    }
    let mut items: Vec<String> = reply
        .values
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    items.sort();
    items.dedup();
    let merged = items.join(",");
    client
        .put(
            "carts",
            b"alice",
            merged.clone().into_bytes(),
            Some(reply.context.clone()),
            options,
        )
        .await?;
    outln!("the client merges them and writes [{merged}] with the context");
    let read = client.get("carts", b"alice", options).await?;
    outln!("get carts/alice -> {}", show(&read));

    let GetOutcome::Found(reply) = &read else {
        bail!("the cart vanished");
    };
    client
        .delete("carts", b"alice", Some(reply.context.clone()), options)
        .await?;
    let read = client.get("carts", b"alice", options).await?;
    outln!("delete, then get -> {}", show(&read));

    let status = client.status().await?;
    outln!();
    outln!(
        "{:<8} {:<22} {:<6} {:>10} {:>10}",
        "node",
        "address",
        "up",
        "partitions",
        "replicated"
    );
    for m in &status.members {
        outln!(
            "{:<8} {:<22} {:<6} {:>10} {:>9.1}%",
            m.id,
            m.address,
            m.up,
            m.partitions,
            m.ownership_percent
        );
    }
    Ok(())
}
