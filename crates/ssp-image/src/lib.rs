//! Container images built offline from recipes, and their import into LXD.
//!
//! LXD's image servers are out of reach on our hosts, so every image is made here: `debian-12`
//! with `debootstrap` from Debian's own mirror, `busybox` from the host's static busybox. A
//! build yields an LXD *unified tarball* (`metadata.yaml`, `templates/`, `rootfs/` in one
//! plain tar). It is left uncompressed on purpose: on a 2-core host compressing a few hundred
//! megabytes costs far more time than the bytes cost on a local unix socket, and LXD unpacks
//! a plain tar fastest.
//!
//! Builds are cached by recipe content ([`Recipe::cache_key`]): a second build of an
//! unchanged recipe is instant, a changed recipe rebuilds. A failed build leaves nothing
//! behind — no scratch tree, no partial tarball in the cache.
//!
//! Building knows nothing of the LXD API; only [`install`] talks to LXD, through `ssp-lxd`.

mod busybox;
mod cache;
mod debootstrap;
mod error;
mod fsutil;
pub mod install;
mod metadata;
mod recipe;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use cache::cached;
pub use error::Error;
pub use recipe::{recipe, recipes, Builder, Recipe};

/// Where and how to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Finished tarballs and their sidecars.
    pub cache_dir: PathBuf,
    /// Scratch space for root trees (on the same filesystem as `cache_dir` ideally, so the
    /// finished tarball is renamed into place, not copied).
    pub work_dir: PathBuf,
    /// Debian mirror for `debootstrap`; `None` takes the host's apt sources.
    pub mirror: Option<String>,
}

/// Coarse progress of a build, for a spinner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A step began (`debootstrap bookworm`, `configuring`, `packing`).
    Step(String),
    /// The tarball is ready.
    Done,
}

/// A built image: its tarball in the cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuiltImage {
    /// Recipe name.
    pub recipe: String,
    /// The recipe's cache key when built.
    pub cache_key: String,
    /// The unified tarball.
    pub tarball: PathBuf,
    /// SHA-256 of the tarball: LXD's fingerprint for it.
    pub fingerprint: String,
    /// Tarball size in bytes.
    pub size: u64,
    /// Whether this came from the cache rather than a build just now.
    #[serde(skip)]
    pub from_cache: bool,
    /// The image properties written in its metadata.
    pub properties: BTreeMap<String, String>,
}

/// Builds `recipe` (or returns the cached build). Synchronous: call it from a blocking thread.
pub fn build(recipe: &Recipe, options: &BuildOptions, progress: &mut dyn FnMut(Progress)) -> Result<BuiltImage, Error> {
    fsutil::create_dir(&options.cache_dir)?;
    fsutil::create_dir(&options.work_dir)?;
    let _lock = fsutil::lock(&options.cache_dir.join(format!(".{}.lock", recipe.name)))?;
    if let Some(built) = cached(recipe, &options.cache_dir) {
        return Ok(built);
    }
    fsutil::require_space(&options.work_dir, recipe.space_needed())?;
    fsutil::require_space(&options.cache_dir, recipe.space_needed() / 2)?;
    let scratch = fsutil::Scratch::new(&options.work_dir, &recipe.name)?;
    let properties = metadata::properties(recipe);
    metadata::write(scratch.path(), recipe, &properties)?;
    let rootfs = scratch.path().join("rootfs");
    match recipe.builder() {
        Builder::Busybox => busybox::build_rootfs(recipe, &rootfs, progress)?,
        Builder::Debootstrap => debootstrap::build_rootfs(recipe, &rootfs, &scratch, options, progress)?,
    }
    progress(Progress::Step("packing the image".into()));
    let built = cache::store(recipe, scratch.path(), &options.cache_dir, properties)?;
    drop(scratch);
    progress(Progress::Done);
    Ok(built)
}
