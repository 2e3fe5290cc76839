//! The storage calls of the API client: snapshots, schedules, shares, home volumes.

use reqwest::Method;
use ssp_api as api;

use super::{path, ApiError, Client, REQUEST_TIMEOUT};

/// Restores and snapshots of a big container take a while: allow them longer.
const SLOW: std::time::Duration = std::time::Duration::from_secs(900);

impl Client {
    /// `GET /containers/{owner}/{name}/snapshots`.
    pub async fn snapshots(&self, owner: &str, name: &str) -> Result<Vec<api::Snapshot>, ApiError> {
        self.get(&path(&["containers", owner, name, "snapshots"])).await
    }

    /// `POST /containers/{owner}/{name}/snapshots`.
    pub async fn create_snapshot(
        &self,
        owner: &str,
        name: &str,
        create: &api::SnapshotCreate,
    ) -> Result<api::Snapshot, ApiError> {
        let path = path(&["containers", owner, name, "snapshots"]);
        Ok(self.send(Method::POST, &path, Some(create), |r| r.timeout(SLOW)).await?.1)
    }

    /// `PATCH /containers/{owner}/{name}/snapshots/{snapshot}`.
    pub async fn update_snapshot(
        &self,
        owner: &str,
        name: &str,
        snapshot: &str,
        update: &api::SnapshotUpdate,
    ) -> Result<api::Snapshot, ApiError> {
        self.call(Method::PATCH, &path(&["containers", owner, name, "snapshots", snapshot]), update).await
    }

    /// `DELETE /containers/{owner}/{name}/snapshots/{snapshot}`.
    pub async fn delete_snapshot(&self, owner: &str, name: &str, snapshot: &str) -> Result<(), ApiError> {
        let path = path(&["containers", owner, name, "snapshots", snapshot]);
        self.exchange(Method::DELETE, &path, None::<&()>, |r| r.timeout(SLOW)).await.map(|_| ())
    }

    /// `POST /containers/{owner}/{name}/snapshots/{snapshot}/restore`.
    pub async fn restore_snapshot(&self, owner: &str, name: &str, snapshot: &str) -> Result<api::Snapshot, ApiError> {
        let path = path(&["containers", owner, name, "snapshots", snapshot, "restore"]);
        Ok(self.send(Method::POST, &path, Some(&serde_json::json!({})), |r| r.timeout(SLOW)).await?.1)
    }

    /// `GET /containers/{owner}/{name}/schedule`.
    pub async fn schedule(&self, owner: &str, name: &str) -> Result<api::SnapshotSchedule, ApiError> {
        self.get(&path(&["containers", owner, name, "schedule"])).await
    }

    /// `PUT /containers/{owner}/{name}/schedule`.
    pub async fn set_schedule(
        &self,
        owner: &str,
        name: &str,
        schedule: &api::SnapshotSchedule,
    ) -> Result<api::SnapshotSchedule, ApiError> {
        self.call(Method::PUT, &path(&["containers", owner, name, "schedule"]), schedule).await
    }

    /// `DELETE /containers/{owner}/{name}/schedule`.
    pub async fn remove_schedule(&self, owner: &str, name: &str) -> Result<(), ApiError> {
        self.delete(&path(&["containers", owner, name, "schedule"])).await
    }

    /// `POST /snapshots/run` (admin).
    pub async fn run_schedules(&self) -> Result<api::ScheduleReport, ApiError> {
        Ok(self
            .send(Method::POST, &path(&["snapshots", "run"]), Some(&serde_json::json!({})), |r| r.timeout(SLOW))
            .await?
            .1)
    }

    /// `GET /shares` (admin).
    pub async fn shares(&self) -> Result<Vec<api::Share>, ApiError> {
        self.get(&path(&["shares"])).await
    }

    /// `POST /shares` (admin).
    pub async fn create_share(&self, create: &api::ShareCreate) -> Result<api::Share, ApiError> {
        self.call(Method::POST, &path(&["shares"]), create).await
    }

    /// `DELETE /shares/{share}` (admin).
    pub async fn delete_share(&self, name: &str) -> Result<(), ApiError> {
        self.exchange(Method::DELETE, &path(&["shares", name]), None::<&()>, |r| r.timeout(SLOW)).await.map(|_| ())
    }

    /// `GET /users/{user}/home`.
    pub async fn home(&self, user: &str) -> Result<api::Home, ApiError> {
        self.get(&path(&["users", user, "home"])).await
    }

    /// `PUT /users/{user}/home`.
    pub async fn create_home(&self, user: &str, create: &api::HomeCreate) -> Result<api::Home, ApiError> {
        self.call(Method::PUT, &path(&["users", user, "home"]), create).await
    }

    /// `DELETE /users/{user}/home`.
    pub async fn delete_home(&self, user: &str) -> Result<api::Home, ApiError> {
        Ok(self
            .send(Method::DELETE, &path(&["users", user, "home"]), None::<&()>, |r| r.timeout(REQUEST_TIMEOUT))
            .await?
            .1)
    }
}
