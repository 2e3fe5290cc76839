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

    /// When LXD refused because another operation holds the instance — "Instance is busy
    /// running a "update" operation", as an API error or as a failed operation — the kind of
    /// that operation (`update`, `stop`, `restart`, …; empty if LXD did not name it). LXD lets
    /// one state-changing operation hold an instance at a time, including ssp's own: callers
    /// wait (see [`crate::Client::when_idle`]) or say "busy", never "failed".
    pub fn busy_with(&self) -> Option<&str> {
        match self {
            Error::Api { message, .. } | Error::OperationFailed { message, .. } => busy_kind(message),
            _ => None,
        }
    }

    /// True when LXD said the instance is busy with another operation (see [`Error::busy_with`]).
    pub fn is_busy(&self) -> bool {
        self.busy_with().is_some()
    }

    pub(crate) fn protocol(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Protocol { what: what.into(), detail: detail.into() }
    }

    pub(crate) fn ws(what: impl Into<String>, source: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket { what: what.into(), source: Box::new(source) }
    }
}

/// The operation kind in LXD's "… is busy running a "KIND" operation" (LXD formats the kind
/// with Go's `%q`; the sentence may be wrapped in other words, e.g. "Failed to create instance
/// update operation: Instance is busy running a "stop" operation").
fn busy_kind(message: &str) -> Option<&str> {
    const MARK: &str = "is busy running a";
    let rest = message[message.find(MARK)? + MARK.len()..].trim_start();
    let rest = rest.strip_prefix("n ").unwrap_or(rest).trim_start();
    let (kind, after) = match rest.strip_prefix('"') {
        Some(quoted) => {
            let end = quoted.find('"')?;
            (&quoted[..end], quoted[end + 1..].trim_start())
        }
        None => match rest.split_once(' ') {
            Some((word, after)) if word != "operation" => (word, after.trim_start()),
            _ => ("", rest),
        },
    };
    after.starts_with("operation").then_some(kind)
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    fn api(message: &str) -> Error {
        Error::Api {
            method: "PUT".into(),
            path: "/1.0/instances/c1/state".into(),
            status: 400,
            message: message.into(),
        }
    }

    fn failed(message: &str) -> Error {
        Error::OperationFailed { id: "x".into(), description: "Restarting instance".into(), message: message.into() }
    }

    #[test]
    fn busy_is_recognised_in_every_form_lxd_uses() {
        let cases = [
            (api(r#"Instance is busy running a "update" operation"#), Some("update")),
            (failed(r#"Instance is busy running a "stop" operation"#), Some("stop")),
            (
                failed(r#"Failed to create instance restart operation: Instance is busy running a "start" operation"#),
                Some("start"),
            ),
            (api("Instance is busy running a restart operation"), Some("restart")),
            (api("Instance is busy running an operation"), Some("")),
            (api("Instance not found"), None),
            (failed("Command not found"), None),
            (api("busy"), None),
            (api(r#"Instance is busy running a "update"#), None),
        ];
        for (error, kind) in cases {
            assert_eq!(error.busy_with(), kind, "{error}");
            assert_eq!(error.is_busy(), kind.is_some(), "{error}");
        }
    }

    #[test]
    fn only_lxd_answers_can_be_busy() {
        let timeout = Error::Timeout {
            id: "x".into(),
            description: r#"Instance is busy running a "update" operation"#.into(),
            after: std::time::Duration::from_secs(1),
        };
        assert!(!timeout.is_busy());
    }
}
