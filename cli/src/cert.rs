//! `dynamo cert`: the cluster CA, identities issued by it, and `cert bootstrap` for containers.
//!
//! This module must not know how nodes use certificates: it makes and saves them.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use dynamo_client::ca::ClusterCa;
use dynamo_client::tls::{Identity, Role};

use crate::args::{CertCommand, IssueRole};

pub(crate) fn cert(command: CertCommand) -> Result<ExitCode> {
    match command {
        CertCommand::Init { ca_dir, cluster } => {
            let ca = ClusterCa::generate(&cluster).context("generating the cluster CA")?;
            ca.save(&ca_dir)
                .with_context(|| format!("writing the CA to {}", ca_dir.display()))?;
            outln!(
                "cluster CA written to {} (ca.pem, ca.key); keep that directory private and away from nodes and clients",
                ca_dir.display()
            );
            outln!(
                "next: dynamo cert issue --ca-dir {} --node NAME --dir DIR (and --admin / --client / --read-only)",
                ca_dir.display()
            );
        }
        CertCommand::Issue {
            ca_dir,
            dir,
            role,
            force,
        } => {
            let (role, name) = match role {
                IssueRole { node: Some(n), .. } => (Role::Node, n),
                IssueRole { admin: Some(n), .. } => (Role::Admin, n),
                IssueRole {
                    client: Some(n), ..
                } => (Role::Client, n),
                IssueRole {
                    read_only: Some(n), ..
                } => (Role::ReadOnly, n),
                _ => bail!("give one of --node, --admin, --client or --read-only with a NAME"),
            };
            dynamo_client::tls::validate_name(&name)?;
            let ca = ClusterCa::load(&ca_dir).with_context(|| {
                format!(
                    "loading the cluster CA from {} (made by `dynamo cert init --ca-dir {}`)",
                    ca_dir.display(),
                    ca_dir.display()
                )
            })?;
            let identity = issue_into(&ca, role, &name, &dir, force)?;
            let stem = identity.file_stem();
            outln!(
                "{role} certificate for {name} written to {} ({stem}.pem, {stem}.key, ca.pem)",
                dir.display()
            );
        }
        CertCommand::Bootstrap {
            ca_dir,
            out,
            nodes,
            admins,
            clients,
            cluster,
        } => bootstrap_certs(
            &ca_dir,
            &out,
            &cluster,
            &[
                (Role::Node, nodes),
                (Role::Admin, admins),
                (Role::Client, clients),
            ],
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Issues identity `name` with `role` into `dir`, beside the CA certificate (`force`: replace
/// one that exists).
pub(crate) fn issue_into(
    ca: &ClusterCa,
    role: Role,
    name: &str,
    dir: &Path,
    force: bool,
) -> Result<Identity> {
    let identity = ca
        .issue(role, name)
        .with_context(|| format!("issuing {name}"))?;
    identity
        .save(dir, force)
        .with_context(|| format!("writing {name}'s identity to {}", dir.display()))?;
    ca.install_cert(dir)
        .with_context(|| format!("writing the CA certificate to {}", dir.display()))?;
    Ok(identity)
}

/// `cert bootstrap`: the CA if missing, then each identity that has no directory yet.
pub(crate) fn bootstrap_certs(
    ca_dir: &Path,
    out: &Path,
    cluster: &str,
    identities: &[(Role, Vec<String>)],
) -> Result<()> {
    let ca = if ca_dir.join(dynamo_client::tls::CA_CERT_FILE).exists() {
        ClusterCa::load(ca_dir)
            .with_context(|| format!("loading the cluster CA from {}", ca_dir.display()))?
    } else {
        let ca = ClusterCa::generate(cluster).context("generating the cluster CA")?;
        ca.save(ca_dir)
            .with_context(|| format!("writing the CA to {}", ca_dir.display()))?;
        outln!("cluster CA written to {}", ca_dir.display());
        ca
    };
    for (role, names) in identities {
        for name in names {
            dynamo_client::tls::validate_name(name)?;
            let dir = out.join(name);
            if Identity::load(&dir, Some(*role), Some(name)).is_ok() {
                outln!("{role} {name}: {} already holds it", dir.display());
                continue;
            }
            issue_into(&ca, *role, name, &dir, false)?;
            outln!("{role} {name}: written to {}", dir.display());
        }
    }
    Ok(())
}
