//! `ssp share add|list|remove` (admin): host folders shared into users' containers.

use anyhow::Context;
use clap::Subcommand;
use ssp_api::ShareCreate;
use ssp_core::names::Name;

use crate::output;

/// `ssp share …`.
#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    /// Share a host folder: mounted at /shares/NAME (or --path) in the containers of every
    /// user, or of --users.
    Add {
        /// The share's name.
        name: Name,
        /// An existing absolute host folder.
        host_path: String,
        /// Mount it read-only.
        #[arg(long, conflicts_with = "rw", required_unless_present = "rw")]
        ro: bool,
        /// Mount it read-write.
        #[arg(long)]
        rw: bool,
        /// Only for these users (comma-separated); everyone by default.
        #[arg(long, value_delimiter = ',')]
        users: Option<Vec<Name>>,
        /// Where to mount it inside (under /shares, /data, /mnt, /srv or /opt).
        #[arg(long)]
        path: Option<String>,
    },
    /// List shares.
    List,
    /// Stop sharing a folder (unmounted from every container; the folder stays).
    Remove {
        /// The share's name.
        name: Name,
    },
}

/// Runs `ssp share …`.
pub async fn run(command: ShareCommand, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    match command {
        ShareCommand::Add { name, host_path, ro, rw: _, users, path } => {
            let create = ShareCreate {
                name: name.to_string(),
                host_path: host_path.clone(),
                path,
                read_only: ro,
                users: users.map(|u| u.iter().map(Name::to_string).collect()),
            };
            let share = client.create_share(&create).await.with_context(|| format!("sharing {host_path} as {name}"))?;
            if json {
                return output::json(&share);
            }
            let whom = if share.users.is_empty() { "everyone".to_string() } else { share.users.join(", ") };
            let mode = if share.read_only { "read-only" } else { "read-write" };
            println!("share {} ({}) mounted {mode} at {} for {whom}", share.name, share.host_path, share.path);
            if let Some(group) = &share.group {
                println!("their accounts are members of group {} there; on the host folder ssp:", group.name);
            }
            for change in &share.host_changes {
                println!("  - {change}");
            }
            Ok(())
        }
        ShareCommand::List => {
            let shares = client.shares().await.context("listing shares")?;
            if json {
                return output::json(&shares);
            }
            let rows: Vec<Vec<String>> = shares
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.host_path.clone(),
                        s.path.clone(),
                        if s.read_only { "ro" } else { "rw" }.into(),
                        if s.users.is_empty() { "everyone".into() } else { s.users.join(",") },
                        s.group.as_ref().map_or_else(|| "-".into(), |g| format!("{} ({})", g.name, g.gid)),
                    ]
                })
                .collect();
            output::table(&["NAME", "HOST PATH", "PATH", "MODE", "USERS", "GROUP"], &rows);
            Ok(())
        }
        ShareCommand::Remove { name } => {
            client.delete_share(name.as_str()).await.with_context(|| format!("removing share {name}"))?;
            if !json {
                println!("share {name} removed");
            }
            Ok(())
        }
    }
}
