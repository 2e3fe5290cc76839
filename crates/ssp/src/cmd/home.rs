//! `ssp home create|show|delete`: a user's persistent home volume, mounted at /home/USER in
//! all their containers and kept when a container is deleted.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use ssp_api::HomeCreate;
use ssp_core::names::Name;

use crate::output;

/// `ssp home …`.
#[derive(Debug, Subcommand)]
pub enum HomeCommand {
    /// Create the home volume (its size counts against the disk quota) and wait until it is ready.
    Create {
        /// Size, e.g. 10GiB.
        #[arg(long, value_parser = super::nonzero_size)]
        size: String,
        /// Whose (default: yours).
        #[arg(long)]
        user: Option<Name>,
    },
    /// Show the home volume.
    Show {
        /// Whose (default: yours).
        #[arg(long)]
        user: Option<Name>,
    },
    /// Delete the home volume and everything on it.
    Delete {
        /// Whose (default: yours).
        #[arg(long)]
        user: Option<Name>,
    },
}

/// Runs `ssp home …`.
pub async fn run(command: HomeCommand, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    match command {
        HomeCommand::Create { size, user } => {
            let user = super::user_or_caller(&client, user).await?;
            let mut home = client
                .create_home(&user, &HomeCreate { size })
                .await
                .with_context(|| format!("creating the home volume of {user}"))?;
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while home.phase != "ready" {
                if std::time::Instant::now() > deadline {
                    bail!(
                        "the home volume of {user} is not ready after 120 s (it is {}); see `ssp home show`",
                        home.phase
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                home = client.home(&user).await?;
            }
            if json {
                return output::json(&home);
            }
            println!("home volume of {user} ({}) ready at {}", home.size, home.path);
            Ok(())
        }
        HomeCommand::Show { user } => {
            let user = super::user_or_caller(&client, user).await?;
            let home = client.home(&user).await.with_context(|| format!("reading the home volume of {user}"))?;
            if json {
                return output::json(&home);
            }
            let used = home.used.unwrap_or_else(|| "-".into());
            output::fields(&[
                ("user", home.user),
                ("size", home.size),
                ("used", used),
                ("phase", home.phase),
                ("path", home.path),
            ]);
            Ok(())
        }
        HomeCommand::Delete { user } => {
            let user = super::user_or_caller(&client, user).await?;
            client.delete_home(&user).await.with_context(|| format!("deleting the home volume of {user}"))?;
            if !json {
                println!("home volume of {user} is being deleted");
            }
            Ok(())
        }
    }
}
