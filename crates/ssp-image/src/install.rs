//! Putting a built image into an LXD daemon: import under an alias, reuse what is already
//! there, and never leave a half-imported image behind.
//!
//! This is the only part of the crate that talks to LXD, and it does so only through the
//! typed `ssp-lxd` client.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ssp_lxd::wire::{Image, ImageUpload};
use ssp_lxd::Client;

use crate::{BuildOptions, BuiltImage, Progress, Recipe, CACHE_KEY_PROPERTY, RECIPE_PROPERTY};

/// What [`ensure_installed`] reports while it works.
#[derive(Debug)]
pub enum InstallStep {
    /// A build step (only on a cold build).
    Build(Progress),
    /// Uploading the tarball: bytes sent of total.
    Upload {
        /// Bytes sent so far.
        sent: u64,
        /// Tarball size.
        total: u64,
    },
    /// Upload done; LXD is unpacking and registering it.
    Registering,
}

/// The outcome of [`ensure_installed`].
#[derive(Debug, Clone)]
pub struct Installed {
    /// LXD fingerprint of the image.
    pub fingerprint: String,
    /// The alias now pointing at it.
    pub alias: String,
    /// Whether it was imported now (false: the daemon already had it).
    pub imported: bool,
    /// Whether it was built now (false: from the cache, or not needed).
    pub built: bool,
}

/// Why an install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Building the image failed.
    #[error(transparent)]
    Build(#[from] crate::Error),
    /// LXD refused a step.
    #[error("installing image {recipe} into LXD: {source}")]
    Lxd {
        /// Recipe name.
        recipe: String,
        /// What LXD said.
        #[source]
        source: ssp_lxd::Error,
    },
    /// The build thread died.
    #[error("the build of image {recipe} stopped unexpectedly: {detail}")]
    Crashed {
        /// Recipe name.
        recipe: String,
        /// Why.
        detail: String,
    },
}

/// Makes `alias` in `lxd` point at the image built from `recipe`: nothing to do when an image
/// with the recipe's cache key is there; else the cached tarball (built now if absent) is
/// imported. If any step after the upload fails, the new image is deleted again.
pub async fn ensure_installed(
    lxd: &Client,
    recipe: &Recipe,
    options: &BuildOptions,
    alias: &str,
    progress: &mut (dyn FnMut(InstallStep) + Send),
) -> Result<Installed, InstallError> {
    let lxd_err = |source| InstallError::Lxd { recipe: recipe.name.clone(), source };
    let key = recipe.cache_key();
    let images = lxd.images().await.map_err(lxd_err)?;
    if let Some(image) = images.iter().find(|i| i.properties.get(CACHE_KEY_PROPERTY) == Some(&key)) {
        point_alias(lxd, alias, image, recipe).await.map_err(lxd_err)?;
        return Ok(Installed {
            fingerprint: image.fingerprint.clone(),
            alias: alias.into(),
            imported: false,
            built: false,
        });
    }

    let (built, was_built) = match crate::cached(recipe, &options.cache_dir) {
        Some(built) => (built, false),
        None => (build_in_background(recipe, options, progress).await?, true),
    };
    let fingerprint = import_built(lxd, recipe, &built, alias, progress).await?;
    // Older builds of the same recipe that no alias names any more are dead weight.
    for old in images.iter().filter(|i| {
        i.properties.get(RECIPE_PROPERTY) == Some(&recipe.name) && i.fingerprint != fingerprint && i.aliases.is_empty()
    }) {
        if let Ok(op) = lxd.delete_image(&old.fingerprint).await {
            let _ = op.wait(Some(Duration::from_secs(60))).await;
        }
    }
    Ok(Installed { fingerprint, alias: alias.into(), imported: true, built: was_built })
}

/// Uploads `built` and points `alias` at it, whatever LXD already holds. If LXD refuses the
/// tarball nothing is left; if aliasing fails the new image is deleted again.
pub async fn import_built(
    lxd: &Client,
    recipe: &Recipe,
    built: &BuiltImage,
    alias: &str,
    progress: &mut (dyn FnMut(InstallStep) + Send),
) -> Result<String, InstallError> {
    let lxd_err = |source| InstallError::Lxd { recipe: recipe.name.clone(), source };
    let fingerprint = import(lxd, built, progress).await.map_err(lxd_err)?;
    let aliased = async {
        let image = lxd.image(&fingerprint).await?;
        point_alias(lxd, alias, &image, recipe).await
    };
    if let Err(e) = aliased.await {
        if let Ok(op) = lxd.delete_image(&fingerprint).await {
            let _ = op.wait(Some(Duration::from_secs(60))).await;
        }
        return Err(lxd_err(e));
    }
    Ok(fingerprint)
}

async fn build_in_background(
    recipe: &Recipe,
    options: &BuildOptions,
    progress: &mut (dyn FnMut(InstallStep) + Send),
) -> Result<BuiltImage, InstallError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (recipe_owned, options_owned) = (recipe.clone(), options.clone());
    let task = tokio::task::spawn_blocking(move || {
        crate::build(&recipe_owned, &options_owned, &mut |p| {
            let _ = tx.send(p);
        })
    });
    while let Some(step) = rx.recv().await {
        progress(InstallStep::Build(step));
    }
    match task.await {
        Ok(result) => Ok(result?),
        Err(e) => Err(InstallError::Crashed { recipe: recipe.name.clone(), detail: e.to_string() }),
    }
}

async fn import(
    lxd: &Client,
    built: &BuiltImage,
    progress: &mut (dyn FnMut(InstallStep) + Send),
) -> Result<String, ssp_lxd::Error> {
    let total = std::fs::metadata(&built.tarball).map(|m| m.len()).unwrap_or(0);
    let upload = ImageUpload {
        filename: built.tarball.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        public: false,
        properties: Default::default(),
    };
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = lxd.import_image_file(&built.tarball, &upload, sent.clone());
    tokio::pin!(start);
    let operation = loop {
        tokio::select! {
            result = &mut start => break result?,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                progress(InstallStep::Upload { sent: sent.load(Ordering::Relaxed), total });
            }
        }
    };
    progress(InstallStep::Upload { sent: total, total });
    progress(InstallStep::Registering);
    match operation.wait(Some(Duration::from_secs(600))).await {
        Ok(state) => Ok(state
            .metadata
            .get("fingerprint")
            .and_then(|f| f.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| built.fingerprint.clone())),
        // The same bytes are already there (under no matching cache key, e.g. imported by hand).
        Err(ssp_lxd::Error::OperationFailed { message, .. }) if message.contains("already exists") => {
            Ok(built.fingerprint.clone())
        }
        Err(e) => Err(e),
    }
}

async fn point_alias(lxd: &Client, alias: &str, image: &Image, recipe: &Recipe) -> Result<(), ssp_lxd::Error> {
    let description = recipe.description();
    match lxd.image_alias(alias).await {
        Ok(existing) if existing.target == image.fingerprint => Ok(()),
        Ok(_) => lxd.retarget_image_alias(alias, &image.fingerprint, description).await,
        Err(e) if e.is_not_found() => lxd.create_image_alias(alias, &image.fingerprint, description).await,
        Err(e) => Err(e),
    }
}
