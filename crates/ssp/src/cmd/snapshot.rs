//! `ssp snapshot create|list|restore|delete|protect|unprotect|schedule|unschedule|run`:
//! snapshots of a container, named `[OWNER/]NAME@SNAPSHOT`, and its schedule.

use anyhow::Context;
use clap::Subcommand;
use ssp_api::{SnapshotCreate, SnapshotSchedule, SnapshotUpdate};
use ssp_core::names::Name;

use crate::cmd::ContainerRef;
use crate::output::{self, InputError};

/// `[OWNER/]CONTAINER@SNAPSHOT`, the snapshot part optional where a command allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRef {
    /// The container.
    pub container: ContainerRef,
    /// The snapshot, if named.
    pub snapshot: Option<Name>,
}

impl std::str::FromStr for SnapshotRef {
    type Err = ssp_core::names::NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('@') {
            Some((container, snapshot)) => {
                Ok(SnapshotRef { container: container.parse()?, snapshot: Some(Name::parse(snapshot)?) })
            }
            None => Ok(SnapshotRef { container: text.parse()?, snapshot: None }),
        }
    }
}

impl SnapshotRef {
    fn snapshot(&self) -> anyhow::Result<&Name> {
        self.snapshot.as_ref().ok_or_else(|| {
            InputError(format!(
                "name the snapshot: {}@SNAPSHOT (see `ssp snapshot list {}`)",
                self.container, self.container
            ))
            .into()
        })
    }
}

/// `ssp snapshot …`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot now: `[OWNER/]NAME[@SNAPSHOT]` (protected from retention unless --unprotected).
    Create {
        /// The container, and optionally the snapshot's name.
        target: SnapshotRef,
        /// Let the schedule's retention prune it.
        #[arg(long)]
        unprotected: bool,
    },
    /// List a container's snapshots.
    List {
        /// `[OWNER/]NAME`.
        container: ContainerRef,
    },
    /// Restore a container to a snapshot (a running one is stopped, restored and started).
    Restore {
        /// `[OWNER/]NAME@SNAPSHOT`.
        target: SnapshotRef,
    },
    /// Delete a snapshot.
    Delete {
        /// `[OWNER/]NAME@SNAPSHOT`.
        target: SnapshotRef,
    },
    /// Protect a snapshot: retention never prunes it.
    Protect {
        /// `[OWNER/]NAME@SNAPSHOT`.
        target: SnapshotRef,
    },
    /// Unprotect a snapshot: the schedule's retention may prune it.
    Unprotect {
        /// `[OWNER/]NAME@SNAPSHOT`.
        target: SnapshotRef,
    },
    /// Take snapshots on a schedule and prune them by a retention policy.
    Schedule {
        /// `[OWNER/]NAME`.
        container: ContainerRef,
        /// Interval: seconds, or with a unit (`90s`, `15m`, `6h`, `1d`, `1w`).
        #[arg(long, value_parser = interval)]
        every: u64,
        /// Keep the N newest.
        #[arg(long, default_value_t = 0)]
        keep_last: u32,
        /// Keep the newest of each of the N most recent days.
        #[arg(long, default_value_t = 0)]
        keep_daily: u32,
        /// Keep the newest of each of the N most recent weeks.
        #[arg(long, default_value_t = 0)]
        keep_weekly: u32,
    },
    /// Show a container's schedule.
    ShowSchedule {
        /// `[OWNER/]NAME`.
        container: ContainerRef,
    },
    /// Stop taking scheduled snapshots (those taken stay).
    Unschedule {
        /// `[OWNER/]NAME`.
        container: ContainerRef,
    },
    /// Run the scheduler once now (admin).
    Run,
}

/// Parses `90`, `90s`, `15m`, `6h`, `1d`, `1w` into seconds.
pub fn interval(text: &str) -> Result<u64, String> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not an interval like 90s, 15m, 6h, 1d or 1w"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{text:?}: the unit is s, m, h, d or w")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("{text:?} is too long"))
}

