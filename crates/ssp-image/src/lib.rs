//! Container images built offline from recipes, as LXD *unified tarballs*.
//!
//! LXD's image servers are out of reach on our hosts, so every image is made here from a
//! built-in recipe (`images/<name>/`, embedded in the binary): `debian-12` with
//! `debootstrap` from a Debian mirror, `busybox` from the host's static busybox in pure Rust.
//! A build yields one tar holding `metadata.yaml`, `templates/` and `rootfs/`, and its
//! SHA-256, which is the fingerprint LXD gives an image imported from a unified tarball.
//!
//! **What it must not do:** building knows nothing of LXD's API. Only [`install`] talks to
//! LXD, through the typed `ssp-lxd` client: it imports the tarball, aliases it, and finds out
//! whether LXD already has it (by the `ssp.cache_key` image property,
//! [`CACHE_KEY_PROPERTY`]). Building never writes outside the cache and
//! work directories it is given, and never leaves a half-made tarball or tree behind.
//!
//! **Caching.** Builds are cached by recipe content ([`Recipe::cache_key`]) in
//! `<cache_dir>/<name>-<key[..16]>.tar` with a JSON sidecar, written atomically: a second
//! [`build`] of an unchanged recipe returns at once with `from_cache: true`; a changed
//! recipe builds again and the old tarball is removed. Builds of one recipe take turns (a
//! lock file in the cache directory), so two processes never build the same image at once.
//!
//! **Uncompressed, on purpose.** Measured on a 2-core host with `debian-12` tarballs of
//! 220–245 MB: `gzip -1` takes ~8 s (to 96 MB), `xz -1 -T2` ~11 s (71 MB), `zstd -3 -T2`
//! ~0.7 s (71–78 MB). In a real LXD 5.0.2 (`dir` pool) the plain tarball imports in 0.8 s against 0.3 s
//! for zstd, and creating a container from either takes the same 1.3–1.6 s. So only zstd was
//! worth considering, and it would save ~150 MB of disk per Debian image at the price of
//! one more tool (or a C library) on every host and two tarball formats to tell apart. Plain
//! tar: nothing to install, the bytes go over a local unix socket, and a busybox image and a
//! Debian image are made the same way.
//!
//! **Failures leave nothing half-made.** The root tree lives in a scratch folder under
//! `work_dir` that is removed on every exit path — after detaching anything mounted in it,
//! never through a mount, never following a link — and the tarball is written to a hidden
//! `.partial` file that is only renamed into place once whole and synced.

mod busybox;
mod cache;
mod debootstrap;
mod error;
mod fs;
pub mod install;
mod metadata;
mod recipe;
mod sources;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use cache::cached;
pub use error::Error;
pub use metadata::{CACHE_KEY_PROPERTY, RECIPE_PROPERTY};
pub use recipe::{recipe, recipes, Builder, Recipe, BUILDER_FORMAT_VERSION};

/// Where `ssp` keeps built images on a host (`ssp image build` uses it).
pub const HOST_CACHE_DIR: &str = "/var/cache/ssp/images";
/// Scratch space for builds on a host: beside the cache, on the same filesystem, so a
/// finished build is renamed into the cache rather than copied.
pub const HOST_WORK_DIR: &str = "/var/cache/ssp/work";

/// Where and how to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Finished tarballs and their sidecars (created if absent).
    pub cache_dir: PathBuf,
    /// Scratch space for root trees (created if absent); ideally on the same filesystem as
    /// `cache_dir`. Each build works in its own folder inside and removes it.
    pub work_dir: PathBuf,
    /// Debian mirror for debootstrap recipes, e.g. `http://deb.debian.org/debian`. `None`:
    /// the first Debian mirror for the suite in the host's apt sources, else Debian's own.
    pub mirror: Option<String>,
}

impl BuildOptions {
    /// The host-wide cache ([`HOST_CACHE_DIR`], scratch in [`HOST_WORK_DIR`]) and the mirror
    /// from the host's apt sources.
    pub fn default_for_host() -> Self {
        Self { cache_dir: HOST_CACHE_DIR.into(), work_dir: HOST_WORK_DIR.into(), mirror: None }
    }

