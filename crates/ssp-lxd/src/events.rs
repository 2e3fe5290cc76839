//! The events stream (`/1.0/events`): lifecycle, operation and logging events as they happen.

use futures_util::StreamExt;
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::wire::Event;

/// Which events to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Objects created, started, stopped, deleted, …
    Lifecycle,
    /// Background operations changing state.
    Operation,
    /// Daemon log lines.
    Logging,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Lifecycle => "lifecycle",
            EventKind::Operation => "operation",
            EventKind::Logging => "logging",
        }
    }
}

/// A subscription to the daemon's events. Dropping it unsubscribes.
pub struct Events {
    ws: WebSocketStream<UnixStream>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// The next event; `None` when the daemon closed the stream (e.g. it is shutting down).
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            let message = match self.ws.next().await? {
                Ok(m) => m,
                Err(e) => return Some(Err(Error::ws("events", e))),
            };
            let bytes = match message {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Close(_) => return None,
                _ => continue,
            };
            return Some(
                serde_json::from_slice(&bytes).map_err(|e| Error::protocol("reading an event", e.to_string())),
            );
        }
    }
}

impl Client {
    /// Subscribes to events of the given kinds (all kinds when empty). Events that happen
    /// after this returns are delivered.
    pub async fn events(&self, kinds: &[EventKind]) -> Result<Events> {
        let mut path = String::from("/1.0/events");
        if !kinds.is_empty() {
            let list: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            path.push_str("?type=");
            path.push_str(&list.join(","));
        }
        Ok(Events { ws: self.websocket(&path).await? })
    }
}
