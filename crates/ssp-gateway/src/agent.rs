//! Listeners inside a container that lead back to the client: agent forwarding (`ssh -A`:
//! a unix socket `/run/ssp-agent-ID.sock`, owned by the owner's account, mode 0600) and remote
//! forwarding (`ssh -R PORT:…`: `127.0.0.1:PORT` inside). An LXD `proxy` device
//! (`bind=instance`) listens inside and connects to a socket the gateway listens on under its
//! state folder; each connection there becomes an `auth-agent@openssh.com` or
//! `forwarded-tcpip` channel to the client. The device lives as long as the session or the
//! forward: it is named `gateway-…` and registered in [`LiveDevices`], so the reconciler
//! leaves it alone.

use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use crate::devices::{proxy, set_device, LiveDevices, DEVICE_PREFIX};

/// What a connection to the listener inside becomes.
#[derive(Debug, Clone)]
pub(crate) enum Back {
    /// An agent channel.
    Agent,
    /// A `forwarded-tcpip` channel for the client's `-R ADDRESS:PORT`.
    Tcp {
        /// As the client asked for it.
        address: String,
        /// The port inside.
        port: u16,
    },
}

/// A listener inside a container, for one session (agent) or one forward (`-R`).
pub(crate) struct Agent {
    lxd: ssp_lxd::Client,
    live: LiveDevices,
    instance: String,
    device: String,
    host_socket: PathBuf,
    /// `SSH_AUTH_SOCK` inside.
    pub(crate) inside: String,
    relay: JoinHandle<()>,
}

impl Agent {
    /// Listens under `dir` and adds the proxy device to `instance`.
    pub(crate) async fn open(
        lxd: &ssp_lxd::Client,
        live: &LiveDevices,
        instance: &str,
        dir: &Path,
        uid: u32,
        handle: russh::server::Handle,
        back: Back,
    ) -> Result<Self, String> {
        let mut id = [0u8; 6];
        getrandom::fill(&mut id).map_err(|e| e.to_string())?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let host_socket = dir.join(format!("back-{id}.sock"));
        let listener =
            UnixListener::bind(&host_socket).map_err(|e| format!("listening on {}: {e}", host_socket.display()))?;
        let (inside, device, listen) = match &back {
            Back::Agent => {
                let inside = format!("/run/ssp-agent-{id}.sock");
                (inside.clone(), format!("{DEVICE_PREFIX}agent-{id}"), format!("unix:{inside}"))
            }
            Back::Tcp { port, .. } => (
                format!("127.0.0.1:{port}"),
                format!("{DEVICE_PREFIX}forward-{port}-{id}"),
                format!("tcp:127.0.0.1:{port}"),
            ),
        };
        let relay = tokio::spawn(relay(listener, handle, back.clone()));
        let mut config = proxy(&[
            ("bind", "instance".into()),
            ("listen", listen),
            ("connect", format!("unix:{}", host_socket.display())),
        ]);
        if matches!(back, Back::Agent) {
            config.insert("uid".into(), uid.to_string());
            config.insert("gid".into(), uid.to_string());
            config.insert("mode".into(), "0600".into());
        }
        let agent = Self {
            lxd: lxd.clone(),
            live: live.clone(),
            instance: instance.into(),
            device,
            host_socket,
            inside,
            relay,
        };
        if let Err(e) = set_device(&agent.lxd, &agent.live, &agent.instance, &agent.device, Some(&config)).await {
            agent.close().await;
            return Err(e);
        }
        Ok(agent)
    }

    /// Removes the device and the socket.
    pub(crate) async fn close(self) {
        self.relay.abort();
        if let Err(e) = set_device(&self.lxd, &self.live, &self.instance, &self.device, None).await {
            tracing::warn!("gateway: removing the agent device of {}: {e}", self.instance);
        }
        let _ = std::fs::remove_file(&self.host_socket);
    }
}

/// Each connection to the host socket becomes a channel to the client.
async fn relay(listener: UnixListener, handle: russh::server::Handle, back: Back) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { return };
        let handle = handle.clone();
        let back = back.clone();
        tokio::spawn(async move {
            let channel = match &back {
                Back::Agent => handle.channel_open_agent().await,
                Back::Tcp { address, port } => {
                    handle.channel_open_forwarded_tcpip(address.clone(), u32::from(*port), "127.0.0.1", 0).await
                }
            };
            match channel {
                Ok(channel) => {
                    let mut channel = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut channel).await;
                }
                Err(e) => tracing::debug!("gateway: opening a channel back to the client: {e}"),
            }
        });
    }
}
