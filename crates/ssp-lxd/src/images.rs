//! Images: import a tarball (streamed, with progress), list, read, delete; and aliases.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use tokio_util::io::ReaderStream;

use crate::client::{header_value, seg, Body, Client};
use crate::error::{Error, Result};
use crate::instances::last_segment;
use crate::operation::Operation;
use crate::wire::{Image, ImageAlias, ImageUpload};

/// Bytes uploaded so far, shared with a progress display.
pub type UploadProgress = Arc<AtomicU64>;

impl Client {
    /// All images.
    pub async fn images(&self) -> Result<Vec<Image>> {
        self.get("/1.0/images?recursion=1").await
    }

    /// One image by fingerprint.
    pub async fn image(&self, fingerprint: &str) -> Result<Image> {
        self.get(&format!("/1.0/images/{}", seg(fingerprint)?)).await
    }

    /// Deletes an image.
    pub async fn delete_image(&self, fingerprint: &str) -> Result<Operation> {
        let path = format!("/1.0/images/{}", seg(fingerprint)?);
        self.operation(Method::DELETE, &path, Body::None, HeaderMap::new()).await
    }

    /// Imports a unified image tarball (metadata.yaml, templates/, rootfs/) from a file,
    /// streaming it; `progress` counts the bytes sent. The finished operation's metadata holds
    /// the new image's `fingerprint`.
    pub async fn import_image_file(
        &self,
        tarball: &Path,
        upload: &ImageUpload,
        progress: UploadProgress,
    ) -> Result<Operation> {
        let file = tokio::fs::File::open(tarball)
            .await
            .map_err(|source| Error::Io { what: format!("opening image tarball {}", tarball.display()), source })?;
        let counted = ReaderStream::with_capacity(file, 1 << 20).map(move |chunk| {
            if let Ok(bytes) = &chunk {
                progress.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            chunk
        });
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert("x-lxd-public", HeaderValue::from_static(if upload.public { "true" } else { "false" }));
        if !upload.filename.is_empty() {
            headers.insert("x-lxd-filename", header_value("X-LXD-filename", &upload.filename)?);
        }
        if !upload.properties.is_empty() {
            let encoded: Vec<String> = upload
                .properties
                .iter()
                .map(|(k, v)| format!("{}={}", seg(k).unwrap_or_default(), seg(v).unwrap_or_default()))
                .collect();
            headers.insert("x-lxd-properties", header_value("X-LXD-properties", &encoded.join("&"))?);
        }
        self.operation(Method::POST, "/1.0/images", Body::Raw(reqwest::Body::wrap_stream(counted)), headers).await
    }

    /// All alias names.
    pub async fn image_alias_names(&self) -> Result<Vec<String>> {
        let urls: Vec<String> = self.get("/1.0/images/aliases").await?;
        Ok(urls.iter().map(|u| last_segment(u)).collect())
    }

    /// One alias.
    pub async fn image_alias(&self, name: &str) -> Result<ImageAlias> {
        self.get(&format!("/1.0/images/aliases/{}", seg(name)?)).await
    }

    /// Creates alias `name` for image `fingerprint`.
    pub async fn create_image_alias(&self, name: &str, fingerprint: &str, description: &str) -> Result<()> {
        seg(name)?;
        let body = serde_json::json!({ "name": name, "target": fingerprint, "description": description });
        self.call(Method::POST, "/1.0/images/aliases", Some(body)).await
    }

    /// Points existing alias `name` at image `fingerprint`.
    pub async fn retarget_image_alias(&self, name: &str, fingerprint: &str, description: &str) -> Result<()> {
        let body = serde_json::json!({ "target": fingerprint, "description": description });
        self.call(Method::PUT, &format!("/1.0/images/aliases/{}", seg(name)?), Some(body)).await
    }

    /// Deletes alias `name` (the image stays).
    pub async fn delete_image_alias(&self, name: &str) -> Result<()> {
        self.call(Method::DELETE, &format!("/1.0/images/aliases/{}", seg(name)?), None::<()>).await
    }
}
