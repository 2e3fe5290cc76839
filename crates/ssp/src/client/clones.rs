//! The API client's calls for images, copies and backups (of containers, home volumes and
//! the state). Archives stream to and from files:
//! a container's backup may be many gigabytes and is never held in memory.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use ssp_api as api;
use tokio::io::AsyncWriteExt;

use super::{path, ApiError, Client, REQUEST_TIMEOUT};

/// Publishing, exporting and importing move whole root file systems.
const SLOW: Duration = Duration::from_secs(3600);

impl Client {
    /// `POST /images`.
    pub async fn publish_image(&self, publish: &api::ImagePublish) -> Result<api::Image, ApiError> {
        Ok(self.send(Method::POST, &path(&["images"]), Some(publish), |r| r.timeout(SLOW)).await?.1)
    }

    /// `DELETE /images/{owner}/{name}`.
    pub async fn delete_image(&self, owner: &str, name: &str) -> Result<(), ApiError> {
        self.exchange(Method::DELETE, &path(&["images", owner, name]), None::<&()>, |r| r.timeout(SLOW)).await.map(drop)
    }

    /// `POST /containers/{owner}/{name}/copy`.
    pub async fn copy_container(
        &self,
        owner: &str,
        name: &str,
        copy: &api::ContainerCopy,
    ) -> Result<api::Container, ApiError> {
        let path = path(&["containers", owner, name, "copy"]);
        Ok(self.send(Method::POST, &path, Some(copy), |r| r.timeout(REQUEST_TIMEOUT)).await?.1)
    }

    /// Streams `GET path` into the file `to` (made new; removed again if the transfer
    /// fails); returns the bytes written.
    async fn download(&self, path: &str, to: &Path) -> Result<u64, ApiError> {
        let mut request = self.http.request(Method::GET, format!("{}{path}", self.base)).timeout(SLOW);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let response = Self::checked(response).await?;
        let local =
            |e: std::io::Error| ApiError::Local { what: format!("writing {}", to.display()), detail: e.to_string() };
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(to).await.map_err(local)?;
        let mut written = 0u64;
        let mut stream = response.bytes_stream();
        let result = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.transport_error(&e))?;
                file.write_all(&chunk).await.map_err(local)?;
                written += chunk.len() as u64;
            }
            file.sync_all().await.map_err(local)
        }
        .await;
        if let Err(e) = result {
            std::fs::remove_file(to).ok();
            return Err(e);
        }
        Ok(written)
    }

    /// `GET /containers/{owner}/{name}/export` into the file `to`.
    pub async fn export_container(&self, owner: &str, name: &str, to: &Path) -> Result<u64, ApiError> {
        self.download(&path(&["containers", owner, name, "export"]), to).await
    }

    /// `GET /users/{user}/home/export` into the file `to`.
    pub async fn export_home(&self, user: &str, to: &Path) -> Result<u64, ApiError> {
        self.download(&path(&["users", user, "home", "export"]), to).await
    }

    /// `GET /admin/backup` into the file `to`.
    pub async fn state_backup(&self, to: &Path) -> Result<u64, ApiError> {
        self.download(&path(&["admin", "backup"]), to).await
    }

    /// `POST /containers/import?owner=&name=` with the archive `from` as the body, streamed.
    /// Only admins may import, and the daemon says so before it reads the body — which would
    /// break the upload midway: ask who we are first.
    pub async fn import_container(&self, query: &api::ImportQuery, from: &Path) -> Result<api::Container, ApiError> {
        if self.info().await?.role != api::Role::Admin {
            return Err(ApiError::Api {
                status: reqwest::StatusCode::FORBIDDEN,
                code: "forbidden".into(),
                message: "only an admin can import containers".into(),
            });
        }
        let local =
            |e: std::io::Error| ApiError::Local { what: format!("reading {}", from.display()), detail: e.to_string() };
        let file = tokio::fs::File::open(from).await.map_err(local)?;
        let length = file.metadata().await.map_err(local)?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        let mut request = self
            .http
            .request(Method::POST, format!("{}{}", self.base, path(&["containers", "import"])))
            .query(query)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", length)
            .header("Accept", "application/json")
            .timeout(SLOW)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let response = Self::checked(response).await?;
        let bytes = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Protocol {
            url: self.url(),
            what: "POST /containers/import".into(),
            detail: e.to_string(),
        })
    }

    /// The response if it succeeded, else the error it carries.
    async fn checked(response: reqwest::Response) -> Result<reqwest::Response, ApiError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<api::ErrorBody>(&bytes) {
            Ok(body) => ApiError::Api { status, code: body.error.code, message: body.error.message },
            Err(_) => ApiError::Api {
                status,
                code: "error".into(),
                message: format!("the ssp daemon answered {status}: {}", String::from_utf8_lossy(&bytes).trim()),
            },
        })
    }
}