    /// Builds cached in `cache_dir`, with scratch space in a `work` folder beside it.
    pub fn in_cache_dir(cache_dir: impl Into<PathBuf>) -> Self {
        let cache_dir = cache_dir.into();
        let work_dir = match cache_dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.join("work"),
            _ => cache_dir.join(".work"),
        };
        Self { cache_dir, work_dir, mirror: None }
    }
}

/// Coarse progress of a build, for a spinner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A step began: `debootstrap bookworm from …`, `configuring rootfs`, `packing`, ….
    Step(String),
    /// The tarball is ready in the cache.
    Done,
}

/// A built image: its tarball in the cache and what describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuiltImage {
    /// The recipe's name.
    pub recipe: String,
    /// The recipe's [`Recipe::cache_key`] when built.
    pub cache_key: String,
    /// The unified tarball (`metadata.yaml`, `templates/`, `rootfs/`), uncompressed.
    pub tarball: PathBuf,
    /// SHA-256 (hex) of the tarball file: the fingerprint LXD gives the imported image.
    pub fingerprint: String,
    /// Size of the tarball in bytes (for an upload progress bar).
    pub size: u64,
    /// Whether this came from the cache rather than a build just now.
    #[serde(skip)]
    pub from_cache: bool,
    /// The image properties written in its `metadata.yaml` (`os`, `release`, `variant`,
    /// `description`, `architecture`, [`RECIPE_PROPERTY`], [`CACHE_KEY_PROPERTY`]).
    pub properties: BTreeMap<String, String>,
}

/// Builds `recipe` into the cache, or returns the cached build when there is one for its
/// current cache key. Synchronous and slow for Debian (minutes): call it from a blocking
/// thread. `progress` hears each coarse step, then [`Progress::Done`].
pub fn build(recipe: &Recipe, opts: &BuildOptions, progress: &mut dyn FnMut(Progress)) -> Result<BuiltImage, Error> {
    // `Recipe::name` is public: an altered one must not become a path (or a scratch folder
    // name) outside the cache and work directories.
    if !recipe::valid_name(&recipe.name) {
        return Err(Error::UnknownRecipe {
            name: recipe.name.clone(),
            known: recipes().into_iter().map(|r| r.name).collect(),
        });
    }
    fs::create_dir(&opts.cache_dir)?;
    let cache_dir = opts.cache_dir.canonicalize().map_err(Error::io("resolving", &opts.cache_dir))?;
    let _lock = fs::lock(&cache_dir.join(format!(".{}.lock", recipe.name)))?;
    // Another process may have finished this build while we waited for the lock.
    if let Some(built) = cached(recipe, &cache_dir) {
        progress(Progress::Done);
        return Ok(built);
    }
    cache::remove_partials(recipe, &cache_dir);
    let built = match recipe.builder() {
        Builder::Busybox => build_busybox(recipe, &cache_dir, progress)?,
        Builder::Debootstrap => build_debootstrap(recipe, opts, &cache_dir, progress)?,
    };
    progress(Progress::Done);
    Ok(built)
}

/// The busybox image, written straight into the cache: no scratch tree.
fn build_busybox(recipe: &Recipe, cache_dir: &Path, progress: &mut dyn FnMut(Progress)) -> Result<BuiltImage, Error> {
    fs::require_space(cache_dir, recipe.space_needed())?;
    busybox::host_busybox(recipe)?;
    progress(Progress::Step("assembling the busybox rootfs".into()));
    let architecture = metadata::host_architecture();
    let properties = metadata::properties(recipe, &architecture);
    let now = metadata::now();
    let fail = |e: std::io::Error| Error::Pack { recipe: recipe.name.clone(), detail: e.to_string() };

    let mut tar = tar::Builder::new(cache::Tarball::create(recipe, cache_dir)?);
    append_metadata(&mut tar, &properties, &architecture, now).map_err(fail)?;
    busybox::append_rootfs(recipe, &mut tar, now)?;
    let tarball = tar.into_inner().map_err(fail)?;
    tarball.commit(recipe, cache_dir, properties)
}

