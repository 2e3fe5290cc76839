//! Agent forwarding (`ssh -A`): a unix socket inside the container that leads back to the
//! client's agent. An LXD `proxy` device (`bind=instance`) listens on
//! `/run/ssp-agent-ID.sock` inside, owned by the owner's account (mode 0600), and connects
//! to a socket the gateway listens on under its state folder; each connection there becomes
//! an `auth-agent@openssh.com` channel to the client. The device lives as long as the
//! session: it is named `gateway-…`, which the reconciler leaves alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ssp_lxd::wire::ConfigMap;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

/// The prefix of the LXD devices the gateway adds for a session (and removes after it).
pub const DEVICE_PREFIX: &str = "gateway-";

/// A forwarded agent, for one session.
pub(crate) struct Agent {
    lxd: ssp_lxd::Client,
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
        instance: &str,
        dir: &Path,
        uid: u32,
        handle: russh::server::Handle,
    ) -> Result<Self, String> {
        let mut id = [0u8; 6];
        getrandom::fill(&mut id).map_err(|e| e.to_string())?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let host_socket = dir.join(format!("agent-{id}.sock"));
        let listener =
            UnixListener::bind(&host_socket).map_err(|e| format!("listening on {}: {e}", host_socket.display()))?;
        let relay = tokio::spawn(relay(listener, handle));
        let inside = format!("/run/ssp-agent-{id}.sock");
        let device = format!("{DEVICE_PREFIX}agent-{id}");
        let config: ConfigMap = [
            ("type", "proxy".to_string()),
            ("bind", "instance".into()),
            ("listen", format!("unix:{inside}")),
            ("connect", format!("unix:{}", host_socket.display())),
            ("uid", uid.to_string()),
            ("gid", uid.to_string()),
            ("mode", "0600".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let agent = Self { lxd: lxd.clone(), instance: instance.into(), device, host_socket, inside, relay };
        if let Err(e) = agent.change(Some(config)).await {
            agent.close().await;
            return Err(e);
        }
        Ok(agent)
    }

    /// Adds (`Some`) or removes (`None`) the device, retrying when someone else (the
    /// reconciler) changed the instance in between.
    async fn change(&self, config: Option<ConfigMap>) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..5 {
            let current = self.lxd.instance(&self.instance).await.map_err(|e| e.to_string())?;
            let mut put = current.value.to_put();
            match &config {
                Some(config) => {
                    put.devices.insert(self.device.clone(), config.clone());
                }
                None => {
                    if put.devices.remove(&self.device).is_none() {
                        return Ok(());
                    }
                }
            }
            match self.lxd.update_instance(&self.instance, &put, current.etag.as_deref()).await {
                Ok(operation) => match operation.wait(Some(Duration::from_secs(60))).await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("changing device {}: {last}", self.device))
    }

    /// Removes the device and the socket.
    pub(crate) async fn close(self) {
        self.relay.abort();
        if let Err(e) = self.change(None).await {
            tracing::warn!("gateway: removing the agent device of {}: {e}", self.instance);
        }
        let _ = std::fs::remove_file(&self.host_socket);
    }
}

/// Each connection to the host socket becomes an agent channel to the client.
async fn relay(listener: UnixListener, handle: russh::server::Handle) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { return };
        let handle = handle.clone();
        tokio::spawn(async move {
            match handle.channel_open_agent().await {
                Ok(channel) => {
                    let mut channel = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut channel).await;
                }
                Err(e) => tracing::debug!("gateway: opening an agent channel: {e}"),
            }
        });
    }
}
