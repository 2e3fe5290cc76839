//! The build cache: `<recipe>-<key>.tar` and a JSON sidecar, written atomically, so a cached
//! entry is always whole and a second build is instant.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::recipe::{hex, Recipe};
use crate::BuiltImage;

fn stem(recipe: &Recipe) -> String {
    format!("{}-{}", recipe.name, &recipe.cache_key()[..16])
}

fn paths(recipe: &Recipe, cache_dir: &Path) -> (PathBuf, PathBuf) {
    let stem = stem(recipe);
    (cache_dir.join(format!("{stem}.tar")), cache_dir.join(format!("{stem}.json")))
}

/// The cached build of `recipe`, if there is a whole one.
pub fn cached(recipe: &Recipe, cache_dir: &Path) -> Option<BuiltImage> {
    let (tarball, sidecar) = paths(recipe, cache_dir);
    let mut built: BuiltImage = serde_json::from_slice(&std::fs::read(&sidecar).ok()?).ok()?;
    let size = std::fs::metadata(&tarball).ok()?.len();
    (built.cache_key == recipe.cache_key() && built.size == size).then(|| {
        built.tarball = tarball;
        built.from_cache = true;
        built
    })
}

/// Packs `dir` (metadata.yaml, templates/, rootfs/) into the cache and records it.
pub(crate) fn store(
    recipe: &Recipe,
    dir: &Path,
    cache_dir: &Path,
    properties: std::collections::BTreeMap<String, String>,
) -> Result<BuiltImage, Error> {
    let (tarball, sidecar) = paths(recipe, cache_dir);
    let partial = cache_dir.join(format!(".{}.tar.partial", stem(recipe)));
    // GNU tar keeps device nodes, hard links, setuid bits, xattrs and numeric owners exactly.
    let output = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(&partial)
        .args(["metadata.yaml", "templates", "rootfs"])
        .output()
        .map_err(Error::io("running tar for", &partial))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::Pack {
            recipe: recipe.name.clone(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let result = (|| {
        let (fingerprint, size) = sha256_file(&partial)?;
        let built = BuiltImage {
            recipe: recipe.name.clone(),
            cache_key: recipe.cache_key(),
            tarball: tarball.clone(),
            fingerprint,
            size,
            from_cache: false,
            properties,
        };
        sync_file(&partial)?;
        std::fs::rename(&partial, &tarball).map_err(Error::io("moving into the cache", &tarball))?;
        let json = serde_json::to_vec_pretty(&built).map_err(|e| Error::Pack { recipe: recipe.name.clone(), detail: e.to_string() })?;
        let partial_sidecar = sidecar.with_extension("json.partial");
        std::fs::write(&partial_sidecar, json).map_err(Error::io("writing", &partial_sidecar))?;
        sync_file(&partial_sidecar)?;
        std::fs::rename(&partial_sidecar, &sidecar).map_err(Error::io("moving into the cache", &sidecar))?;
        Ok(built)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    } else {
        remove_other_builds(recipe, cache_dir);
    }
    result
}

/// Older builds of the same recipe are dead weight once a new one is in place.
fn remove_other_builds(recipe: &Recipe, cache_dir: &Path) {
    let keep = stem(recipe);
    let prefix = format!("{}-", recipe.name);
    let Ok(entries) = std::fs::read_dir(cache_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(&prefix) else { continue };
        // `<recipe>-<16 hex>.tar|json` only: another recipe's name may extend this one's.
        let is_build = rest.len() > 17
            && rest[..16].bytes().all(|b| b.is_ascii_hexdigit())
            && matches!(&rest[16..], ".tar" | ".json");
        if is_build && !name.starts_with(&keep) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn sync_file(path: &Path) -> Result<(), Error> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(Error::io("syncing", path))
}

fn sha256_file(path: &Path) -> Result<(String, u64), Error> {
    let mut file = std::fs::File::open(path).map_err(Error::io("reading", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(Error::io("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_found_again_and_old_builds_go() {
        let cache = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        for sub in ["templates", "rootfs/bin"] {
            std::fs::create_dir_all(tree.path().join(sub)).unwrap();
        }
        std::fs::write(tree.path().join("metadata.yaml"), "{}").unwrap();
        let recipe = crate::recipe("busybox").unwrap();
        assert!(cached(&recipe, cache.path()).is_none());
        let stale = cache.path().join("busybox-0123456789abcdef.tar");
        let other = cache.path().join("busybox-extra-0123456789abcdef.tar");
        std::fs::write(&stale, "old").unwrap();
        std::fs::write(&other, "another recipe").unwrap();

        let built = store(&recipe, tree.path(), cache.path(), Default::default()).unwrap();
        let again = cached(&recipe, cache.path()).unwrap();
        assert!(again.from_cache && !built.from_cache);
        assert_eq!(again.fingerprint, built.fingerprint);
        assert_eq!(built.fingerprint, sha256_file(&built.tarball).unwrap().0);
        assert!(!stale.exists(), "an old build of the recipe is removed");
        assert!(other.exists(), "another recipe's build is kept");

        // A truncated tarball is not a cache hit.
        std::fs::write(&built.tarball, "x").unwrap();
        assert!(cached(&recipe, cache.path()).is_none());
    }
}
