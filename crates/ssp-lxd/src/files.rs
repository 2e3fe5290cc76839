//! Files inside an instance: push, pull, make directories, delete.
//!
//! LXD's file API writes the request body as the file; without
//! `Content-Type: application/octet-stream` LXD 5.0 writes an empty file and still answers
//! 200, so the header is always sent.

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Method;

use crate::client::{api_error, header_value, seg, Body, Client};
use crate::error::{Error, Result};

/// Ownership and mode of a pushed file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode {
    /// Owner uid inside the instance.
    pub uid: u32,
    /// Owner gid inside the instance.
    pub gid: u32,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
}

impl Default for FileMode {
    fn default() -> Self {
        Self { uid: 0, gid: 0, mode: 0o644 }
    }
}

/// What [`Client::pull_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// A regular file's bytes.
    File(Vec<u8>),
    /// A directory's entry names.
    Directory(Vec<String>),
    /// A symlink's target.
    Symlink(String),
}

/// A pulled file or directory with its ownership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledFile {
    /// Ownership and mode.
    pub mode: FileMode,
    /// Content.
    pub content: FileContent,
}

fn file_path(name: &str, path: &str) -> Result<String> {
    if !path.starts_with('/') {
        return Err(Error::protocol("file path", format!("{path:?} is not absolute")));
    }
    Ok(format!("/1.0/instances/{}/files?path={}", seg(name)?, seg(path)?))
}

fn ownership_headers(mode: FileMode, kind: &str) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert("x-lxd-uid", header_value("X-LXD-uid", &mode.uid.to_string())?);
    headers.insert("x-lxd-gid", header_value("X-LXD-gid", &mode.gid.to_string())?);
    headers.insert("x-lxd-mode", header_value("X-LXD-mode", &format!("{:04o}", mode.mode & 0o7777))?);
    headers.insert("x-lxd-type", header_value("X-LXD-type", kind)?);
    headers.insert("x-lxd-write", HeaderValue::from_static("overwrite"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    Ok(headers)
}

fn header_number(headers: &HeaderMap, name: &str, radix: u32) -> Option<u32> {
    u32::from_str_radix(headers.get(name)?.to_str().ok()?.trim(), radix).ok()
}

impl Client {
    /// Writes `data` to `path` in instance `name` (replacing it), with the given ownership.
    pub async fn push_file(
        &self,
        name: &str,
        path: &str,
        data: impl Into<reqwest::Body>,
        mode: FileMode,
    ) -> Result<()> {
        let url = file_path(name, path)?;
        self.raw(Method::POST, &url, Body::Raw(data.into()), ownership_headers(mode, "file")?).await.map(drop)
    }

    /// Creates directory `path` (its parent must exist).
    pub async fn create_directory(&self, name: &str, path: &str, mode: FileMode) -> Result<()> {
        let url = file_path(name, path)?;
        self.raw(Method::POST, &url, Body::Raw(reqwest::Body::from(Vec::new())), ownership_headers(mode, "directory")?)
            .await
            .map(drop)
    }

    /// Reads `path`: a file's bytes, a directory's entries or a symlink's target.
    pub async fn pull_file(&self, name: &str, path: &str) -> Result<PulledFile> {
        let url = file_path(name, path)?;
        let response = self.send(Method::GET, &url, Body::None, HeaderMap::new()).await?;
        if !response.status().is_success() {
            return Err(api_error("GET", &url, response).await);
        }
        let headers = response.headers().clone();
        let mode = FileMode {
            uid: header_number(&headers, "x-lxd-uid", 10).unwrap_or(0),
            gid: header_number(&headers, "x-lxd-gid", 10).unwrap_or(0),
            mode: header_number(&headers, "x-lxd-mode", 8).unwrap_or(0),
        };
        let kind = headers.get("x-lxd-type").and_then(|v| v.to_str().ok()).unwrap_or("file").to_owned();
        let body = response.bytes().await.map_err(|source| Error::Http { what: format!("GET {url}"), source })?;
        let content = match kind.as_str() {
            "directory" => {
                let envelope: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| Error::protocol(format!("GET {url}"), e.to_string()))?;
                let entries = serde_json::from_value(envelope.get("metadata").cloned().unwrap_or_default())
                    .map_err(|e| Error::protocol(format!("GET {url}"), e.to_string()))?;
                FileContent::Directory(entries)
            }
            "symlink" => FileContent::Symlink(String::from_utf8_lossy(&body).trim_end().to_owned()),
            _ => FileContent::File(body.to_vec()),
        };
        Ok(PulledFile { mode, content })
    }

    /// Deletes `path` (a file, or an empty directory).
    pub async fn delete_file(&self, name: &str, path: &str) -> Result<()> {
        let url = file_path(name, path)?;
        self.raw(Method::DELETE, &url, Body::None, HeaderMap::new()).await.map(drop)
    }
}
