//! The desktop calls of the API client.

use reqwest::Method;
use ssp_api as api;

use super::{path, ApiError, Client};

impl Client {
    /// `GET /containers/{owner}/{name}/desktop`.
    pub async fn desktop(&self, owner: &str, name: &str) -> Result<api::Desktop, ApiError> {
        self.get(&path(&["containers", owner, name, "desktop"])).await
    }

    /// `PUT /containers/{owner}/{name}/desktop`.
    pub async fn set_desktop(&self, owner: &str, name: &str, enabled: bool) -> Result<api::Desktop, ApiError> {
        self.call(Method::PUT, &path(&["containers", owner, name, "desktop"]), &api::DesktopChange { enabled }).await
    }

    /// `DELETE /containers/{owner}/{name}/desktop/session`.
    pub async fn end_desktop_session(&self, owner: &str, name: &str) -> Result<(), ApiError> {
        self.delete(&path(&["containers", owner, name, "desktop", "session"])).await
    }
}
