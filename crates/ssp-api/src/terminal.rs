//! Wire shapes of the web terminal: the ticket request and answer of
//! `POST /api/v1/containers/{owner}/{name}/terminal`, and the JSON text frames of the
//! websocket `GET /api/v1/terminal?ticket=T` (binary frames are the terminal's bytes: output
//! from the server, keystrokes from the client).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long a ticket may wait before it is presented, in seconds.
pub const TERMINAL_TICKET_SECS: u64 = 30;

/// `POST /api/v1/containers/{owner}/{name}/terminal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TerminalRequest {
    /// The terminal's width in columns (at least 1).
    pub cols: u16,
    /// Its height in rows (at least 1).
    pub rows: u16,
    /// A session to re-attach to, as an earlier answer named it. Without one — or when it
    /// has ended or is not this caller's in this container — a new session is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// A single-use ticket for the terminal's websocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TerminalTicket {
    /// Present it once, within `expires_in_secs`, as `GET /api/v1/terminal?ticket=…`.
    pub ticket: String,
    /// The session the websocket attaches to (the asked one if it is still live, else a new
    /// one); ask the next ticket with it to re-attach after a reload.
    pub session: String,
    /// Seconds the ticket stays valid (30).
    pub expires_in_secs: u64,
}

/// A text frame from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TerminalClientMessage {
    /// The terminal's new size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// A signal for the shell: INT (2), TERM (15), HUP (1), QUIT (3), KILL (9), USR1 (10),
    /// USR2 (12); any other number is refused.
    Signal {
        /// The signal's number.
        signal: i32,
    },
}

/// A text frame from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TerminalServerMessage {
    /// The shell ended with this code (128+N when signal N killed it; 255 when no shell
    /// could be started, after a line that says why); the socket closes next.
    Exit {
        /// Its exit code.
        code: i32,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_the_documented_json() {
        let resize: TerminalClientMessage = serde_json::from_str(r#"{"type":"resize","cols":120,"rows":40}"#).unwrap();
        assert_eq!(resize, TerminalClientMessage::Resize { cols: 120, rows: 40 });
        let signal: TerminalClientMessage = serde_json::from_str(r#"{"type":"signal","signal":2}"#).unwrap();
        assert_eq!(signal, TerminalClientMessage::Signal { signal: 2 });
        let exit = serde_json::to_string(&TerminalServerMessage::Exit { code: 0 }).unwrap();
        assert_eq!(exit, r#"{"type":"exit","code":0}"#);
        let request: TerminalRequest = serde_json::from_str(r#"{"cols":80,"rows":24}"#).unwrap();
        assert_eq!(request.session, None);
    }
}
