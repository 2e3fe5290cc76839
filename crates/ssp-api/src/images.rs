//! Wire shapes of images and clones: publishing a container as an image, copying a
//! container, exporting and importing one.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /api/v1/images`: publish a container as an image of its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImagePublish {
    /// The container: `owner/name`, or `name` for the caller's own.
    pub container: String,
    /// The image's name (as `image` names: lowercase letters, digits, `-`, `.`).
    pub name: String,
    /// Every user may make containers from it (admins only).
    #[serde(default)]
    pub public: bool,
}

/// `POST /api/v1/containers/{owner}/{name}/copy`: a new container with this one's files
/// (not its snapshots), limits and image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerCopy {
    /// The new container's name.
    pub name: String,
    /// The new container's owner (admins; the source's owner unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `POST /api/v1/containers/import?owner=&name=` (admin): the body is an archive made by
/// `GET /api/v1/containers/{owner}/{name}/export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Who owns the imported container.
    pub owner: String,
    /// Its name.
    pub name: String,
    /// CPUs; the configured default unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory (`"16GiB"`); the configured default unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Root disk (`"50GiB"`); the configured default unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
}
