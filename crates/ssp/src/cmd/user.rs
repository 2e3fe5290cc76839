//! `ssp user add|list|show|set|invite|disable|enable|remove`: accounts, roles, quotas and
//! invitations to the web portal (admin); `remove --purge` removes a departing user with
//! everything they hold, exporting their containers and home first if asked.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use ssp_api::{QuotaPatch, Role, User, UserCreate, UserUpdate};
use ssp_core::names::Name;

use crate::cmd::login::role_name;
use crate::output::{self, InputError, Progress};

/// `ssp user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (admin).
    Add {
        /// Login name: lowercase letters, digits and '-', starting with a letter.
        name: Name,
        /// Make the user an admin.
        #[arg(long)]
        admin: bool,
        /// An OpenSSH public key file to register (several keys a file, --key repeatable).
        #[arg(long = "key", value_name = "FILE")]
        keys: Vec<PathBuf>,
        /// Read a web-portal password from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// List users (admin).
    List,
    /// Show a user, their quota and what they hold.
    Show {
        /// The user.
        name: Name,
    },
    /// Change a user's role, quota or password (admin).
    Set {
        /// The user.
        name: Name,
        /// New role.
        #[arg(long)]
        role: Option<RoleArg>,
        /// Read a new web-portal password from standard input (empty input is refused;
        /// `--remove-password` removes it).
        #[arg(long, conflicts_with = "remove_password")]
        password_stdin: bool,
        /// Remove the web-portal password.
        #[arg(long)]
        remove_password: bool,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Print a one-time link where the user sets a portal password and adds an SSH key,
    /// without the host (admin); an earlier unused link of theirs stops working.
    Invite {
        /// The user.
        name: Name,
        /// How long the link stays valid (default: the daemon's `[portal] invite_hours`, 72).
        #[arg(long, value_name = "HOURS")]
        hours: Option<u32>,
    },
    /// Disable a user: their tokens stop working at once; containers are kept (admin).
    Disable {
        /// The user.
        name: Name,
    },
    /// Enable a disabled user again (admin).
    Enable {
        /// The user.
        name: Name,
    },
    /// Remove a user (admin). A user who still holds containers needs --purge.
    Remove {
        /// The user.
        name: Name,
        /// Remove the user with everything they hold: they are disabled at once, then their
        /// containers, published images and home volume are deleted, and last the user.
        #[arg(long)]
        purge: bool,
        /// Before anything is deleted, write each container's archive to DIR/<container>.tar.gz
        /// and the home volume's to DIR/home.tar.gz; if any export fails nothing is deleted.
        #[arg(long, value_name = "DIR", requires = "purge")]
        export: Option<PathBuf>,
        /// Do not wait for the removal to finish (see `ssp user show`).
        #[arg(long, requires = "purge")]
        no_wait: bool,
    },
}

/// A role on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Manages users, sees everything.
    Admin,
    /// Manages their own keys, tokens and containers.
    User,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::User => Role::User,
        }
    }
}

/// Quota limits on the command line; those not given keep their value (or the default).
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// Most containers at once.
    #[arg(long, value_name = "N")]
    max_containers: Option<u32>,
    /// Most CPUs over all containers.
    #[arg(long, value_name = "N")]
    max_cpus: Option<u32>,
    /// Most memory over all containers (e.g. 64GiB).
    #[arg(long, value_name = "SIZE", value_parser = super::size)]
    max_memory: Option<String>,
    /// Most root disk over all containers (e.g. 500GiB).
    #[arg(long, value_name = "SIZE", value_parser = super::size)]
    max_disk: Option<String>,
    /// Most GPUs over all containers.
    #[arg(long, value_name = "N")]
    max_gpus: Option<u32>,
}

impl QuotaArgs {
    fn patch(self) -> QuotaPatch {
        QuotaPatch {
            max_containers: self.max_containers,
            max_cpus: self.max_cpus,
            max_memory: self.max_memory,
            max_disk: self.max_disk,
            max_gpus: self.max_gpus,
        }
    }
}

