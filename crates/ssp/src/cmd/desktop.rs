//! `ssp desktop enable|disable|show|end`: a desktop in a container, opened in the portal or
//! with a native VNC viewer through the SSH gateway (`ssh -N -L 5901:desktop:5901 …`).

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use ssp_api::{Desktop, DesktopState};

use crate::cmd::ContainerRef;
use crate::output;

/// `ssp desktop …`.
#[derive(Debug, Subcommand)]
pub enum DesktopCommand {
    /// Offer a desktop in a container: ssp installs it inside (TigerVNC and XFCE from the
    /// distribution's packages when the image lacks them) and waits until it is ready.
    Enable {
        /// The container: NAME (yours) or OWNER/NAME.
        container: ContainerRef,
        /// Return at once instead of waiting until it is ready.
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop offering it: its sessions end; installed packages and your files stay.
    Disable {
        /// The container: NAME (yours) or OWNER/NAME.
        container: ContainerRef,
    },
    /// How the desktop stands, its session, and the SSH command for a VNC viewer.
    Show {
        /// The container: NAME (yours) or OWNER/NAME.
        container: ContainerRef,
    },
    /// End the desktop session: its programs end and its viewers are disconnected.
    End {
        /// The container: NAME (yours) or OWNER/NAME.
        container: ContainerRef,
    },
}

/// How long `enable` waits for the desktop to be installed (downloading packages included).
const ENABLE_PATIENCE: Duration = Duration::from_secs(600);

/// Runs `ssp desktop …`.
pub async fn run(command: DesktopCommand, json: bool) -> anyhow::Result<()> {
    let client = super::connect()?;
    match command {
        DesktopCommand::Enable { container, no_wait } => {
            let (owner, name) = container.resolve(&client).await?;
            let mut desktop = client
                .set_desktop(&owner, &name, true)
                .await
                .with_context(|| format!("enabling the desktop of {owner}/{name}"))?;
            let deadline = std::time::Instant::now() + ENABLE_PATIENCE;
            while !no_wait && desktop.state != DesktopState::Ready {
                if desktop.state == DesktopState::Failed {
                    bail!(
                        "the desktop of {owner}/{name} could not be installed: {} (ssp tries again; \
                         `ssp desktop show {container}`)",
                        desktop.problem.as_deref().unwrap_or("no reason given")
                    );
                }
                if std::time::Instant::now() > deadline {
                    bail!("the desktop of {owner}/{name} is not ready after 10 minutes; see `ssp desktop show {container}`");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                desktop = client.desktop(&owner, &name).await?;
            }
            show(&desktop, json, &format!("{owner}/{name}"))
        }
        DesktopCommand::Disable { container } => {
            let (owner, name) = container.resolve(&client).await?;
            let desktop = client
                .set_desktop(&owner, &name, false)
                .await
                .with_context(|| format!("disabling the desktop of {owner}/{name}"))?;
            show(&desktop, json, &format!("{owner}/{name}"))
        }
        DesktopCommand::Show { container } => {
            let (owner, name) = container.resolve(&client).await?;
            let desktop = client
                .desktop(&owner, &name)
                .await
                .with_context(|| format!("reading the desktop of {owner}/{name}"))?;
            show(&desktop, json, &format!("{owner}/{name}"))
        }
        DesktopCommand::End { container } => {
            let (owner, name) = container.resolve(&client).await?;
            client
                .end_desktop_session(&owner, &name)
                .await
                .with_context(|| format!("ending the desktop session of {owner}/{name}"))?;
            if !json {
                println!("the desktop session of {owner}/{name} ended");
            }
            Ok(())
        }
    }
}

fn show(desktop: &Desktop, json: bool, object: &str) -> anyhow::Result<()> {
    if json {
        return output::json(desktop);
    }
    output::fields(&describe(desktop, object));
    Ok(())
}

/// The fields `show` prints.
fn describe(desktop: &Desktop, object: &str) -> Vec<(&'static str, String)> {
    let state = match desktop.state {
        DesktopState::Off => "off",
        DesktopState::SettingUp if desktop.enabled => "being installed",
        DesktopState::SettingUp => "being removed",
        DesktopState::Ready => "ready",
        DesktopState::Failed => "failed",
    };
    let mut fields = vec![("container", object.to_string()), ("desktop", state.to_string())];
    if let Some(problem) = &desktop.problem {
        fields.push(("problem", problem.clone()));
    }
    let session = match &desktop.session {
        None => "none running".to_string(),
        Some(session) => {
            let memory = session.memory.map_or_else(|| "memory unknown".into(), output::human_bytes);
            match session.ends_in_secs {
                Some(left) => {
                    format!("{} viewer(s), {memory}, ends in {} min if nobody opens it", session.viewers, left / 60)
                }
                None => format!("{} viewer(s), {memory}", session.viewers),
            }
        }
    };
    if desktop.state == DesktopState::Ready {
        fields.push(("session", session));
        fields.push(("idle timeout", format!("{} min", desktop.idle_timeout_secs / 60)));
        fields.push(("vnc viewer", format!("{}   then connect to localhost:5901", desktop.ssh_forward)));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssp_api::DesktopSession;

    fn desktop(state: DesktopState, session: Option<DesktopSession>) -> Desktop {
        Desktop {
            enabled: state != DesktopState::Off,
            state,
            problem: (state == DesktopState::Failed)
                .then(|| "installing the desktop failed (exit 4): no apt-get".into()),
            session,
            idle_timeout_secs: 4 * 3600,
            ssh_forward: "ssh -N -L 5901:desktop:5901 -p 2222 alice+dev@gpu1".into(),
        }
    }

    #[test]
    fn show_says_how_it_stands_and_how_to_connect() {
        let off = describe(&desktop(DesktopState::Off, None), "alice/dev");
        assert_eq!(off, [("container", "alice/dev".to_string()), ("desktop", "off".to_string())]);
        let failed = describe(&desktop(DesktopState::Failed, None), "alice/dev");
        assert!(failed.iter().any(|(k, v)| *k == "problem" && v.contains("no apt-get")));
        let watched = DesktopSession { viewers: 2, memory: Some(300 << 20), idle_secs: None, ends_in_secs: None };
        let ready = describe(&desktop(DesktopState::Ready, Some(watched)), "alice/dev");
        let get = |k: &str| ready.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(get("session"), "2 viewer(s), 300.0 MiB");
        assert!(get("vnc viewer").starts_with("ssh -N -L 5901:desktop:5901"), "{}", get("vnc viewer"));
        assert_eq!(get("idle timeout"), "240 min");
        let idle = DesktopSession { viewers: 0, memory: None, idle_secs: Some(60), ends_in_secs: Some(600) };
        let ready = describe(&desktop(DesktopState::Ready, Some(idle)), "alice/dev");
        assert!(ready.iter().any(|(_, v)| v == "0 viewer(s), memory unknown, ends in 10 min if nobody opens it"));
    }
}
