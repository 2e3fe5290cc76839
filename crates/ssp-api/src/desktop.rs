//! Wire shapes of a container's desktop: `GET`/`PUT /api/v1/containers/{owner}/{name}/desktop`
//! (whether it is offered and how it stands), the single-use ticket of
//! `POST …/desktop/ticket`, and `DELETE …/desktop/session`. The websocket
//! `GET /api/v1/desktop?ticket=T` carries RFB (the VNC protocol) in binary frames, with the
//! security type *None*: ssp authenticated to the session's server already.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a container's desktop stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DesktopState {
    /// Not offered (and nothing of it is installed by ssp).
    Off,
    /// Offered; ssp is installing it inside (or removing it, when just disabled).
    SettingUp,
    /// Offered and installed: it opens.
    Ready,
    /// Installing it failed; `problem` says why. ssp tries again later.
    Failed,
}

/// The owner's desktop session, while one runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DesktopSession {
    /// Viewers connected now (browser tabs and SSH-forwarded VNC viewers).
    pub viewers: u32,
    /// Memory the session uses (its X server, desktop and programs), in bytes, where the
    /// container reports it.
    pub memory: Option<u64>,
    /// Seconds since the last viewer left; `null` while someone watches.
    pub idle_secs: Option<u64>,
    /// Seconds until it is ended for idleness; `null` while someone watches.
    pub ends_in_secs: Option<u64>,
}

/// `GET /api/v1/containers/{owner}/{name}/desktop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Desktop {
    /// Whether the container offers its owner a desktop.
    pub enabled: bool,
    /// How it stands.
    pub state: DesktopState,
    /// What failed, when `state` is `failed`.
    pub problem: Option<String>,
    /// The running session, if any.
    pub session: Option<DesktopSession>,
    /// A session nobody watches is ended after this many seconds (the admin's
    /// `[desktop] idle_timeout`).
    pub idle_timeout_secs: u64,
    /// The SSH command that gives a native VNC viewer the same desktop on `localhost:5901`.
    pub ssh_forward: String,
}

/// `PUT /api/v1/containers/{owner}/{name}/desktop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DesktopChange {
    /// Offer a desktop (installed inside by ssp) or stop offering it (its sessions end;
    /// installed packages and people's files stay).
    pub enabled: bool,
}

/// A single-use ticket for the desktop's websocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DesktopTicket {
    /// Present it once, within `expires_in_secs`, as `GET /api/v1/desktop?ticket=…`.
    pub ticket: String,
    /// Seconds the ticket stays valid (30).
    pub expires_in_secs: u64,
}