/// Runs `ssp user …`.
pub async fn run(command: UserCommand, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    match command {
        UserCommand::Add { name, admin, keys, password_stdin, quota } => {
            let mut public_keys = Vec::new();
            for file in &keys {
                public_keys.extend(super::read_public_keys(file)?);
            }
            let password = if password_stdin { Some(super::secret_from_stdin("password")?) } else { None };
            let create = UserCreate {
                name: name.to_string(),
                role: if admin { Role::Admin } else { Role::User },
                keys: public_keys,
                quota: quota.patch(),
                password,
            };
            let user = client.create_user(&create).await.with_context(|| format!("creating user {name}"))?;
            show_user(&user, json)
        }
        UserCommand::List => {
            let mut users = client.users().await.context("listing users")?;
            users.sort_by(|a, b| a.name.cmp(&b.name));
            if json {
                return output::json(&users);
            }
            output::table(
                &["NAME", "ROLE", "STATE", "CONTAINERS", "CPUS", "MEMORY", "DISK", "GPUS", "KEYS"],
                &users.iter().map(user_row).collect::<Vec<_>>(),
            );
            Ok(())
        }
        UserCommand::Show { name } => {
            let user = client.user(name.as_str()).await.with_context(|| format!("showing user {name}"))?;
            show_user(&user, json)
        }
        UserCommand::Set { name, role, password_stdin, remove_password, quota } => {
            let quota = quota.patch();
            let password = match (password_stdin, remove_password) {
                (true, _) => Some(super::secret_from_stdin("password")?),
                // The API removes the password when given an empty one.
                (false, true) => Some(String::new()),
                (false, false) => None,
            };
            let update = UserUpdate {
                role: role.map(Role::from),
                quota: (quota != QuotaPatch::default()).then_some(quota),
                disabled: None,
                password,
            };
            if update == UserUpdate::default() {
                return Err(InputError(
                    "nothing to change: give --role, a --max-… limit, --password-stdin or --remove-password".into(),
                )
                .into());
            }
            let user =
                client.update_user(name.as_str(), &update).await.with_context(|| format!("changing user {name}"))?;
            show_user(&user, json)
        }
        UserCommand::Disable { name } => set_disabled(&client, &name, true, json).await,
        UserCommand::Enable { name } => set_disabled(&client, &name, false, json).await,
        UserCommand::Invite { name, hours } => {
            let request = ssp_api::InviteCreate { valid_hours: hours };
            let invite =
                client.invite_user(name.as_str(), &request).await.with_context(|| format!("inviting {name}"))?;
            if json {
                return output::json(&invite);
            }
            let hours_left = (invite.expires_at - now()).max(0) / 3600;
            println!("{}", invite.url);
            eprintln!(
                "give this link to {name}: it works once, for about {hours_left} hours, to set a portal password and an SSH key"
            );
            Ok(())
        }
        UserCommand::Remove { name, purge: false, .. } => {
            client.delete_user(name.as_str()).await.with_context(|| format!("removing user {name}"))?;
            if !json {
                println!("user {name} removed");
            }
            Ok(())
        }
        UserCommand::Remove { name, purge: true, export, no_wait } => {
            purge(&client, &name, export.as_deref(), !no_wait, json).await
        }
    }
}

