//! Publishing images from instances, and instance and custom volume backups: make one,
//! stream it out, import one (streamed in).

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Method;

use crate::client::{api_error, header_value, seg, Body, Client};
use crate::error::Result;
use crate::operation::Operation;
use crate::wire::ConfigMap;

impl Client {
    /// Publishes snapshot `snapshot` of instance `name` as a new (private) image; the
    /// finished operation's metadata holds its `fingerprint`. A snapshot, not the live
    /// instance, so a running container need not stop.
    pub async fn publish_snapshot(&self, name: &str, snapshot: &str, properties: &ConfigMap) -> Result<Operation> {
        seg(name)?;
        seg(snapshot)?;
        let body = serde_json::json!({
            "source": { "type": "snapshot", "name": format!("{name}/{snapshot}") },
            "public": false,
            "properties": properties,
        });
        self.json_operation(Method::POST, "/1.0/images", &body, None).await
    }

    /// Starts a backup `backup` of instance `name` with its snapshots, in LXD's portable
    /// (not storage-optimized) format.
    pub async fn create_backup(&self, name: &str, backup: &str) -> Result<Operation> {
        let body = serde_json::json!({
            "name": backup,
            "instance_only": false,
            "optimized_storage": false,
            "expires_at": null,
        });
        seg(backup)?;
        self.json_operation(Method::POST, &format!("/1.0/instances/{}/backups", seg(name)?), &body, None).await
    }

    /// The backup's archive as a streaming response (nothing buffered).
    pub async fn export_backup(&self, name: &str, backup: &str) -> Result<reqwest::Response> {
        let path = format!("/1.0/instances/{}/backups/{}/export", seg(name)?, seg(backup)?);
        let response = self.send(Method::GET, &path, Body::None, HeaderMap::new()).await?;
        if !response.status().is_success() {
            return Err(api_error("GET", &path, response).await);
        }
        Ok(response)
    }

    /// Deletes a backup.
    pub async fn delete_backup(&self, name: &str, backup: &str) -> Result<Operation> {
        let path = format!("/1.0/instances/{}/backups/{}", seg(name)?, seg(backup)?);
        self.operation(Method::DELETE, &path, Body::None, HeaderMap::new()).await
    }

    /// Imports a backup archive (read from `file`, streamed) as instance `name` on `pool`.
    pub async fn import_backup(&self, file: tokio::fs::File, name: &str, pool: &str) -> Result<Operation> {
        seg(name)?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert("x-lxd-name", header_value("X-LXD-name", name)?);
        headers.insert("x-lxd-pool", header_value("X-LXD-pool", pool)?);
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        self.operation(Method::POST, "/1.0/instances", Body::Raw(reqwest::Body::wrap_stream(stream)), headers).await
    }

    /// Starts a backup `backup` of custom volume `volume` on `pool`, without its snapshots,
    /// in LXD's portable (not storage-optimized) format.
    pub async fn create_volume_backup(&self, pool: &str, volume: &str, backup: &str) -> Result<Operation> {
        let body = serde_json::json!({
            "name": backup,
            "volume_only": true,
            "optimized_storage": false,
            "expires_at": null,
        });
        seg(backup)?;
        let path = format!("/1.0/storage-pools/{}/volumes/custom/{}/backups", seg(pool)?, seg(volume)?);
        self.json_operation(Method::POST, &path, &body, None).await
    }

    /// A custom volume backup's archive as a streaming response (nothing buffered).
    pub async fn export_volume_backup(&self, pool: &str, volume: &str, backup: &str) -> Result<reqwest::Response> {
        let path = format!(
            "/1.0/storage-pools/{}/volumes/custom/{}/backups/{}/export",
            seg(pool)?,
            seg(volume)?,
            seg(backup)?
        );
        let response = self.send(Method::GET, &path, Body::None, HeaderMap::new()).await?;
        if !response.status().is_success() {
            return Err(api_error("GET", &path, response).await);
        }
        Ok(response)
    }

    /// Deletes a custom volume backup.
    pub async fn delete_volume_backup(&self, pool: &str, volume: &str, backup: &str) -> Result<Operation> {
        let path =
            format!("/1.0/storage-pools/{}/volumes/custom/{}/backups/{}", seg(pool)?, seg(volume)?, seg(backup)?);
        self.operation(Method::DELETE, &path, Body::None, HeaderMap::new()).await
    }
}
