//! Instances: create, list, read, change state, update, delete; and their snapshots.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;

use crate::client::{seg, Body, Client, Tagged};
use crate::error::Result;
use crate::operation::Operation;
use crate::wire::{
    Instance, InstancePut, InstanceSnapshot, InstanceSnapshotsPost, InstanceState, InstanceStatePut, InstancesPost,
};

/// A state change to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateAction {
    /// Boot it.
    Start,
    /// Shut it down (cleanly unless forced).
    Stop,
    /// Stop then start.
    Restart,
    /// Freeze all its processes.
    Freeze,
    /// Thaw them.
    Unfreeze,
}

impl StateAction {
    fn as_str(self) -> &'static str {
        match self {
            StateAction::Start => "start",
            StateAction::Stop => "stop",
            StateAction::Restart => "restart",
            StateAction::Freeze => "freeze",
            StateAction::Unfreeze => "unfreeze",
        }
    }
}

fn instance_path(name: &str) -> Result<String> {
    Ok(format!("/1.0/instances/{}", seg(name)?))
}

impl Client {
    /// All instances, with their config.
    pub async fn instances(&self) -> Result<Vec<Instance>> {
        self.get("/1.0/instances?recursion=1").await
    }

    /// Names of all instances (one cheap call).
    pub async fn instance_names(&self) -> Result<Vec<String>> {
        let urls: Vec<String> = self.get("/1.0/instances").await?;
        Ok(urls.iter().map(|u| last_segment(u)).collect())
    }

    /// One instance, with its ETag for [`Client::update_instance`].
    pub async fn instance(&self, name: &str) -> Result<Tagged<Instance>> {
        self.get_tagged(&instance_path(name)?).await
    }

    /// Creates an instance.
    pub async fn create_instance(&self, request: &InstancesPost) -> Result<Operation> {
        self.json_operation(Method::POST, "/1.0/instances", request, None).await
    }

    /// Replaces an instance's writable fields. With `etag`, fails (412) if it changed since read.
    pub async fn update_instance(&self, name: &str, put: &InstancePut, etag: Option<&str>) -> Result<Operation> {
        self.json_operation(Method::PUT, &instance_path(name)?, put, etag).await
    }

    /// Deletes an instance (it must be stopped).
    pub async fn delete_instance(&self, name: &str) -> Result<Operation> {
        self.operation(Method::DELETE, &instance_path(name)?, Body::None, HeaderMap::new()).await
    }

    /// Live state: status, processes, CPU, memory, network addresses and counters.
    pub async fn instance_state(&self, name: &str) -> Result<InstanceState> {
        self.get(&format!("{}/state", instance_path(name)?)).await
    }

    /// Asks for a state change. `timeout` bounds a clean stop (LXD fails the operation after
    /// it, or kills with `force`).
    pub async fn change_state(
        &self,
        name: &str,
        action: StateAction,
        timeout: Duration,
        force: bool,
    ) -> Result<Operation> {
        let put = InstanceStatePut {
            action: action.as_str().into(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            force,
            stateful: false,
        };
        self.json_operation(Method::PUT, &format!("{}/state", instance_path(name)?), &put, None).await
    }

    /// Starts an instance and waits for it.
    pub async fn start_instance(&self, name: &str, timeout: Duration) -> Result<()> {
        self.change_state(name, StateAction::Start, timeout, false).await?.wait(Some(timeout)).await.map(drop)
    }

    /// Stops an instance and waits for it: cleanly within `timeout`, else killed when `force`.
    pub async fn stop_instance(&self, name: &str, timeout: Duration, force: bool) -> Result<()> {
        let op = self.change_state(name, StateAction::Stop, timeout, force).await?;
        op.wait(Some(timeout + Duration::from_secs(30))).await.map(drop)
    }

    /// Restarts an instance and waits for it.
    pub async fn restart_instance(&self, name: &str, timeout: Duration, force: bool) -> Result<()> {
        let op = self.change_state(name, StateAction::Restart, timeout, force).await?;
        op.wait(Some(timeout + Duration::from_secs(30))).await.map(drop)
    }

    /// Snapshots of an instance.
    pub async fn snapshots(&self, name: &str) -> Result<Vec<InstanceSnapshot>> {
        self.get(&format!("{}/snapshots?recursion=1", instance_path(name)?)).await
    }

    /// One snapshot.
    pub async fn snapshot(&self, name: &str, snapshot: &str) -> Result<InstanceSnapshot> {
        self.get(&format!("{}/snapshots/{}", instance_path(name)?, seg(snapshot)?)).await
    }

    /// Takes a snapshot.
    pub async fn create_snapshot(&self, name: &str, snapshot: &str) -> Result<Operation> {
        let post = InstanceSnapshotsPost { name: snapshot.into(), stateful: false };
        self.json_operation(Method::POST, &format!("{}/snapshots", instance_path(name)?), &post, None).await
    }

    /// Restores an instance to a snapshot (LXD stops and restarts a running container).
    pub async fn restore_snapshot(&self, name: &str, snapshot: &str) -> Result<Operation> {
        seg(snapshot)?;
        let body = serde_json::json!({ "restore": snapshot });
        self.json_operation(Method::PUT, &instance_path(name)?, &body, None).await
    }

    /// Deletes a snapshot.
    pub async fn delete_snapshot(&self, name: &str, snapshot: &str) -> Result<Operation> {
        let path = format!("{}/snapshots/{}", instance_path(name)?, seg(snapshot)?);
        self.operation(Method::DELETE, &path, Body::None, HeaderMap::new()).await
    }
}

/// The object name at the end of an LXD URL such as `/1.0/instances/c1?project=default`.
pub(crate) fn last_segment(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path.rsplit('/').next().unwrap_or(path);
    percent_encoding::percent_decode_str(last).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::last_segment;

    #[test]
    fn names_come_from_urls() {
        assert_eq!(last_segment("/1.0/instances/c1"), "c1");
        assert_eq!(last_segment("/1.0/instances/c1?project=p"), "c1");
        assert_eq!(last_segment("/1.0/images/aliases/a%20b"), "a b");
    }
}