/// `ssp user remove NAME --purge`: says what goes, exports first if asked (stopping before
/// anything is deleted if an export fails), asks the daemon to purge, and waits until the
/// user is gone unless told not to.
async fn purge(
    client: &crate::client::Client,
    name: &Name,
    export: Option<&std::path::Path>,
    wait: bool,
    json: bool,
) -> anyhow::Result<()> {
    let user = client.user(name.as_str()).await.with_context(|| format!("removing user {name}"))?;
    let containers =
        client.containers(Some(name.as_str())).await.with_context(|| format!("listing {name}'s containers"))?;
    let containers: Vec<String> = containers.into_iter().filter(|c| c.owner == name.as_str()).map(|c| c.name).collect();
    let home = match client.home(name.as_str()).await {
        Ok(home) => Some(home),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {name}'s home volume"))),
    };
    eprintln!("{}", removal_summary(&user, &containers, home.as_ref().map(|h| h.size.as_str())));
    if let Some(dir) = export {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut progress = Progress::new();
        for container in &containers {
            let file = dir.join(format!("{container}.tar.gz"));
            progress.set(&format!("exporting {name}/{container} to {}", file.display()));
            let written = client.export_container(name.as_str(), container, &file).await;
            let written = written.with_context(|| {
                format!("exporting container {name}/{container} (nothing was deleted; {name} is unchanged)")
            })?;
            progress.set(&format!("{} written ({})", file.display(), output::human_bytes(written)));
        }
        if home.is_some() {
            let file = dir.join("home.tar.gz");
            progress.set(&format!("exporting {name}'s home volume to {}", file.display()));
            let written = client.export_home(name.as_str(), &file).await;
            let written = written.with_context(|| {
                format!("exporting {name}'s home volume (nothing was deleted; {name} is unchanged)")
            })?;
            progress.set(&format!("{} written ({})", file.display(), output::human_bytes(written)));
        }
        drop(progress);
    }
    let mut latest = client.purge_user(name.as_str()).await.with_context(|| format!("removing user {name}"))?;
    if wait {
        let mut progress = Progress::new();
        while let Some(user) = &latest {
            progress.set(&format!("removing {name}: {} container(s) left", user.containers_left));
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            latest = match client.user(name.as_str()).await {
                Ok(user) => Some(user),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(anyhow::Error::new(e).context(format!("waiting for {name}'s removal"))),
            };
        }
    }
    if json {
        return output::json(
            &serde_json::json!({ "user": name.as_str(), "removed": latest.is_none(), "state": latest }),
        );
    }
    match latest {
        None => println!("user {name} removed with everything they held"),
        Some(user) => println!(
            "user {name} is disabled and being removed ({} container(s) left); `ssp user show {name}` answers 'not found' once done",
            user.containers_left
        ),
    }
    Ok(())
}

/// What a purge of `user` removes, said before anything is done.
fn removal_summary(user: &User, containers: &[String], home: Option<&str>) -> String {
    let mut parts = Vec::new();
    parts.push(match containers.len() {
        0 => "no containers".to_string(),
        n => format!("{n} container(s) ({})", containers.join(", ")),
    });
    if let Some(size) = home {
        parts.push(format!("the home volume ({size})"));
    }
    parts.push(format!("{} SSH key(s), their tokens and published images", user.keys));
    format!("removing user {}: {}", user.name, parts.join(", "))
}

async fn set_disabled(client: &crate::client::Client, name: &Name, disabled: bool, json: bool) -> anyhow::Result<()> {
    let update = UserUpdate { disabled: Some(disabled), ..UserUpdate::default() };
    let verb = if disabled { "disabling" } else { "enabling" };
    let user = client.update_user(name.as_str(), &update).await.with_context(|| format!("{verb} user {name}"))?;
    if json {
        return output::json(&user);
    }
    println!("user {name} {}", if disabled { "disabled: their tokens no longer work" } else { "enabled" });
    Ok(())
}

fn state(user: &User) -> &'static str {
    if user.departing {
        "departing"
    } else if user.disabled {
        "disabled"
    } else {
        "enabled"
    }
}

/// `used/limit`.
fn of(used: impl std::fmt::Display, limit: impl std::fmt::Display) -> String {
    format!("{used}/{limit}")
}

fn user_row(user: &User) -> Vec<String> {
    vec![
        user.name.clone(),
        role_name(user.role).into(),
        state(user).into(),
        of(user.usage.containers, user.quota.max_containers),
        of(user.usage.cpus, user.quota.max_cpus),
        of(&user.usage.memory, &user.quota.max_memory),
        of(&user.usage.disk, &user.quota.max_disk),
        of(user.usage.gpus, user.quota.max_gpus),
        user.keys.to_string(),
    ]
}

