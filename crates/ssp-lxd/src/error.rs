//! The one error type of the client: every failure names what was being done and, where the
//! daemon answered, carries the daemon's own message.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong talking to LXD.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be reached at all.
    #[error("cannot reach the LXD daemon at {socket}: {source}. Is it running? (`scripts/up` starts it)")]
    Connect {
        /// The unix socket that was tried.
        socket: PathBuf,
        /// What the transport said.
        #[source]
        source: reqwest::Error,
    },
    /// The daemon answered with an error response (`type: error`).
    #[error("LXD refused {method} {path}: {message} (HTTP {status})")]
    Api {
        /// HTTP method of the request.
        method: String,
        /// Request path, e.g. `/1.0/instances/c1`.
        path: String,
        /// The daemon's HTTP status (404 for missing objects, 409 for conflicts, …).
        status: u16,
        /// The daemon's message, unchanged.
        message: String,
    },
    /// A background operation ended in failure.
    #[error("LXD operation {id} ({description}) failed: {message}")]
    OperationFailed {
        /// Operation UUID.
        id: String,
        /// What LXD says the operation was doing.
        description: String,
        /// The daemon's `err` field.
        message: String,
    },
    /// A background operation was cancelled.
    #[error("LXD operation {id} ({description}) was cancelled")]
    OperationCancelled {
        /// Operation UUID.
        id: String,
        /// What LXD says the operation was doing.
        description: String,
    },
    /// We gave up waiting.
    #[error("timed out after {after:?} waiting for LXD operation {id} ({description})")]
    Timeout {
        /// Operation UUID.
        id: String,
        /// What LXD says the operation was doing.
        description: String,
        /// How long we waited.
        after: Duration,
    },
    /// The HTTP exchange failed after connecting.
    #[error("HTTP exchange with LXD failed during {what}: {source}")]
    Http {
        /// What was being done.
        what: String,
        /// What the transport said.
        #[source]
        source: reqwest::Error,
    },
    /// A websocket (exec, events) failed.
    #[error("LXD websocket {what} failed: {source}")]
    WebSocket {
        /// Which websocket.
        what: String,
        /// What tungstenite said.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The daemon sent something we could not understand.
    #[error("unexpected answer from LXD to {what}: {detail}")]
    Protocol {
        /// What was being done.
        what: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// A name that cannot be put in a request path.
    #[error("{name:?} is not a usable LXD object name")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// Local IO (reading a file to upload, the socket for websockets).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The HTTP status LXD answered with, if this is an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when LXD said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when LXD said the object already exists or the request conflicts with its state.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    pub(crate) fn protocol(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Protocol { what: what.into(), detail: detail.into() }
    }

    pub(crate) fn ws(what: impl Into<String>, source: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket { what: what.into(), source: Box::new(source) }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