/// Runs `ssp snapshot …`.
pub async fn run(command: SnapshotCommand, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    match command {
        SnapshotCommand::Create { target, unprotected } => {
            let (owner, name) = target.container.resolve(&client).await?;
            let create =
                SnapshotCreate { name: target.snapshot.as_ref().map(Name::to_string), protected: Some(!unprotected) };
            let made = client
                .create_snapshot(&owner, &name, &create)
                .await
                .with_context(|| format!("taking a snapshot of {owner}/{name}"))?;
            if json {
                return output::json(&made);
            }
            println!("snapshot {owner}/{name}@{} taken", made.name);
            Ok(())
        }
        SnapshotCommand::List { container } => {
            let (owner, name) = container.resolve(&client).await?;
            let list = client
                .snapshots(&owner, &name)
                .await
                .with_context(|| format!("listing snapshots of {owner}/{name}"))?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.created_at.clone(),
                        if s.protected { "yes" } else { "no" }.into(),
                        if s.scheduled { "schedule" } else { "manual" }.into(),
                    ]
                })
                .collect();
            output::table(&["NAME", "TAKEN", "PROTECTED", "BY"], &rows);
            Ok(())
        }
        SnapshotCommand::Restore { target } => {
            let snapshot = target.snapshot()?.to_string();
            let (owner, name) = target.container.resolve(&client).await?;
            let mut progress = output::Progress::new();
            progress.set(&format!("restoring {owner}/{name} to {snapshot}"));
            let done = client.restore_snapshot(&owner, &name, &snapshot).await;
            drop(progress);
            done.with_context(|| format!("restoring {owner}/{name}@{snapshot}"))?;
            if !json {
                println!("container {owner}/{name} restored to {snapshot}");
            }
            Ok(())
        }
        SnapshotCommand::Delete { target } => {
            let snapshot = target.snapshot()?.to_string();
            let (owner, name) = target.container.resolve(&client).await?;
            client
                .delete_snapshot(&owner, &name, &snapshot)
                .await
                .with_context(|| format!("deleting snapshot {owner}/{name}@{snapshot}"))?;
            if !json {
                println!("snapshot {owner}/{name}@{snapshot} deleted");
            }
            Ok(())
        }
        SnapshotCommand::Protect { target } => protect(&client, &target, true, json).await,
        SnapshotCommand::Unprotect { target } => protect(&client, &target, false, json).await,
        SnapshotCommand::Schedule { container, every, keep_last, keep_daily, keep_weekly } => {
            let (owner, name) = container.resolve(&client).await?;
            let schedule =
                SnapshotSchedule { every_secs: every, keep_last, keep_daily, keep_weekly, last_run_at: None };
            let set = client
                .set_schedule(&owner, &name, &schedule)
                .await
                .with_context(|| format!("scheduling snapshots of {owner}/{name}"))?;
            if json {
                return output::json(&set);
            }
            println!(
                "snapshots of {owner}/{name} every {} s; keeping last {}, daily {}, weekly {}",
                set.every_secs, set.keep_last, set.keep_daily, set.keep_weekly
            );
            Ok(())
        }
        SnapshotCommand::ShowSchedule { container } => {
            let (owner, name) = container.resolve(&client).await?;
            let schedule = client
                .schedule(&owner, &name)
                .await
                .with_context(|| format!("reading the schedule of {owner}/{name}"))?;
            if json {
                return output::json(&schedule);
            }
            output::fields(&[
                ("every", format!("{} s", schedule.every_secs)),
                ("keep last", schedule.keep_last.to_string()),
                ("keep daily", schedule.keep_daily.to_string()),
                ("keep weekly", schedule.keep_weekly.to_string()),
                ("last run", output::timestamp(schedule.last_run_at)),
            ]);
            Ok(())
        }
        SnapshotCommand::Unschedule { container } => {
            let (owner, name) = container.resolve(&client).await?;
            client.remove_schedule(&owner, &name).await.with_context(|| format!("unscheduling {owner}/{name}"))?;
            if !json {
                println!("no more scheduled snapshots of {owner}/{name}");
            }
            Ok(())
        }
        SnapshotCommand::Run => {
            let report = client.run_schedules().await.context("running the snapshot scheduler")?;
            if json {
                return output::json(&report);
            }
            println!("taken {}, pruned {}, failed {}", report.taken, report.pruned, report.failed);
            Ok(())
        }
    }
}

async fn protect(
    client: &crate::client::Client,
    target: &SnapshotRef,
    protected: bool,
    json: bool,
) -> anyhow::Result<()> {
    let snapshot = target.snapshot()?.to_string();
    let (owner, name) = target.container.resolve(client).await?;
    let updated = client
        .update_snapshot(&owner, &name, &snapshot, &SnapshotUpdate { protected })
        .await
        .with_context(|| format!("changing snapshot {owner}/{name}@{snapshot}"))?;
    if json {
        return output::json(&updated);
    }
    println!("snapshot {owner}/{name}@{snapshot} {}", if protected { "protected" } else { "unprotected" });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_refs_and_intervals() -> anyhow::Result<()> {
        let full: SnapshotRef = "alice/dev@before".parse()?;
        assert_eq!(full.container.to_string(), "alice/dev");
        assert_eq!(full.snapshot.as_ref().map(Name::as_str), Some("before"));
        assert!("dev".parse::<SnapshotRef>()?.snapshot.is_none());
        for bad in ["dev@", "dev@Bad", "@x", "a/b/c@x", "dev@a@b"] {
            assert!(bad.parse::<SnapshotRef>().is_err(), "{bad:?}");
        }
        assert_eq!(interval("90"), Ok(90));
        assert_eq!(interval("15m"), Ok(900));
        assert_eq!(interval("1d"), Ok(86_400));
        assert!(interval("1y").is_err() && interval("m").is_err() && interval("-1h").is_err());
        Ok(())
    }
}
