//! The build cache: `<cache_dir>/<recipe>-<cache_key[..16]>.tar` and a JSON sidecar beside it
//! (`.json`: fingerprint, size, properties), so a cache hit costs two small reads and no
//! hashing.
//!
//! Both are written to hidden `.partial` files first, synced, then renamed into place, the
//! tarball before the sidecar: a sidecar therefore always describes a whole tarball, and a
//! crash leaves at most a `.partial` file, which the next build of the recipe removes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::recipe::{hex, valid_name, Recipe};
use crate::BuiltImage;

fn stem(recipe: &Recipe) -> String {
    format!("{}-{}", recipe.name, &recipe.cache_key()[..16])
}

fn tarball_path(recipe: &Recipe, cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("{}.tar", stem(recipe)))
}

fn sidecar_path(recipe: &Recipe, cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("{}.json", stem(recipe)))
}

/// The cached build of `recipe` in `cache_dir`, if there is a whole one for its current
/// cache key. Reads the sidecar and checks the tarball's size; does not rehash the tarball.
pub fn cached(recipe: &Recipe, cache_dir: &Path) -> Option<BuiltImage> {
    // `Recipe::name` is public: never let an altered one address a path outside the cache.
    if !valid_name(&recipe.name) {
        return None;
    }
    let tarball = tarball_path(recipe, cache_dir);
    let mut built: BuiltImage = serde_json::from_slice(&std::fs::read(sidecar_path(recipe, cache_dir)).ok()?).ok()?;
    let size = std::fs::metadata(&tarball).ok()?.len();
    let whole = built.recipe == recipe.name && built.cache_key == recipe.cache_key() && built.size == size;
    whole.then(|| {
        // The cache folder may have moved since the sidecar was written.
        built.tarball = tarball;
        built.from_cache = true;
        built
    })
}

/// A tarball being written into the cache: a hidden `.partial` file that hashes what passes
/// through it, and is deleted on drop unless [`Tarball::commit`]ted.
#[derive(Debug)]
pub(crate) struct Tarball {
    path: PathBuf,
    file: File,
    hasher: Sha256,
    size: u64,
    committed: bool,
}

impl Tarball {
    /// Starts the partial tarball of `recipe` in `cache_dir`.
    pub(crate) fn create(recipe: &Recipe, cache_dir: &Path) -> Result<Self, Error> {
        let path = cache_dir.join(format!(".{}.tar.partial", stem(recipe)));
        let file = File::create(&path).map_err(Error::io("creating", &path))?;
        Ok(Self { path, file, hasher: Sha256::new(), size: 0, committed: false })
    }

    /// Where it is being written.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs the tarball and renames it into place, then writes its sidecar the same way and
    /// removes the recipe's builds for other cache keys.
    pub(crate) fn commit(
        mut self,
        recipe: &Recipe,
        cache_dir: &Path,
        properties: BTreeMap<String, String>,
    ) -> Result<BuiltImage, Error> {
        let tarball = tarball_path(recipe, cache_dir);
        self.file.flush().and_then(|()| self.file.sync_all()).map_err(Error::io("syncing", &self.path))?;
        let built = BuiltImage {
            recipe: recipe.name.clone(),
            cache_key: recipe.cache_key(),
            tarball: tarball.clone(),
            fingerprint: hex(&self.hasher.clone().finalize()),
            size: self.size,
            from_cache: false,
            properties,
        };
        std::fs::rename(&self.path, &tarball).map_err(Error::io("moving the tarball into the cache as", &tarball))?;
        self.committed = true;

        let sidecar = sidecar_path(recipe, cache_dir);
        let partial = cache_dir.join(format!(".{}.json.partial", stem(recipe)));
        let json = serde_json::to_vec_pretty(&built)
            .map_err(|e| Error::Pack { recipe: recipe.name.clone(), detail: format!("describing the build: {e}") })?;
        let written = (|| {
            let mut file = File::create(&partial)?;
            file.write_all(&json)?;
            file.sync_all()
        })();
        if let Err(e) = written.and_then(|()| std::fs::rename(&partial, &sidecar)) {
            let _ = std::fs::remove_file(&partial);
            // Without its sidecar the tarball is not a cache entry; do not leave it behind.
            let _ = std::fs::remove_file(&tarball);
            return Err(Error::io("writing", &sidecar)(e));
        }
        // The renames are durable once the folder itself is synced.
        File::open(cache_dir).and_then(|dir| dir.sync_all()).map_err(Error::io("syncing", cache_dir))?;
        remove_other_builds(recipe, cache_dir);
        Ok(built)
    }
}

impl Write for Tarball {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Tarball {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `file_name` is one of `recipe`'s cache files (`<recipe>-<16 hex>.tar|.json`, or
/// their hidden `.partial` forms); returns its 16-hex key part.
fn build_key<'a>(recipe: &Recipe, file_name: &'a str) -> Option<&'a str> {
    let name = file_name.strip_prefix('.').and_then(|n| n.strip_suffix(".partial")).unwrap_or(file_name);
    let rest = name.strip_prefix(&recipe.name)?.strip_prefix('-')?;
    // Another recipe's name may extend this one's (`debian-12` and `debian-12-gpu`): only an
    // exact `<16 hex>.<ext>` tail belongs to this recipe.
    let (key, ext) = rest.split_once('.')?;
    (key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit()) && matches!(ext, "tar" | "json")).then_some(key)
}

