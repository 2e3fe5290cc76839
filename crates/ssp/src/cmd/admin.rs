//! `ssp admin backup FILE`: a consistent copy of the daemon's state database, taken while
//! it runs. Restore it with `ssp serve --restore-state FILE`.

use anyhow::Context;
use clap::Subcommand;

use crate::output;

/// `ssp admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Save a consistent copy of ssp's state (users, keys, containers, images, …) to FILE.
    Backup {
        /// Where to write it (must not exist).
        file: std::path::PathBuf,
    },
}

/// Runs `ssp admin …`.
pub async fn run(command: AdminCommand, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    match command {
        AdminCommand::Backup { file } => {
            let bytes = client.state_backup(&file).await.context("backing up ssp's state")?;
            if json {
                return output::json(&serde_json::json!({ "file": file, "bytes": bytes }));
            }
            println!(
                "ssp's state saved to {} ({}); restore it with `ssp serve --restore-state {}`",
                file.display(),
                output::human_bytes(bytes),
                file.display()
            );
            Ok(())
        }
    }
}
