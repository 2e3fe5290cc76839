use serde::Deserialize;

/// A background operation (`/1.0/operations/{id}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OperationState {
    /// UUID.
    pub id: String,
    /// `task`, `websocket` or `token`.
    pub class: String,
    /// Human description, e.g. `Creating instance`.
    pub description: String,
    /// `Running`, `Success`, `Failure`, `Cancelled`, …
    pub status: String,
    /// 100 running … 200 success, 400 failure, 401 cancelled.
    pub status_code: u16,
    /// Objects the operation touches, by kind.
    #[serde(deserialize_with = "super::nullable")]
    pub resources: std::collections::BTreeMap<String, Vec<String>>,
    /// Operation-specific data (exec fds and return code, image fingerprint, …).
    pub metadata: serde_json::Value,
    /// Whether `DELETE` can cancel it.
    pub may_cancel: bool,
    /// The error if it failed.
    pub err: String,
}

impl OperationState {
    /// Whether the operation has finished, one way or another.
    pub fn is_done(&self) -> bool {
        self.status_code >= 200
    }
}