/// `metadata.yaml` and `templates/` as tar entries owned by root.
fn append_metadata<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    properties: &BTreeMap<String, String>,
    architecture: &str,
    now: u64,
) -> std::io::Result<()> {
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(now);
    dir.set_uid(0);
    dir.set_gid(0);
    tar.append_data(&mut dir, "templates/", std::io::empty())?;
    for (path, content) in metadata::files(properties, architecture, now) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(content.len() as u64);
        header.set_mtime(now);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, path, content.as_bytes())?;
    }
    Ok(())
}

/// A Debian image: debootstrap and setup in a scratch tree, then GNU tar into the cache.
fn build_debootstrap(
    recipe: &Recipe,
    opts: &BuildOptions,
    cache_dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<BuiltImage, Error> {
    debootstrap::check_host(recipe)?;
    fs::create_dir(&opts.work_dir)?;
    let work_dir = opts.work_dir.canonicalize().map_err(Error::io("resolving", &opts.work_dir))?;
    fs::remove_stale_scratch(&work_dir, &recipe.name);
    fs::require_space(&work_dir, recipe.space_needed())?;
    fs::require_space(cache_dir, recipe.space_needed())?;
    let suite = recipe.spec.suite.as_deref().unwrap_or_default();
    let mirrors = debootstrap::mirrors(suite, opts.mirror.as_deref());

    let scratch = fs::Scratch::new(&work_dir, &recipe.name)?;
    let rootfs = scratch.path().join("rootfs");
    let logs = scratch.path().join("logs");
    fs::create_dir(&logs)?;
    debootstrap::make_rootfs(recipe, &rootfs, &logs, &mirrors, progress)?;

    progress(Progress::Step("packing".into()));
    let architecture = metadata::host_architecture();
    let properties = metadata::properties(recipe, &architecture);
    fs::create_dir(&scratch.path().join("templates"))?;
    for (path, content) in metadata::files(&properties, &architecture, metadata::now()) {
        let path = scratch.path().join(path);
        std::fs::write(&path, content).map_err(Error::io("writing", &path))?;
    }
    let mut tarball = cache::Tarball::create(recipe, cache_dir)?;
    debootstrap::pack(recipe, scratch.path(), &logs, &mut tarball)?;
    let built = tarball.commit(recipe, cache_dir, properties)?;
    fs::remove_tree(scratch.path())?;
    Ok(built)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    fn options(root: &Path) -> BuildOptions {
        BuildOptions { cache_dir: root.join("cache"), work_dir: root.join("work"), mirror: None }
    }

    #[test]
    fn busybox_builds_for_real_then_comes_from_the_cache() {
        let root = tempfile::tempdir().unwrap();
        let opts = options(root.path());
        let recipe = recipe("busybox").unwrap();
        let mut steps = Vec::new();
        let built = build(&recipe, &opts, &mut |p| steps.push(p)).unwrap();
        assert!(!built.from_cache);
        assert_eq!(steps.last(), Some(&Progress::Done));
        assert!(steps.len() >= 2, "{steps:?}");
        assert_eq!(built.cache_key, recipe.cache_key());
        assert_eq!(built.properties[RECIPE_PROPERTY], "busybox");
        let bytes = std::fs::read(&built.tarball).unwrap();
        assert_eq!(built.size, bytes.len() as u64);
        use sha2::Digest;
        assert_eq!(built.fingerprint, recipe::hex(&sha2::Sha256::digest(&bytes)));

        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = BTreeMap::new();
        let mut metadata_text = String::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let header = entry.header();
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0), "{path}");
            let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            let kind = header.entry_type();
            let mode = header.mode().unwrap();
            if path == "metadata.yaml" {
                entry.read_to_string(&mut metadata_text).unwrap();
            }
            seen.insert(path, (kind, link, mode));
        }
        assert_eq!(seen["rootfs/sbin/init"], (tar::EntryType::Symlink, Some("/bin/busybox".into()), 0o777));
        assert_eq!(seen["rootfs/bin/sh"].0, tar::EntryType::Symlink);
        assert_eq!(seen["rootfs/bin/busybox"], (tar::EntryType::Regular, None, 0o755));
        assert_eq!(seen["rootfs/tmp/"], (tar::EntryType::Directory, None, 0o1777));
        assert_eq!(seen["rootfs/etc/init.d/rcS"], (tar::EntryType::Regular, None, 0o755));
        assert_eq!(seen["rootfs/etc/shadow"].2, 0o600);
        for path in [
            "rootfs/etc/inittab",
            "rootfs/usr/share/udhcpc/default.script",
            "rootfs/etc/passwd",
            "rootfs/etc/group",
            "templates/hostname.tpl",
            "templates/hosts.tpl",
        ] {
            assert!(seen.contains_key(path), "{path}");
        }
        for dir in ["proc", "sys", "dev", "run", "root"] {
            assert_eq!(seen[&format!("rootfs/{dir}/")].0, tar::EntryType::Directory, "{dir}");
        }
        let metadata: serde_json::Value = serde_json::from_str(&metadata_text).unwrap();
        assert_eq!(metadata["properties"]["ssp.cache_key"], recipe.cache_key());
        assert_eq!(metadata["architecture"], metadata::host_architecture());

        // Nothing left in the work folder, nothing half-made in the cache.
        let names: Vec<String> = std::fs::read_dir(&opts.cache_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");

        // The second build is a cache hit with the same fingerprint.
        let again = build(&recipe, &opts, &mut |_| {}).unwrap();
        assert!(again.from_cache);
        assert_eq!(again.fingerprint, built.fingerprint);
        assert_eq!(cached(&recipe, &opts.cache_dir).unwrap().fingerprint, built.fingerprint);
    }

    #[test]
    fn a_failed_debootstrap_leaves_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        // Nothing listens on port 9 of the loopback: debootstrap fails at once, offline.
        let opts = BuildOptions { mirror: Some("http://127.0.0.1:9/debian".into()), ..options(root.path()) };
        let recipe = recipe("debian-12").unwrap();
        let err = build(&recipe, &opts, &mut |_| {}).unwrap_err();
        if !rustix::process::geteuid().is_root() {
            assert!(matches!(err, Error::NotRoot { .. }), "{err}");
            return;
        }
        let Error::Debootstrap { status, log_tail } = &err else { panic!("{err}") };
        assert!(!status.is_empty() && !log_tail.is_empty(), "{err}");
        assert!(log_tail.lines().count() <= 32, "{log_tail}");
        assert!(err.to_string().contains("mirror"), "{err}");
        assert_eq!(std::fs::read_dir(&opts.work_dir).unwrap().count(), 0, "scratch removed");
        let left: Vec<String> = std::fs::read_dir(&opts.cache_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [".debian-12.lock"]);
        assert!(cached(&recipe, &opts.cache_dir).is_none());
    }

    #[test]
    fn an_altered_recipe_name_is_no_path() {
        let root = tempfile::tempdir().unwrap();
        let mut recipe = recipe("busybox").unwrap();
        recipe.name = "../escape".into();
        assert!(matches!(build(&recipe, &options(root.path()), &mut |_| {}), Err(Error::UnknownRecipe { .. })));
        assert!(cached(&recipe, &root.path().join("cache")).is_none());
        assert!(!root.path().join("escape.lock").exists() && !root.path().join("cache").exists());
    }

    #[test]
    fn options_beside_a_cache_dir() {
        let opts = BuildOptions::in_cache_dir("/var/cache/ssp/images");
        assert_eq!(opts.work_dir, Path::new("/var/cache/ssp/work"));
        assert_eq!(BuildOptions::default_for_host(), opts);
        assert_eq!(BuildOptions::in_cache_dir("images").work_dir, Path::new("images/.work"));
    }
}
