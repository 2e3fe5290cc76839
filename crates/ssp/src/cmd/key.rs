//! `ssp key add|list|remove`: the SSH public keys that let a user in through the gateway.
//! Without `--user` they are the caller's own; admins may name anyone.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use ssp_api::KeyCreate;
use ssp_core::names::Name;

use crate::output::{self, InputError};

/// `ssp key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Register the public key(s) in FILE (`-` for standard input).
    Add {
        /// An OpenSSH public key file, e.g. ~/.ssh/id_ed25519.pub.
        file: PathBuf,
        /// A name for the key (default: its comment); only for a file with one key.
        #[arg(long)]
        name: Option<String>,
        /// Whose key it is (default: you).
        #[arg(long)]
        user: Option<Name>,
    },
    /// List registered keys.
    List {
        /// Whose keys (default: yours).
        #[arg(long)]
        user: Option<Name>,
    },
    /// Remove a key by name.
    Remove {
        /// The key's name (`ssp key list`).
        name: String,
        /// Whose key it is (default: yours).
        #[arg(long)]
        user: Option<Name>,
    },
}

/// Runs `ssp key …`.
pub async fn run(command: KeyCommand, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    match command {
        KeyCommand::Add { file, name, user } => {
            let keys = super::read_public_keys(&file)?;
            if name.is_some() && keys.len() > 1 {
                return Err(InputError(format!(
                    "{} holds {} keys and --name names one: leave --name out (each key is named by its comment) \
                     or give a file with one key",
                    file.display(),
                    keys.len()
                ))
                .into());
            }
            let user = super::user_or_caller(&client, user).await?;
            let mut added = Vec::new();
            for public_key in keys {
                let create = KeyCreate { public_key, name: name.clone() };
                let key = client
                    .add_key(&user, &create)
                    .await
                    .with_context(|| format!("adding a key from {} for {user}", file.display()))?;
                if !json {
                    println!("key {} added for {user}: {}", key.name, key.fingerprint);
                }
                added.push(key);
            }
            if json {
                return output::json(&added);
            }
            Ok(())
        }
        KeyCommand::List { user } => {
            let user = super::user_or_caller(&client, user).await?;
            let mut keys = client.keys(&user).await.with_context(|| format!("listing the keys of {user}"))?;
            keys.sort_by(|a, b| a.name.cmp(&b.name));
            if json {
                return output::json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|key| {
                    let kind = key.public_key.split_whitespace().next().unwrap_or("-").to_string();
                    vec![key.name.clone(), kind, key.fingerprint.clone(), output::timestamp(Some(key.created_at))]
                })
                .collect();
            output::table(&["NAME", "TYPE", "FINGERPRINT", "ADDED"], &rows);
            Ok(())
        }
        KeyCommand::Remove { name, user } => {
            let user = super::user_or_caller(&client, user).await?;
            client.delete_key(&user, &name).await.with_context(|| format!("removing key {name} of {user}"))?;
            if !json {
                println!("key {name} of {user} removed");
            }
            Ok(())
        }
    }
}
