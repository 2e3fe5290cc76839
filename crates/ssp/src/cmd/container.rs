//! `ssp container create|list|show|start|stop|restart|delete`.
//!
//! The daemon records intent and answers at once (202); its reconciler then makes LXD match.
//! So every changing command, unless `--no-wait`, polls the container until it is where it
//! was asked to be, shows progress meanwhile, and fails with the reconciler's own words when
//! a problem persists — rather than leaving a person to guess why nothing happens.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ssp_api::{Container, ContainerCreate, DesiredState, Phase};
use ssp_core::names::{ImageName, Name};

use crate::client::Client;
use crate::cmd::ContainerRef;
use crate::output::{self, Progress};

/// How often a waiting command asks the daemon.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long a problem may persist before a waiting command gives up: the reconciler retries,
/// and many problems (an image still unpacking, LXD busy) clear by themselves.
const PROBLEM_GRACE: Duration = Duration::from_secs(30);

/// A container's limits, each the daemon's default unless given.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// CPUs (default: the daemon's).
    #[arg(long, value_name = "N")]
    cpus: Option<u32>,
    /// Memory limit, e.g. 16GiB (default: the daemon's).
    #[arg(long, value_name = "SIZE", value_parser = super::nonzero_size)]
    memory: Option<String>,
    /// Root disk size, e.g. 50GiB (default: the daemon's).
    #[arg(long, value_name = "SIZE", value_parser = super::nonzero_size)]
    disk: Option<String>,
}

