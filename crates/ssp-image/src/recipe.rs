//! The built-in recipes (`images/<name>/`), embedded in the binary with `include_str!` so an
//! installed `ssp` needs no source tree, and their cache keys.
//!
//! A recipe is a `recipe.toml` plus the files it names. It is data, checked when parsed; it
//! must not reach outside its own folder (file names are looked up among the embedded files
//! only) or into a command line unchecked (package names are checked here).

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Bump whenever the way a recipe becomes a tarball changes, so that every cached build is
/// made again. Part of every [`Recipe::cache_key`].
pub const BUILDER_FORMAT_VERSION: &str = "ssp-image/2";

/// The longest setup script a recipe may have (see [`parse`]).
const MAX_SETUP_LEN: usize = 100_000;

/// How a recipe's root tree is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    /// `debootstrap` from a Debian mirror, then the recipe's setup script inside the tree.
    Debootstrap,
    /// The host's static busybox and the recipe's files, written straight into the tar.
    Busybox,
}

/// A file a recipe places in the root tree.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSpec {
    /// Path inside the root tree, relative (`etc/inittab`).
    pub path: String,
    /// Name of the recipe file holding the content.
    pub source: String,
    /// Permission bits.
    pub mode: u32,
}

/// `recipe.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Spec {
    pub description: String,
    pub builder: Builder,
    pub os: String,
    pub release: String,
    pub variant: String,
    /// Debian suite (debootstrap only).
    #[serde(default)]
    pub suite: Option<String>,
    /// Packages beyond `minbase` (debootstrap only).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Script run inside the tree after debootstrap (debootstrap only).
    #[serde(default)]
    pub setup: Option<String>,
    /// Files placed in the tree (busybox only).
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

/// A built-in recipe: its parsed `recipe.toml` and the files beside it.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The recipe's name, e.g. `debian-12`; also the image's default alias.
    pub name: String,
    pub(crate) spec: Spec,
    /// Every file of the recipe as (name, content), `recipe.toml` first. All of them go into
    /// the cache key, whether the build reads them or not.
    pub(crate) files: Vec<(String, String)>,
}

impl Recipe {
    /// SHA-256 (hex) over [`BUILDER_FORMAT_VERSION`], the name and every file of the recipe:
    /// it changes whenever the recipe (or the builder's output format) changes, and only then.
    pub fn cache_key(&self) -> String {
        let mut hasher = Sha256::new();
        // Each field is length-prefixed, so moving bytes from one file to the next, or from a
        // file's name to its content, changes the key.
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(BUILDER_FORMAT_VERSION.as_bytes());
        field(self.name.as_bytes());
        for (name, content) in &self.files {
            field(name.as_bytes());
            field(content.as_bytes());
        }
        hex(&hasher.finalize())
    }

    /// The alias an image built from this recipe gets by default: its name.
    pub fn alias(&self) -> &str {
        &self.name
    }

    /// One line for people (`ssp image recipes`).
    pub fn description(&self) -> &str {
        &self.spec.description
    }

    /// How the root tree is made.
    pub fn builder(&self) -> Builder {
        self.spec.builder
    }

