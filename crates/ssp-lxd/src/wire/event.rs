use serde::Deserialize;

/// One message from the events websocket (`/1.0/events`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Event {
    /// `lifecycle`, `operation` or `logging`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When (RFC 3339).
    pub timestamp: String,
    /// Event body; for `lifecycle`: `action`, `source`, `context`.
    pub metadata: serde_json::Value,
    /// Project.
    pub project: String,
    /// Cluster member.
    pub location: String,
}

impl Event {
    /// For lifecycle events: the action, e.g. `instance-started`.
    pub fn lifecycle_action(&self) -> Option<&str> {
        (self.kind == "lifecycle").then(|| self.metadata.get("action")?.as_str()).flatten()
    }

    /// For lifecycle events: the object's URL, e.g. `/1.0/instances/c1`.
    pub fn lifecycle_source(&self) -> Option<&str> {
        (self.kind == "lifecycle").then(|| self.metadata.get("source")?.as_str()).flatten()
    }
}