fn show_user(user: &User, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(user);
    }
    output::fields(&[
        ("name", user.name.clone()),
        ("role", role_name(user.role).into()),
        ("state", state(user).into()),
        ("password", if user.has_password { "set" } else { "none" }.into()),
        ("ssh keys", user.keys.to_string()),
        ("created", output::timestamp(Some(user.created_at))),
        ("containers left", user.containers_left.to_string()),
        ("containers", of(user.usage.containers, user.quota.max_containers)),
        ("cpus", of(user.usage.cpus, user.quota.max_cpus)),
        ("memory", of(&user.usage.memory, &user.quota.max_memory)),
        ("disk", of(&user.usage.disk, &user.quota.max_disk)),
        ("gpus", of(user.usage.gpus, user.quota.max_gpus)),
        ("gpu allowlist", allowlist(&user.gpu_allowlist)),
    ]);
    Ok(())
}

/// `any`, or the GPU numbers and models a user may be given.
fn allowlist(list: &ssp_api::GpuAllowlist) -> String {
    let mut parts = Vec::new();
    if let Some(indices) = &list.indices {
        parts.push(format!("GPUs {}", indices.iter().map(u32::to_string).collect::<Vec<_>>().join(",")));
    }
    if let Some(models) = &list.models {
        parts.push(format!("models {}", models.join(", ")));
    }
    if parts.is_empty() {
        "any".into()
    } else {
        parts.join("; ")
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use ssp_api::{Quota, Usage};

    use super::*;

    #[test]
    fn an_allowlist_reads_as_set() {
        let list = |indices: Option<Vec<u32>>, models: Option<Vec<&str>>| ssp_api::GpuAllowlist {
            indices,
            models: models.map(|m| m.into_iter().map(String::from).collect()),
        };
        assert_eq!(allowlist(&list(None, None)), "any");
        assert_eq!(allowlist(&list(Some(vec![0, 2]), None)), "GPUs 0,2");
        assert_eq!(allowlist(&list(None, Some(vec!["NVIDIA H200", "A100"]))), "models NVIDIA H200, A100");
        assert_eq!(allowlist(&list(Some(vec![3]), Some(vec!["A100"]))), "GPUs 3; models A100");
    }

    #[test]
    fn a_user_row_shows_usage_against_quota() {
        let user = User {
            name: "alice".into(),
            role: Role::User,
            disabled: true,
            has_password: false,
            quota: Quota {
                max_containers: 5,
                max_cpus: 16,
                max_memory: "64GiB".into(),
                max_disk: "500GiB".into(),
                max_gpus: 1,
            },
            usage: Usage { containers: 1, cpus: 2, memory: "4GiB".into(), disk: "50GiB".into(), gpus: 0 },
            keys: 2,
            created_at: 0,
            departing: false,
            containers_left: 1,
            gpu_allowlist: Default::default(),
        };
        assert_eq!(
            user_row(&user),
            ["alice", "user", "disabled", "1/5", "2/16", "4GiB/64GiB", "50GiB/500GiB", "0/1", "2"]
        );
        let departing = User { departing: true, ..user.clone() };
        assert_eq!(user_row(&departing)[2], "departing");
        assert_eq!(
            removal_summary(&user, &["dev".into(), "lab".into()], Some("1GiB")),
            "removing user alice: 2 container(s) (dev, lab), the home volume (1GiB), 2 SSH key(s), their tokens and \
             published images"
        );
        assert_eq!(
            removal_summary(&user, &[], None),
            "removing user alice: no containers, 2 SSH key(s), their tokens and published images"
        );
    }

    #[test]
    fn quota_arguments_become_a_patch() {
        let args = QuotaArgs {
            max_containers: Some(3),
            max_cpus: None,
            max_memory: Some("8GiB".into()),
            max_disk: None,
            max_gpus: Some(0),
        };
        let patch = args.patch();
        assert_eq!(patch.max_containers, Some(3));
        assert_eq!(patch.max_memory.as_deref(), Some("8GiB"));
        assert_eq!(patch.max_gpus, Some(0));
        assert_eq!(patch.max_cpus, None);
    }
}