    /// The content of one of the recipe's files.
    pub(crate) fn file(&self, name: &str) -> Result<&str, Error> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, c)| c.as_str()).ok_or_else(|| Error::BadRecipe {
            name: self.name.clone(),
            detail: format!("it names the file {name:?}, which is not shipped with it"),
        })
    }

    /// Free bytes a build needs in each of the work and cache directories.
    pub(crate) fn space_needed(&self) -> u64 {
        match self.spec.builder {
            // The tree is ~250 MiB and its tarball as much (debian-12-desktop: ~770 and ~705
            // MiB); debootstrap's package cache and headroom for a growing recipe make up the
            // rest.
            Builder::Debootstrap => 2 << 30,
            Builder::Busybox => 64 << 20,
        }
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Embeds `images/<dir>/<file>` for each listed file, `recipe.toml` first.
macro_rules! shipped {
    ($dir:literal: $($file:literal),+ $(,)?) => {
        (
            $dir,
            &[
                ("recipe.toml", include_str!(concat!("../../../images/", $dir, "/recipe.toml"))),
                $(($file, include_str!(concat!("../../../images/", $dir, "/", $file)))),+
            ],
        )
    };
}

/// Every built-in recipe's files. A test checks that this lists every file in `images/`.
const SHIPPED: &[(&str, &[(&str, &str)])] = &[
    shipped!("busybox": "group", "hostname", "hosts", "inittab", "passwd", "profile", "rcS", "shadow", "udhcpc.script"),
    shipped!("debian-12": "setup.sh"),
    // Its setup.sh is a link to debian-12's: the same tree, more packages.
    shipped!("debian-12-desktop": "setup.sh"),
];

/// Whether `name` may name a recipe: `[a-z0-9][a-z0-9.-]{0,62}`. Checked before any lookup,
/// so no odd name reaches a path or a message unquoted.
pub(crate) fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.len() <= 63
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// A path inside the root tree that a recipe may write: relative, plain components only.
fn valid_tree_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

/// A Debian package or suite name (it goes on debootstrap's command line).
fn valid_debian_word(word: &str) -> bool {
    matches!(word.as_bytes().first(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

pub(crate) fn parse(name: &str, files: Vec<(String, String)>) -> Result<Recipe, Error> {
    let bad = |detail: String| Error::BadRecipe { name: name.into(), detail };
    if !valid_name(name) {
        return Err(bad("its name is not [a-z0-9][a-z0-9.-]{0,62}".into()));
    }
    let text = match files.first() {
        Some((first, text)) if first == "recipe.toml" => text,
        _ => return Err(bad("recipe.toml must come first".into())),
    };
    let spec: Spec = toml::from_str(text).map_err(|e| bad(format!("recipe.toml: {e}")))?;
    let recipe = Recipe { name: name.into(), spec, files };
    let spec = &recipe.spec;
    match spec.builder {
        Builder::Debootstrap => {
            match &spec.suite {
                Some(suite) if valid_debian_word(suite) => {}
                _ => return Err(bad("a debootstrap recipe needs a valid `suite`".into())),
            }
            if let Some(package) = spec.packages.iter().find(|p| !valid_debian_word(p)) {
                return Err(bad(format!("{package:?} is not a Debian package name")));
            }
            if let Some(setup) = &spec.setup {
                // It is passed to `sh -c` as one argument, which Linux caps at 128 KiB.
                if recipe.file(setup)?.len() > MAX_SETUP_LEN {
                    return Err(bad(format!("{setup} is longer than {MAX_SETUP_LEN} bytes")));
                }
            }
            if !spec.files.is_empty() {
                return Err(bad("`files` is for busybox recipes; write files from the setup script".into()));
            }
        }
        Builder::Busybox => {
            if spec.suite.is_some() || !spec.packages.is_empty() || spec.setup.is_some() {
                return Err(bad("`suite`, `packages` and `setup` are for debootstrap recipes".into()));
            }
            for file in &spec.files {
                if !valid_tree_path(&file.path) {
                    return Err(bad(format!("{:?} is not a plain relative path", file.path)));
                }
                if file.mode > 0o7777 {
                    return Err(bad(format!("mode {:o} of {} is not a permission mode", file.mode, file.path)));
                }
                recipe.file(&file.source)?;
            }
        }
    }
    Ok(recipe)
}

fn shipped(name: &str, files: &[(&str, &str)]) -> Result<Recipe, Error> {
    parse(name, files.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect())
}

fn known() -> Vec<String> {
    SHIPPED.iter().map(|(name, _)| name.to_string()).collect()
}

/// All built-in recipes, by name.
pub fn recipes() -> Vec<Recipe> {
    // The shipped recipes parse (a unit test proves it), so nothing is dropped here.
    SHIPPED.iter().filter_map(|(name, files)| shipped(name, files).ok()).collect()
}

/// The built-in recipe called `name`. Anything else, including names that could not be a
/// recipe's, is [`Error::UnknownRecipe`] with the list of known ones.
pub fn recipe(name: &str) -> Result<Recipe, Error> {
    if !valid_name(name) {
        return Err(Error::UnknownRecipe { name: name.into(), known: known() });
    }
    match SHIPPED.iter().find(|(n, _)| *n == name) {
        Some((name, files)) => shipped(name, files),
        None => Err(Error::UnknownRecipe { name: name.into(), known: known() }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect()
    }

    #[test]
    fn shipped_recipes_parse() {
        for (name, files) in SHIPPED {
            shipped(name, files).unwrap();
        }
        let names: Vec<String> = recipes().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["busybox", "debian-12", "debian-12-desktop"]);
        let debian = recipe("debian-12").unwrap();
        assert_eq!(debian.builder(), Builder::Debootstrap);
        assert_eq!(debian.alias(), "debian-12");
        assert!(debian.description().contains("Debian 12"));
        assert_eq!(recipe("busybox").unwrap().builder(), Builder::Busybox);
    }

    #[test]
    fn the_desktop_recipe_is_debian_12_plus_packages() {
        // The same setup script and every package of debian-12, so a container of either
        // image is configured alike; only the desktop's packages come on top.
        let base = recipe("debian-12").unwrap();
        let desktop = recipe("debian-12-desktop").unwrap();
        assert_eq!(desktop.builder(), Builder::Debootstrap);
        assert_eq!(desktop.spec.suite, base.spec.suite);
        assert_eq!((&desktop.spec.os, &desktop.spec.release), (&base.spec.os, &base.spec.release));
        assert_eq!(desktop.spec.packages[..base.spec.packages.len()], base.spec.packages[..]);
        for package in ["tigervnc-standalone-server", "tigervnc-tools", "xfce4", "dbus-x11", "xdotool"] {
            assert!(desktop.spec.packages.iter().any(|p| p == package), "{package}");
        }
        let setup = |r: &Recipe| r.file(r.spec.setup.as_deref().unwrap()).unwrap().to_string();
        assert_eq!(setup(&desktop), setup(&base));
        assert_ne!(desktop.cache_key(), base.cache_key());
    }

    #[test]
    fn every_file_in_images_is_embedded() {
        let images = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images");
        let mut on_disk: Vec<String> = Vec::new();
        for dir in std::fs::read_dir(&images).unwrap() {
            let dir = dir.unwrap();
            for file in std::fs::read_dir(dir.path()).unwrap() {
                on_disk.push(format!(
                    "{}/{}",
                    dir.file_name().to_string_lossy(),
                    file.unwrap().file_name().to_string_lossy()
                ));
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> =
            SHIPPED.iter().flat_map(|(dir, files)| files.iter().map(move |(f, _)| format!("{dir}/{f}"))).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "list new recipe files in SHIPPED");
    }

    #[test]
    fn unknown_and_invalid_names_are_refused_with_the_list() {
        for bad in ["nope", "../debian-12", "debian-12/", "", "DEBIAN-12", "debian-12\n", "-x", ".x", &"a".repeat(64)] {
            let err = recipe(bad).unwrap_err();
            let Error::UnknownRecipe { name, known } = &err else { panic!("{bad:?}: {err}") };
            assert_eq!(name, bad);
            assert_eq!(known, &["busybox", "debian-12", "debian-12-desktop"]);
            assert!(err.to_string().contains("known recipes: busybox, debian-12, debian-12-desktop"), "{err}");
        }
    }

    #[test]
    fn name_allowlist() {
        for ok in ["a", "0", "debian-12", "ubuntu-24.04", &"a".repeat(63)] {
            assert!(valid_name(ok), "{ok:?}");
        }
        for bad in ["", "-a", ".a", "A", "a_b", "a/b", "a b", "ä", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn cache_key_is_stable_and_follows_content() {
        let a = recipe("debian-12").unwrap();
        assert_eq!(a.cache_key(), recipe("debian-12").unwrap().cache_key());
        assert_eq!(a.cache_key().len(), 64);
        assert!(a.cache_key().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a.cache_key(), recipe("busybox").unwrap().cache_key());

        let mut changed = a.clone();
        changed.files[1].1.push_str("\n# changed\n");
        assert_ne!(a.cache_key(), changed.cache_key());

        let mut renamed = a.clone();
        renamed.name = "debian-12b".into();
        assert_ne!(a.cache_key(), renamed.cache_key());

        // Moving bytes between a file's name and its content, or between files, changes it too.
        let mut one = a.clone();
        one.files = files(&[("recipe.tom", "l"), ("setup.sh", "")]);
        let mut two = a;
        two.files = files(&[("recipe.toml", ""), ("setup.sh", "")]);
        assert_ne!(one.cache_key(), two.cache_key());
    }

    #[test]
    fn malformed_recipes_are_refused() {
        let base = "description='x'\nos='D'\nrelease='r'\nvariant='v'\n";
        let cases = [
            format!("{base}builder='debootstrap'\nsuite='bookworm'\npackages=['ok', 'bad;rm -rf /']"),
            format!("{base}builder='debootstrap'\npackages=['ok']"),
            format!("{base}builder='debootstrap'\nsuite='../x'"),
            format!("{base}builder='debootstrap'\nsuite='bookworm'\nsetup='missing.sh'"),
            format!("{base}builder='busybox'\nfiles=[{{path='../etc/x', source='f', mode=0o644}}]"),
            format!("{base}builder='busybox'\nfiles=[{{path='/etc/x', source='f', mode=0o644}}]"),
            format!("{base}builder='busybox'\nfiles=[{{path='etc/x', source='nope', mode=0o644}}]"),
            format!("{base}builder='busybox'\nfiles=[{{path='etc/x', source='f', mode=0o17777}}]"),
            format!("{base}builder='busybox'\nsuite='bookworm'"),
            format!("{base}builder='busybox'\nunknown_field=1"),
            format!("{base}builder='nix'"),
        ];
        for text in cases {
            let result = parse("x", files(&[("recipe.toml", &text), ("f", "content")]));
            assert!(matches!(result, Err(Error::BadRecipe { .. })), "{text}");
        }
        let big = "#".repeat(MAX_SETUP_LEN + 1);
        let text = format!("{base}builder='debootstrap'\nsuite='bookworm'\nsetup='big.sh'");
        assert!(matches!(parse("x", files(&[("recipe.toml", &text), ("big.sh", &big)])), Err(Error::BadRecipe { .. })));

        let good = format!("{base}builder='busybox'\nfiles=[{{path='etc/x', source='f', mode=0o644}}]");
        parse("x", files(&[("recipe.toml", &good), ("f", "content")])).unwrap();
    }
}