/// Removes `recipe`'s builds for other cache keys: after a new build they are dead weight.
fn remove_other_builds(recipe: &Recipe, cache_dir: &Path) {
    let key = recipe.cache_key();
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if build_key(recipe, &name).is_some_and(|k| k != &key[..16]) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Removes `recipe`'s `.partial` files, left by a build that was killed. Call it holding the
/// recipe's lock, so no build is writing them.
pub(crate) fn remove_partials(recipe: &Recipe, cache_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".partial") && build_key(recipe, &name).is_some() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn store(recipe: &Recipe, cache_dir: &Path, content: &[u8]) -> BuiltImage {
        let mut tarball = Tarball::create(recipe, cache_dir).unwrap();
        tarball.write_all(content).unwrap();
        tarball.commit(recipe, cache_dir, BTreeMap::from([("os".into(), "BusyBox".into())])).unwrap()
    }

    #[test]
    fn miss_then_hit_and_old_builds_go() {
        let cache = tempfile::tempdir().unwrap();
        let recipe = crate::recipe("busybox").unwrap();
        assert!(cached(&recipe, cache.path()).is_none(), "empty cache");

        let stale = cache.path().join("busybox-0123456789abcdef.tar");
        let stale_sidecar = cache.path().join("busybox-0123456789abcdef.json");
        let other_recipe = cache.path().join("busybox-extra-0123456789abcdef.tar");
        let unrelated = cache.path().join("busybox-notes.txt");
        for path in [&stale, &stale_sidecar, &other_recipe, &unrelated] {
            std::fs::write(path, "old").unwrap();
        }

        let built = store(&recipe, cache.path(), b"fake tarball");
        assert!(!built.from_cache);
        assert_eq!(built.tarball, cache.path().join(format!("busybox-{}.tar", &recipe.cache_key()[..16])));
        assert_eq!(std::fs::read(&built.tarball).unwrap(), b"fake tarball");
        // sha256("fake tarball")
        assert_eq!(built.fingerprint, hex(&Sha256::digest(b"fake tarball")));
        assert_eq!(built.size, 12);

        let again = cached(&recipe, cache.path()).unwrap();
        assert!(again.from_cache);
        assert_eq!(
            (&again.fingerprint, &again.cache_key, &again.properties),
            (&built.fingerprint, &built.cache_key, &built.properties)
        );

        assert!(!stale.exists() && !stale_sidecar.exists(), "the recipe's old build is removed");
        assert!(other_recipe.exists() && unrelated.exists(), "other files stay");
        let partials = std::fs::read_dir(cache.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .count();
        assert_eq!(partials, 0);
    }

    #[test]
    fn damaged_or_foreign_entries_are_misses() {
        let cache = tempfile::tempdir().unwrap();
        let recipe = crate::recipe("busybox").unwrap();
        let built = store(&recipe, cache.path(), b"fake tarball");

        // A tarball of another size than recorded (truncated, replaced) is not a hit.
        std::fs::write(&built.tarball, "x").unwrap();
        assert!(cached(&recipe, cache.path()).is_none());
        std::fs::write(&built.tarball, "fake tarball").unwrap();
        assert!(cached(&recipe, cache.path()).is_some());

        // Neither is a tarball without its sidecar, nor one with an unreadable sidecar.
        let sidecar = sidecar_path(&recipe, cache.path());
        std::fs::write(&sidecar, "{").unwrap();
        assert!(cached(&recipe, cache.path()).is_none());
        std::fs::remove_file(&sidecar).unwrap();
        assert!(cached(&recipe, cache.path()).is_none());

        // Nor another recipe's key.
        let debian = crate::recipe("debian-12").unwrap();
        assert!(cached(&debian, cache.path()).is_none());
    }

    #[test]
    fn an_abandoned_tarball_leaves_nothing() {
        let cache = tempfile::tempdir().unwrap();
        let recipe = crate::recipe("busybox").unwrap();
        let mut tarball = Tarball::create(&recipe, cache.path()).unwrap();
        tarball.write_all(b"half").unwrap();
        let partial = tarball.path().to_path_buf();
        assert!(partial.exists());
        drop(tarball);
        assert!(!partial.exists());
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    }

    #[test]
    fn partials_of_killed_builds_are_recognised() {
        let cache = tempfile::tempdir().unwrap();
        let recipe = crate::recipe("busybox").unwrap();
        let mine = cache.path().join(".busybox-0123456789abcdef.tar.partial");
        let theirs = cache.path().join(".busybox-extra-0123456789abcdef.tar.partial");
        std::fs::write(&mine, "x").unwrap();
        std::fs::write(&theirs, "x").unwrap();
        remove_partials(&recipe, cache.path());
        assert!(!mine.exists() && theirs.exists());
    }
}