/// `ssp container …`.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create a container and wait until it runs (or is stopped, with --stopped).
    Create {
        /// `NAME` (yours) or `OWNER/NAME` (admins, for someone else).
        container: ContainerRef,
        /// Image to make it from: `NAME` or a user's `OWNER/NAME` (`ssp image list`; default:
        /// the daemon's).
        #[arg(long, value_parser = image_ref)]
        image: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Create it stopped.
        #[arg(long)]
        stopped: bool,
        #[command(flatten)]
        gpus: super::gpu::GpuArgs,
        /// Repeating a create with the same key yields the first one's container, so a
        /// script may retry safely.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List containers: yours, someone's (--owner), or everyone's (--all, admin).
    List {
        /// Everyone's containers (admin).
        #[arg(long, conflicts_with = "owner")]
        all: bool,
        /// This user's containers.
        #[arg(long)]
        owner: Option<Name>,
    },
    /// Show a container: what ssp wants, what LXD has, and any problem.
    Show {
        /// `NAME` or `OWNER/NAME`.
        container: ContainerRef,
    },
    /// Start a container, and keep it running.
    Start {
        /// `NAME` or `OWNER/NAME`.
        container: ContainerRef,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop a container, and keep it stopped.
    Stop {
        /// `NAME` or `OWNER/NAME`.
        container: ContainerRef,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Restart a container.
    Restart {
        /// `NAME` or `OWNER/NAME`.
        container: ContainerRef,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a container and its root disk.
    Delete {
        /// `NAME` or `OWNER/NAME`.
        container: ContainerRef,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Copy a container (its files, limits and image; not its snapshots) and wait until the
    /// copy runs.
    Copy {
        /// The container to copy: `NAME` or `OWNER/NAME`.
        source: ContainerRef,
        /// The copy: `NAME` (same owner) or `OWNER/NAME` (admins, for someone else).
        target: ContainerRef,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Export a container with its snapshots to an archive file (admin).
    Export {
        /// `NAME` or `OWNER/NAME`.
        container: ContainerRef,
        /// The archive to write (must not exist).
        file: std::path::PathBuf,
    },
    /// Import a container from an archive made by `ssp container export` (admin): the
    /// archive is checked before LXD sees it.
    Import {
        /// The archive.
        file: std::path::PathBuf,
        /// The new container: `OWNER/NAME`.
        container: ContainerRef,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// An image argument: `NAME` or `OWNER/NAME`, checked here so a typo fails before anything is sent.
fn image_ref(text: &str) -> Result<String, ssp_core::names::NameError> {
    match text.split_once('/') {
        Some((owner, name)) => {
            Name::parse(owner)?;
            ImageName::parse(name)?;
        }
        None => {
            ImageName::parse(text)?;
        }
    }
    Ok(text.to_string())
}

/// Whether and how long to wait for the change to be made.
#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArgs {
    /// Return once the daemon has recorded the request, without waiting for it to be done.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds (the change goes on in the daemon).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
}

/// Runs `ssp container …`.
pub async fn run(command: ContainerCommand, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    match command {
        ContainerCommand::Create {
            container,
            image,
            limits: LimitArgs { cpus, memory, disk },
            stopped,
            gpus,
            idempotency_key,
            wait,
        } => {
            let desired = if stopped { DesiredState::Stopped } else { DesiredState::Running };
            let create = ContainerCreate {
                name: container.name.to_string(),
                // Without an owner the daemon makes it the caller's: no need to ask who that is.
                owner: container.owner.as_ref().map(Name::to_string),
                image,
                cpus,
                memory,
                disk,
                state: desired,
                idempotency_key: None,
                gpus: gpus.ask(false)?,
            };
            let (created, made) = client
                .create_container(&create, idempotency_key.as_deref())
                .await
                .with_context(|| format!("creating container {container}"))?;
            let id = format!("{}/{}", made.owner, made.name);
            if !created && !json {
                eprintln!("container {id} was already created by a request with the same idempotency key");
            }
            finish(&client, made, Goal::Ready(desired), wait, json, "created").await
        }
        ContainerCommand::List { all, owner } => {
            let owner = match (all, owner) {
                (true, _) => None,
                (false, Some(owner)) => Some(owner.to_string()),
                // An admin's plain list shows their own, like everyone's; --all shows all.
                (false, None) => Some(super::caller(&client).await?),
            };
            let mut containers = client.containers(owner.as_deref()).await.context("listing containers")?;
            containers.sort_by(|a, b| (&a.owner, &a.name).cmp(&(&b.owner, &b.name)));
            if json {
                return output::json(&containers);
            }
            output::table(
                &["NAME", "IMAGE", "STATE", "CPUS", "MEMORY", "DISK", "ADDRESS"],
                &containers.iter().map(container_row).collect::<Vec<_>>(),
            );
            Ok(())
        }
        ContainerCommand::Show { container } => {
            let (owner, name) = container.resolve(&client).await?;
            let found =
                client.container(&owner, &name).await.with_context(|| format!("showing container {owner}/{name}"))?;
            if json {
                return output::json(&found);
            }
            show(&found);
            Ok(())
        }
        ContainerCommand::Start { container, wait } => {
            let (owner, name) = container.resolve(&client).await?;
            let changed = client
                .set_state(&owner, &name, DesiredState::Running)
                .await
                .with_context(|| format!("starting container {owner}/{name}"))?;
            finish(&client, changed, Goal::Ready(DesiredState::Running), wait, json, "started").await
        }
        ContainerCommand::Stop { container, wait } => {
            let (owner, name) = container.resolve(&client).await?;
            let changed = client
                .set_state(&owner, &name, DesiredState::Stopped)
                .await
                .with_context(|| format!("stopping container {owner}/{name}"))?;
            finish(&client, changed, Goal::Ready(DesiredState::Stopped), wait, json, "stopped").await
        }
        ContainerCommand::Restart { container, wait } => {
            let (owner, name) = container.resolve(&client).await?;
            // The daemon restarts at once, but waits first while LXD is busy with the container
            // (up to half a minute): show that something is happening.
            let mut progress = Progress::new();
            progress.set(&format!("restarting {owner}/{name}"));
            let changed =
                client.restart(&owner, &name).await.with_context(|| format!("restarting container {owner}/{name}"))?;
            drop(progress);
            finish(&client, changed, Goal::Ready(DesiredState::Running), wait, json, "restarted").await
        }
        ContainerCommand::Delete { container, wait } => {
            let (owner, name) = container.resolve(&client).await?;
            let deleting = client
                .delete_container(&owner, &name)
                .await
                .with_context(|| format!("deleting container {owner}/{name}"))?;
            finish(&client, deleting, Goal::Gone, wait, json, "deleted").await
        }
        ContainerCommand::Copy { source, target, wait } => {
            let (owner, name) = source.resolve(&client).await?;
            let copy = ssp_api::ContainerCopy {
                name: target.name.to_string(),
                owner: target.owner.as_ref().map(Name::to_string),
            };
            let made = client
                .copy_container(&owner, &name, &copy)
                .await
                .with_context(|| format!("copying container {owner}/{name} to {target}"))?;
            finish(&client, made, Goal::Ready(DesiredState::Running), wait, json, "copied").await
        }
        ContainerCommand::Export { container, file } => {
            let (owner, name) = container.resolve(&client).await?;
            let mut progress = Progress::new();
            progress.set(&format!("exporting {owner}/{name}"));
            let written = client.export_container(&owner, &name, &file).await;
            drop(progress);
            let written = written.with_context(|| format!("exporting container {owner}/{name}"))?;
            if json {
                return output::json(&serde_json::json!({ "file": file, "bytes": written }));
            }
            println!("container {owner}/{name} exported to {} ({})", file.display(), output::human_bytes(written));
            Ok(())
        }
        ContainerCommand::Import { file, container, limits: LimitArgs { cpus, memory, disk }, wait } => {
            let owner = match &container.owner {
                Some(owner) => owner.to_string(),
                None => super::caller(&client).await?,
            };
            let mut progress = Progress::new();
            progress.set(&format!("importing {}", file.display()));
            let query =
                ssp_api::ImportQuery { owner: owner.clone(), name: container.name.to_string(), cpus, memory, disk };
            let made = client.import_container(&query, &file).await;
            drop(progress);
            let made = made.with_context(|| format!("importing {} as {owner}/{}", file.display(), container.name))?;
            finish(&client, made, Goal::Ready(DesiredState::Running), wait, json, "imported").await
        }
    }
}

/// Waits (unless told not to) and reports the outcome; `done` is the past participle the
/// person reads (`created`, `stopped`, …).
async fn finish(
    client: &Client,
    accepted: Container,
    goal: Goal,
    wait: WaitArgs,
    json: bool,
    done: &str,
) -> anyhow::Result<()> {
    let id = format!("{}/{}", accepted.owner, accepted.name);
    if wait.no_wait {
        if json {
            return output::json(&accepted);
        }
        println!("container {id}: request accepted ({}); follow it with `ssp container show {id}`", state(&accepted));
        return Ok(());
    }
    let last = wait_for(client, &accepted.owner, &accepted.name, goal, Duration::from_secs(wait.timeout)).await?;
    match last {
        Some(container) if json => output::json(&container),
        Some(container) => {
            let addresses = if container.addresses.is_empty() {
                String::new()
            } else {
                format!(", at {}", container.addresses.join(", "))
            };
            println!("container {id} {done}: {}{addresses}", container.status);
            Ok(())
        }
        // Deleted: nothing left to show as JSON.
        None if json => Ok(()),
        None => {
            println!("container {id} {done}");
            Ok(())
        }
    }
}

/// What a waiting command waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// Made in LXD, and its LXD status is the desired state's (`Running`, `Stopped`).
    Ready(DesiredState),
    /// Gone: the daemon answers 404.
    Gone,
}

impl Goal {
    fn describe(self) -> &'static str {
        match self {
            Goal::Ready(DesiredState::Running) => "running",
            Goal::Ready(DesiredState::Stopped) => "stopped",
            Goal::Gone => "deleted",
        }
    }
}

/// The LXD status that matches a desired state.
fn status_for(state: DesiredState) -> &'static str {
    match state {
        DesiredState::Running => "Running",
        DesiredState::Stopped => "Stopped",
    }
}

/// One look at a container while waiting.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Where it was asked to be.
    Done,
    /// Not yet; what it is doing, for the progress line.
    Waiting(String),
    /// It will not get there by waiting.
    Failed(String),
}

/// Judges one observation (`None`: the daemon answered 404) against the goal.
fn step(id: &str, seen: Option<&Container>, goal: Goal) -> Step {
    match (goal, seen) {
        (Goal::Gone, None) => Step::Done,
        (Goal::Gone, Some(container)) => Step::Waiting(format!("{id}: {}", progress_text(container))),
        (Goal::Ready(_), None) => Step::Failed(format!("container {id} disappeared: it was deleted meanwhile")),
        (Goal::Ready(_), Some(container)) if container.phase == Phase::Lost => Step::Failed(format!(
            "container {id} vanished from LXD behind ssp's back; delete it (`ssp container delete {id}`) or ask an admin"
        )),
        (Goal::Ready(_), Some(container)) if container.phase == Phase::Deleting => {
            Step::Failed(format!("container {id} is being deleted"))
        }
        (Goal::Ready(state), Some(container)) => {
            // Ready means usable: LXD's status alone comes before the owner's account, keys
            // and GPUs are in place.
            if container.phase == Phase::Ready && container.status == status_for(state) && container.converged {
                Step::Done
            } else {
                Step::Waiting(format!("{id}: {}", progress_text(container)))
            }
        }
    }
}

/// What a container is doing, in words.
fn progress_text(container: &Container) -> String {
    let doing = match container.phase {
        Phase::Creating => format!("being created (LXD: {})", container.status),
        Phase::Deleting => format!("being deleted (LXD: {})", container.status),
        Phase::Lost => "lost".to_string(),
        Phase::Ready if container.status == status_for(container.desired_state) => {
            format!("{}, being set up", container.status)
        }
        Phase::Ready => format!("{}, to be {}", container.status, status_for(container.desired_state)),
    };
    let doing = match &container.waiting_for {
        Some(what) => format!("{doing} (waiting: {what})"),
        None => doing,
    };
    match &container.problem {
        Some(problem) => format!("{doing} — problem: {problem}"),
        None => doing,
    }
}

/// Polls the container until it reaches `goal`; the last observation (none once deleted).
async fn wait_for(
    client: &Client,
    owner: &str,
    name: &str,
    goal: Goal,
    timeout: Duration,
) -> anyhow::Result<Option<Container>> {
    let id = format!("{owner}/{name}");
    let started = Instant::now();
    let mut progress = Progress::new();
    let mut problem_since: Option<Instant> = None;
    loop {
        // For a state, the daemon holds the answer until the reconciler moves the container
        // (a long poll); for a delete, plain polling until 404.
        let look = match goal {
            Goal::Ready(DesiredState::Running) => client.container_when(owner, name, "running", 10).await,
            Goal::Ready(DesiredState::Stopped) => client.container_when(owner, name, "stopped", 10).await,
            Goal::Gone => client.container(owner, name).await,
        };
        let seen = match look {
            Ok(container) => Some(container),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e).with_context(|| format!("waiting for container {id} to be {}", goal.describe())),
        };
        match step(&id, seen.as_ref(), goal) {
            Step::Done => return Ok(seen),
            Step::Failed(why) => bail!(why),
            Step::Waiting(what) => progress.set(&what),
        }
        // Judged on the problem being there at every look, not on its text staying the same:
        // the reconciler may word a retry differently.
        match seen.as_ref().and_then(|container| container.problem.as_deref()) {
            Some(problem) => {
                let since = *problem_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= PROBLEM_GRACE {
                    bail!(
                        "container {id} is not {}: {problem} (for {} s now; the daemon keeps trying — \
                         see `ssp container show {id}`, or delete it)",
                        goal.describe(),
                        since.elapsed().as_secs()
                    );
                }
            }
            None => problem_since = None,
        }
        if started.elapsed() >= timeout {
            let now = seen.as_ref().map(progress_text).unwrap_or_else(|| "gone".into());
            bail!(
                "container {id} is still not {} after {} s ({now}); the daemon goes on with it: \
                 see `ssp container show {id}`, or wait longer with --timeout",
                goal.describe(),
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The state column: LXD's status once ready, else what ssp is doing; a problem is flagged.
fn state(container: &Container) -> String {
    let state = match container.phase {
        Phase::Ready => container.status.clone(),
        Phase::Creating => "creating".into(),
        Phase::Deleting => "deleting".into(),
        Phase::Lost => "lost".into(),
    };
    if container.problem.is_some() {
        format!("{state} (problem)")
    } else {
        state
    }
}

fn container_row(container: &Container) -> Vec<String> {
    vec![
        format!("{}/{}", container.owner, container.name),
        container.image.clone(),
        state(container),
        container.cpus.to_string(),
        container.memory.clone(),
        container.disk.clone(),
        if container.addresses.is_empty() { "-".into() } else { container.addresses.join(",") },
    ]
}

/// The problem with when it happened and when the daemon tries again.
fn problem_text(container: &Container) -> String {
    let Some(problem) = &container.problem else {
        return match (&container.waiting_for, &container.pending) {
            (Some(what), _) => format!("- (waiting: {what})"),
            (None, Some(pending)) => format!("- ({pending})"),
            (None, None) => "-".into(),
        };
    };
    let when = container.problem_at.map(|at| format!(" (at {})", output::timestamp(Some(at)))).unwrap_or_default();
    match container.next_try_at {
        Some(next) => format!("{problem}{when}; next try at {}", output::timestamp(Some(next))),
        None => format!("{problem}{when}; the daemon waits for a person"),
    }
}

fn show(container: &Container) {
    let phase = match container.phase {
        Phase::Creating => "creating",
        Phase::Ready => "ready",
        Phase::Deleting => "deleting",
        Phase::Lost => "lost",
    };
    output::fields(&[
        ("name", format!("{}/{}", container.owner, container.name)),
        ("image", container.image.clone()),
        ("status", container.status.clone()),
        ("desired", status_for(container.desired_state).to_lowercase()),
        ("phase", phase.into()),
        ("cpus", container.cpus.to_string()),
        ("memory", container.memory.clone()),
        ("disk", container.disk.clone()),
        ("addresses", if container.addresses.is_empty() { "-".into() } else { container.addresses.join(", ") }),
        ("gpus", super::gpu::held(&container.gpus)),
        ("gpu health", container.gpu_health.clone().unwrap_or_else(|| "-".into())),
        ("problem", problem_text(container)),
        ("created", output::timestamp(Some(container.created_at))),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(phase: Phase, status: &str, problem: Option<&str>) -> Container {
        Container {
            owner: "alice".into(),
            name: "box".into(),
            image: "debian-12".into(),
            cpus: 2,
            memory: "4GiB".into(),
            disk: "20GiB".into(),
            desired_state: DesiredState::Running,
            phase,
            status: status.into(),
            addresses: vec![],
            problem: problem.map(str::to_string),
            problem_at: None,
            next_try_at: None,
            waiting_for: None,
            pending: None,
            converged: true,
            gpus: vec![],
            gpu_health: None,
            desktop: false,
            created_at: 0,
            ssh_host_key: None,
        }
    }

    #[test]
    fn creating_waits_until_ready_and_in_the_desired_state() {
        let running = Goal::Ready(DesiredState::Running);
        let creating = container(Phase::Creating, "Missing", None);
        assert!(matches!(step("alice/box", Some(&creating), running), Step::Waiting(_)));
        let starting = container(Phase::Ready, "Stopped", None);
        assert!(matches!(step("alice/box", Some(&starting), running), Step::Waiting(_)));
        let ready = container(Phase::Ready, "Running", None);
        assert_eq!(step("alice/box", Some(&ready), running), Step::Done);
        // Running, but the owner's account is not set up yet: not done.
        let setting_up = Container { converged: false, ..ready.clone() };
        assert!(
            matches!(step("alice/box", Some(&setting_up), running), Step::Waiting(w) if w.contains("being set up"))
        );
        let stopped = Goal::Ready(DesiredState::Stopped);
        assert_eq!(step("alice/box", Some(&starting), stopped), Step::Done);
        assert!(matches!(step("alice/box", Some(&ready), stopped), Step::Waiting(_)));
    }

    #[test]
    fn waiting_fails_at_once_when_it_cannot_succeed() {
        let running = Goal::Ready(DesiredState::Running);
        assert!(matches!(step("alice/box", None, running), Step::Failed(_)));
        let lost = container(Phase::Lost, "Missing", None);
        assert!(
            matches!(step("alice/box", Some(&lost), running), Step::Failed(m) if m.contains("ssp container delete"))
        );
        let deleting = container(Phase::Deleting, "Running", None);
        assert!(matches!(step("alice/box", Some(&deleting), running), Step::Failed(_)));
    }

    #[test]
    fn deleting_waits_for_not_found() {
        let deleting = container(Phase::Deleting, "Stopped", None);
        assert!(matches!(step("alice/box", Some(&deleting), Goal::Gone), Step::Waiting(_)));
        assert_eq!(step("alice/box", None, Goal::Gone), Step::Done);
    }

    #[test]
    fn progress_names_the_problem() {
        let stuck = container(Phase::Creating, "Missing", Some("image debian-12 not found"));
        let Step::Waiting(text) = step("alice/box", Some(&stuck), Goal::Ready(DesiredState::Running)) else {
            panic!("expected to wait");
        };
        assert_eq!(text, "alice/box: being created (LXD: Missing) — problem: image debian-12 not found");
    }

    #[test]
    fn rows_show_owner_name_state_and_addresses() {
        let mut ready = container(Phase::Ready, "Running", None);
        ready.addresses = vec!["10.1.2.3".into(), "10.1.2.4".into()];
        assert_eq!(
            container_row(&ready),
            ["alice/box", "debian-12", "Running", "2", "4GiB", "20GiB", "10.1.2.3,10.1.2.4"]
        );
        let creating = container(Phase::Creating, "Missing", Some("busy"));
        assert_eq!(container_row(&creating)[2], "creating (problem)");
        assert_eq!(container_row(&creating)[6], "-");
    }
}
