//! Hosts of their own on one machine, for tests that cross a real network: each host is a Linux
//! network namespace with its own IPv4 address and its own `/etc/hosts`, joined by a veth pair
//! to a bridge in a switch namespace, as machines on one LAN are. Programs run on a host through
//! `ip netns exec` (which also mounts the host's hosts file over `/etc/hosts`), and a thread of
//! the test can enter a host to run the Rust client there ([`Network::on_host`]).
//!
//! The nemesis is here too: [`Network::cut`] drops every packet between two groups of hosts
//! (blackhole routes on both sides), [`Network::cut_one_way`] drops one direction only,
//! [`Network::heal`] undoes both, and [`Network::move_host`] gives a host a new address (its
//! name follows in every hosts file).
//!
//! Creating namespaces needs root and iproute2; [`Network::create`] says why it could not, so a
//! test can print that and skip. Everything is removed when the [`Network`] is dropped.
//!
//! This module must not know what runs on the hosts: it makes hosts and links, nothing else.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The hosts' subnet (a /24 inside each network's own switch; networks never see each other).
const SUBNET: [u8; 3] = [10, 77, 0];

/// Networks made by this process so far, for unique namespace names.
static NETWORKS: AtomicUsize = AtomicUsize::new(0);

/// One host: its name (also its DNS name in every host's hosts file), namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The host's name, as the other hosts resolve it.
    pub name: String,
    /// The network namespace it lives in.
    pub namespace: String,
    /// Its address now.
    pub ip: Ipv4Addr,
}

/// Hosts on one bridge; see the module documentation.
#[derive(Debug)]
pub struct Network {
    switch: String,
    hosts: Mutex<Vec<Host>>,
    /// Blackhole routes in place: (on host, towards address).
    cuts: Mutex<BTreeSet<(usize, Ipv4Addr)>>,
}

/// Runs `ip ARGS`, failing with its output.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Network {
    /// Makes hosts named `names`, with addresses `10.77.0.10`, `.11`, ... in that order. `Err`
    /// says why the machine cannot (not root, no iproute2, no namespaces): skip the test then.
    pub fn create(names: &[&str]) -> Result<Network, String> {
        remove_abandoned_namespaces();
        let id = NETWORKS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("dyn{}x{id}", std::process::id());
        let switch = format!("{prefix}-sw");
        ip(&["netns", "add", &switch])?;
        let network = Network {
            switch: switch.clone(),
            hosts: Mutex::new(Vec::new()),
            cuts: Mutex::new(BTreeSet::new()),
        };
        ip(&["-n", &switch, "link", "set", "lo", "up"])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (i, name) in names.iter().enumerate() {
            let namespace = format!("{prefix}-{name}");
            ip(&["netns", "add", &namespace])?;
            let host = Host {
                name: (*name).to_owned(),
                namespace: namespace.clone(),
                ip: Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 10 + i as u8),
            };
            network.lock_hosts().push(host.clone());
            let port = format!("p{i}");
            ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &namespace,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &switch, "link", "set", &port, "up"])?;
            ip(&[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{}/24", host.ip),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
        }
        network.write_hosts_files()?;
        Ok(network)
    }

    fn lock_hosts(&self) -> std::sync::MutexGuard<'_, Vec<Host>> {
        self.hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Host `index` as it is now.
    pub fn host(&self, index: usize) -> Host {
        self.lock_hosts()[index].clone()
    }

    /// The index of the host called `name`.
    pub fn index_of(&self, name: &str) -> usize {
        self.lock_hosts()
            .iter()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// `/etc/netns/NAMESPACE/hosts` of every host: `localhost`, and every host by name. Written
    /// in place, so programs already running on a host see the change.
    fn write_hosts_files(&self) -> Result<(), String> {
        let hosts = self.lock_hosts().clone();
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for host in &hosts {
            let _ = writeln!(text, "{} {}", host.ip, host.name);
        }
        for host in &hosts {
            let dir = hosts_dir(&host.namespace);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join("hosts");
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            file.write_all(text.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// A command that runs `program` on host `index` (its network and its hosts file).
    pub fn command(&self, index: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.host(index).namespace])
            .arg(program);
        command
    }

    /// Runs `f` on a thread inside host `index`'s network (sockets it opens live there; names
    /// still resolve through this machine's own `/etc/hosts`), and returns what it returns.
    pub fn on_host<T: Send>(&self, index: usize, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.host(index).namespace);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let namespace = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                    rustix::thread::move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&namespace),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .unwrap_or_else(|e| panic!("entering {path}: {e}"));
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Drops every packet between the hosts of `side_a` and those of `side_b`, both ways (a
    /// partition). Hosts in neither group still reach both.
    pub fn cut(&self, side_a: &[usize], side_b: &[usize]) {
        for &a in side_a {
            for &b in side_b {
                self.cut_one_way(a, b);
                self.cut_one_way(b, a);
            }
        }
    }

    /// Drops every packet host `from` sends to host `to`; `to`'s packets still arrive.
    pub fn cut_one_way(&self, from: usize, to: usize) {
        let (from_host, to_ip) = (self.host(from), self.host(to).ip);
        let mut cuts = self
            .cuts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cuts.insert((from, to_ip)) {
            let route = format!("{to_ip}/32");
            ip(&[
                "-n",
                &from_host.namespace,
                "route",
                "add",
                "blackhole",
                &route,
            ])
            .unwrap_or_else(|e| panic!("cutting {} from {}: {e}", from_host.name, to_ip));
        }
    }

    /// Removes every cut.
    pub fn heal(&self) {
        let cuts = std::mem::take(
            &mut *self
                .cuts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (from, to_ip) in cuts {
            let namespace = self.host(from).namespace;
            let route = format!("{to_ip}/32");
            ip(&["-n", &namespace, "route", "del", "blackhole", &route])
                .unwrap_or_else(|e| panic!("healing {namespace} to {to_ip}: {e}"));
        }
    }

    /// Gives host `index` the address `10.77.0.LAST` instead of its own, and updates every
    /// hosts file: the host came back elsewhere under the same name.
    pub fn move_host(&self, index: usize, last: u8) -> Ipv4Addr {
        let host = self.host(index);
        let new_ip = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], last);
        let old = format!("{}/24", host.ip);
        let new = format!("{new_ip}/24");
        // The old one first: deleting a primary address also deletes the secondary ones.
        ip(&["-n", &host.namespace, "addr", "del", &old, "dev", "eth0"]).expect("old address");
        ip(&["-n", &host.namespace, "addr", "add", &new, "dev", "eth0"]).expect("new address");
        self.lock_hosts()[index].ip = new_ip;
        self.write_hosts_files().expect("hosts files");
        new_ip
    }
}

/// Deletes the namespaces of networks whose process is gone (killed before it could drop them).
fn remove_abandoned_namespaces() {
    let Ok(listed) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let Some(namespace) = line.split_whitespace().next() else {
            continue;
        };
        let owner = namespace
            .strip_prefix("dyn")
            .and_then(|rest| rest.split_once('x'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = ip(&["netns", "del", namespace]);
            let _ = std::fs::remove_dir_all(hosts_dir(namespace));
        }
    }
}

fn hosts_dir(namespace: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(namespace)
}

impl Drop for Network {
    fn drop(&mut self) {
        // Processes still running in a namespace keep it alive after `netns del`; their owners
        // kill them.
        for host in self.lock_hosts().iter() {
            let _ = ip(&["netns", "del", &host.namespace]);
            let _ = std::fs::remove_dir_all(hosts_dir(&host.namespace));
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

/// The output of a finished command as one readable text: status, stdout and stderr.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}
