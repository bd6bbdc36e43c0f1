//! Power cuts of real hosts (issue 26): each node's data directory is a [`crate::lossyfs`]
//! mount, a filesystem whose unsynced writes live only in its own process, so killing that
//! process and the node together is a power cut: the node loses everything it did not fsync,
//! including what it had already read back. Power returns with a new mount over the same
//! backing directory and the node restarts on it.
//!
//! [`run`] is the scenario shared by the test command's short form and `cargo xtask power`: a
//! workload from the client host (the chaos workload), power cut to one node and then to every
//! node at once, and the chaos checker once power is back.
//!
//! This module must not know how nodes work inside; it starts, cuts and asks them as a user
//! and a power switch would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::chaos::{self, History, Phase, Verdict};
use crate::host_cluster::{Advertise, HostCluster};

/// A [`crate::lossyfs`] mount and the process that serves it.
#[derive(Debug)]
pub struct LossyDisk {
    binary: PathBuf,
    backing: PathBuf,
    mountpoint: PathBuf,
    lie_about: Option<String>,
    process: Option<Child>,
}

impl LossyDisk {
    /// Mounts a lossy filesystem over `backing` (made if missing) at `mountpoint` (made if
    /// missing). With `lie_about`, fsyncs of files whose name ends with it report success and
    /// keep nothing: a disk that lies, for showing that the checker sees what such a disk
    /// loses. `Err` says why it cannot.
    pub fn mount(
        binary: &Path,
        backing: PathBuf,
        mountpoint: PathBuf,
        lie_about: Option<&str>,
    ) -> Result<LossyDisk, String> {
        for dir in [&backing, &mountpoint] {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        // The mount shows the backing directory's mode: private, as a node wants its data.
        std::fs::set_permissions(
            &backing,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| format!("{}: {e}", backing.display()))?;
        let mut disk = LossyDisk {
            binary: binary.to_path_buf(),
            backing,
            mountpoint,
            lie_about: lie_about.map(str::to_owned),
            process: None,
        };
        disk.power_on()?;
        Ok(disk)
    }

    /// Starts the filesystem process and waits (up to 10 s) until the mount is there.
    pub fn power_on(&mut self) -> Result<(), String> {
        if is_mounted(&self.mountpoint) {
            return Err(format!(
                "{} is still mounted: the last power cut did not detach it",
                self.mountpoint.display()
            ));
        }
        let mut command = Command::new(&self.binary);
        command
            .arg(&self.backing)
            .arg(&self.mountpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(suffix) = &self.lie_about {
            command.env("LOSSYFS_LIE_ABOUT", suffix);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_mounted(&self.mountpoint) {
            if let Ok(Some(status)) = child.try_wait() {
                let mut reason = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut reason);
                }
                return Err(format!("lossyfs exited ({status}): {}", reason.trim()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "lossyfs did not mount {} within 10 s",
                    self.mountpoint.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.process = Some(child);
        Ok(())
    }

    /// Cuts the power: the filesystem process dies with everything not fsynced, and the dead
    /// mount is detached.
    pub fn power_off(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Where the durable bytes are.
    pub fn backing(&self) -> &Path {
        &self.backing
    }
}

impl Drop for LossyDisk {
    fn drop(&mut self) {
        self.power_off();
    }
}

/// Whether a FUSE filesystem is mounted at `path` now.
fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    mounts.lines().any(|line| {
        let mut fields = line.split(' ');
        let _source = fields.next();
        fields.next() == Some(wanted.as_ref())
            && fields.next().is_some_and(|t| t.starts_with("fuse"))
    })
}

/// The `lossyfs` binary of the same target directory as the running program.
pub fn lossyfs_binary() -> PathBuf {
    crate::process::binary_beside("lossyfs", "cargo build -p dynamo-tests --bin lossyfs")
}

/// Why this machine cannot run power cuts, if it cannot: FUSE needs `/dev/fuse`, and the
/// mounts and hosts need root.
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse (FUSE is not available)".into());
    }
    if !rustix::process::geteuid().is_root() {
        return Some("not root".into());
    }
    None
}

/// A [`HostCluster`] whose nodes keep their data on lossy disks.
pub struct PowerCluster {
    /// The nodes and hosts.
    pub cluster: HostCluster,
    disks: Mutex<Vec<LossyDisk>>,
}

impl PowerCluster {
    /// Makes `count` node hosts and a client host, a lossy disk under each node's data
    /// directory, and starts the nodes. With `lying_disks`, the disks lie about fsyncs of the
    /// store's write-ahead journal (`*.jnl`). `Err` says why this machine cannot.
    pub fn start(
        count: usize,
        config: Option<&str>,
        lying_disks: bool,
    ) -> Result<PowerCluster, String> {
        if let Some(reason) = unavailable() {
            return Err(reason);
        }
        let cluster = HostCluster::prepare(count, Advertise::Addresses, config)?;
        let binary = lossyfs_binary();
        let disks = (0..count)
            .map(|i| {
                let backing = cluster.dir().join(format!("n{}.disk", i + 1));
                let lie_about = lying_disks.then_some(".jnl");
                LossyDisk::mount(&binary, backing, cluster.data_dir(i), lie_about)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let power = PowerCluster {
            cluster,
            disks: Mutex::new(disks),
        };
        power.cluster.start_all();
        Ok(power)
    }

    /// Cuts the power of `nodes` at once: each node and its disk die together, losing what
    /// was not fsynced, and their hosts fall silent (no host answers for them, not even that
    /// a port is closed, as when a machine loses power).
    pub fn power_off(&self, nodes: &[usize]) {
        let mut disks = self.disks.lock().unwrap_or_else(PoisonError::into_inner);
        let others: Vec<usize> = (0..=self.cluster.node_count())
            .filter(|i| !nodes.contains(i))
            .collect();
        self.cluster.network.cut(nodes, &others);
        for &i in nodes {
            self.cluster.kill(i);
            disks[i].power_off();
        }
    }

    /// Brings the power of `nodes` back: their hosts answer again, a new mount comes up over
    /// each surviving disk and the node restarts on it.
    pub fn power_on(&self, nodes: &[usize]) {
        let mut disks = self.disks.lock().unwrap_or_else(PoisonError::into_inner);
        self.cluster.network.heal();
        for &i in nodes {
            disks[i]
                .power_on()
                .unwrap_or_else(|e| panic!("n{}'s disk: {e}", i + 1));
            self.cluster.start_node(i);
        }
    }
}

impl Drop for PowerCluster {
    fn drop(&mut self) {
        // Nodes first, so none of them sees its disk vanish.
        for i in 0..self.cluster.node_count() {
            self.cluster.kill(i);
        }
        self.disks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Node settings of power runs: anti-entropy every 3 s, so the checker sees equal roots soon
/// after power returns.
pub const NODE_CONFIG: &str = "anti_entropy_interval_ms = 3000\n";

/// One power cut of a run: whom it hits and how long the power stays off.
#[derive(Debug, Clone)]
pub struct Cut {
    /// The phase label of the workload while it lasts.
    pub name: String,
    /// The nodes that lose power.
    pub nodes: Vec<usize>,
    /// Seconds without power.
    pub off_seconds: u64,
}

impl Cut {
    /// Power cut to node `node` (0-based) for `off_seconds`, named by `label` and the node.
    pub fn one(label: &str, node: usize, off_seconds: u64) -> Cut {
        Cut {
            name: format!("{label}n{}", node + 1),
            nodes: vec![node],
            off_seconds,
        }
    }

    /// Power cut to all `count` nodes at once for `off_seconds`, named by `label` and "all".
    pub fn all(label: &str, count: usize, off_seconds: u64) -> Cut {
        Cut {
            name: format!("{label}all"),
            nodes: (0..count).collect(),
            off_seconds,
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    /// What the workload was told.
    pub history: History,
    /// What the checker found once power was back.
    pub verdict: Verdict,
}

/// Runs the chaos workload (`workers` clients on the client host) through `cuts`, one after
/// another with `quiet` seconds of workload before each and after the last, then checks the
/// history once every node is back.
pub fn run(power: &PowerCluster, cuts: &[Cut], workers: usize, quiet: Duration) -> Outcome {
    let cluster = &power.cluster;
    chaos::create_buckets(cluster);
    let tls = cluster.client_tls("power");
    let phase = Phase::new("before");
    let total = quiet * (cuts.len() as u32 + 1)
        + cuts
            .iter()
            .map(|cut| Duration::from_secs(cut.off_seconds))
            .sum::<Duration>();
    let until = Instant::now() + total;
    let (history, restored) = std::thread::scope(|scope| {
        let workload = scope.spawn(|| {
            chaos::run_workload(
                cluster,
                &tls,
                &phase,
                workers,
                until,
                Duration::from_secs(2),
            )
        });
        let mut restored = Instant::now();
        for cut in cuts {
            std::thread::sleep(quiet);
            phase.set(&cut.name);
            power.power_off(&cut.nodes);
            std::thread::sleep(Duration::from_secs(cut.off_seconds));
            power.power_on(&cut.nodes);
            restored = Instant::now();
            phase.set(&format!("after {}", cut.name));
        }
        (workload.join().expect("workload"), restored)
    });
    cluster.wait_until_up(cluster.node_count(), Duration::from_secs(60));
    let verdict = chaos::check(cluster, &tls, &history, restored, Duration::from_secs(120));
    Outcome { history, verdict }
}

/// The report of a run as a person reads it: a table row per cut (the chaos checker's), then
/// operations acknowledged and failed by phase.
pub fn report(cuts: &[Cut], outcome: &Outcome) -> String {
    let mut lines = vec![chaos::REPORT_HEADER.to_owned()];
    for cut in cuts {
        let row = chaos::report_row(&cut.name, &outcome.history, &outcome.verdict, &cut.name);
        lines.push(row);
    }
    lines.push(format!(
        "acknowledged by phase: {:?}",
        outcome.history.acknowledged
    ));
    for (phase, (count, first)) in &outcome.history.errors {
        lines.push(format!("{count} errors in {phase:?}, the first: {first}"));
    }
    let verdict = &outcome.verdict;
    lines.push(format!(
        "checked {}: {} writes lost, {} cart adds lost, {} deletes undone",
        verdict.checked,
        verdict.lost_writes.len(),
        verdict.lost_cart_adds.len(),
        verdict.undone_deletes.len()
    ));
    lines.join("\n")
}
