use serde::{Deserialize, Serialize};

use super::ConfigMap;

/// An image in the local store (`GET /1.0/images/{fingerprint}`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Image {
    /// SHA-256 fingerprint.
    pub fingerprint: String,
    /// Aliases pointing at it.
    #[serde(deserialize_with = "super::nullable")]
    pub aliases: Vec<ImageAliasRef>,
    /// Properties from its metadata (`os`, `release`, …).
    #[serde(deserialize_with = "super::nullable")]
    pub properties: ConfigMap,
    /// Architecture name.
    pub architecture: String,
    /// Size in bytes.
    pub size: i64,
    /// Whether unauthenticated clients may use it.
    pub public: bool,
    /// `container` or `virtual-machine`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Original file name.
    pub filename: String,
    /// Upload time.
    pub uploaded_at: String,
    /// Build time.
    pub created_at: String,
}

/// An alias as listed inside an [`Image`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ImageAliasRef {
    /// Alias name.
    pub name: String,
    /// Free text.
    pub description: String,
}

/// An alias (`GET /1.0/images/aliases/{name}`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ImageAlias {
    /// Alias name.
    pub name: String,
    /// Fingerprint it points at.
    pub target: String,
    /// Free text.
    pub description: String,
}

/// Options of an image upload.
#[derive(Debug, Clone, Default)]
pub struct ImageUpload {
    /// Original file name, kept by LXD for display.
    pub filename: String,
    /// Make it public.
    pub public: bool,
    /// Extra properties to set, on top of the metadata's.
    pub properties: ConfigMap,
}
