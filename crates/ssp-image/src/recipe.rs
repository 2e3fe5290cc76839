//! The recipes shipped in `images/`, embedded in the binary so an installed `ssp` needs no
//! source tree.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use ssp_core::names::ImageName;

use crate::error::Error;

/// Bump when the way a recipe becomes a tarball changes, so every cache entry is rebuilt.
const FORMAT_VERSION: &str = "ssp-image/1";

/// How a recipe's root tree is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    /// `debootstrap` from a Debian mirror, then the recipe's setup script in the tree.
    Debootstrap,
    /// The host's static busybox and a few files, in pure Rust.
    Busybox,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecipeFile {
    pub description: String,
    pub builder: Builder,
    pub os: String,
    pub release: String,
    pub variant: String,
    #[serde(default)]
    pub suite: Option<String>,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub setup: Option<String>,
}

/// A recipe: its parsed `recipe.toml` and the files beside it.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Name, e.g. `debian-12`; also the default alias.
    pub name: String,
    pub(crate) spec: RecipeFile,
    /// The recipe's files (name, content), `recipe.toml` first; all of them go into the key.
    pub(crate) files: Vec<(&'static str, &'static str)>,
}

impl Recipe {
    /// A hash of everything the build depends on: changes when the recipe changes.
    pub fn cache_key(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(FORMAT_VERSION);
        for (name, content) in &self.files {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name);
            hasher.update((content.len() as u64).to_le_bytes());
            hasher.update(content);
        }
        hex(&hasher.finalize())
    }

    /// The alias the image is imported under by default.
    pub fn alias(&self) -> &str {
        &self.name
    }

    /// One line for people.
    pub fn description(&self) -> &str {
        &self.spec.description
    }

    /// How its tree is made.
    pub fn builder(&self) -> Builder {
        self.spec.builder
    }

    /// A file shipped with the recipe.
    pub(crate) fn file(&self, name: &str) -> Result<&'static str, Error> {
        self.files.iter().find(|(n, _)| *n == name).map(|(_, c)| *c).ok_or_else(|| Error::BadRecipe {
            name: self.name.clone(),
            detail: format!("it names {name}, which is not shipped with it"),
        })
    }

    /// Free bytes a build needs in the scratch folder.
    pub(crate) fn space_needed(&self) -> u64 {
        match self.spec.builder {
            Builder::Debootstrap => 2 << 30,
            Builder::Busybox => 64 << 20,
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

macro_rules! shipped {
    ($dir:literal: $($file:literal),+) => {
        ($dir, &[$(($file, include_str!(concat!("../../../images/", $dir, "/", $file)))),+])
    };
}

/// Every shipped recipe's files, `recipe.toml` first.
const SHIPPED: &[(&str, &[(&str, &str)])] = &[
    shipped!("busybox": "recipe.toml", "inittab", "rcS", "udhcpc.script"),
    shipped!("debian-12": "recipe.toml", "setup.sh"),
];

fn parse(name: &str, files: &[(&'static str, &'static str)]) -> Result<Recipe, Error> {
    let spec: RecipeFile = toml::from_str(files[0].1)
        .map_err(|e| Error::BadRecipe { name: name.into(), detail: e.to_string() })?;
    let recipe = Recipe { name: name.into(), spec, files: files.to_vec() };
    if let Some(setup) = &recipe.spec.setup {
        recipe.file(setup)?;
    }
    for package in &recipe.spec.packages {
        let ok = !package.is_empty()
            && package.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
        if !ok {
            return Err(Error::BadRecipe { name: name.into(), detail: format!("package name {package:?}") });
        }
    }
    Ok(recipe)
}

/// All shipped recipes.
pub fn recipes() -> Vec<Recipe> {
    SHIPPED.iter().filter_map(|(name, files)| parse(name, files).ok()).collect()
}

/// The recipe called `name`; anything else is [`Error::UnknownRecipe`].
pub fn recipe(name: &str) -> Result<Recipe, Error> {
    let known = || SHIPPED.iter().map(|(n, _)| n.to_string()).collect();
    if ImageName::parse(name).is_err() {
        return Err(Error::UnknownRecipe { name: name.into(), known: known() });
    }
    match SHIPPED.iter().find(|(n, _)| *n == name) {
        Some((name, files)) => parse(name, files),
        None => Err(Error::UnknownRecipe { name: name.into(), known: known() }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shipped_recipes_parse() {
        for (name, files) in SHIPPED {
            parse(name, files).unwrap();
        }
        assert_eq!(recipes().len(), SHIPPED.len());
        assert_eq!(recipe("debian-12").unwrap().builder(), Builder::Debootstrap);
        assert_eq!(recipe("busybox").unwrap().builder(), Builder::Busybox);
    }

    #[test]
    fn unknown_and_malformed_names_are_refused_with_the_list() {
        for bad in ["nope", "../debian-12", "debian-12/", "", "DEBIAN-12", "debian-12\n"] {
            let err = recipe(bad).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::UnknownRecipe { .. }), "{bad:?}");
            assert!(text.contains("debian-12") && text.contains("busybox"), "{text}");
        }
    }

    #[test]
    fn cache_key_is_stable_and_follows_content() {
        let a = recipe("debian-12").unwrap();
        assert_eq!(a.cache_key(), recipe("debian-12").unwrap().cache_key());
        assert_eq!(a.cache_key().len(), 64);
        assert_ne!(a.cache_key(), recipe("busybox").unwrap().cache_key());
        let mut changed = a.clone();
        changed.files[1] = ("setup.sh", "echo changed");
        assert_ne!(a.cache_key(), changed.cache_key());
        // Moving bytes between files changes the key too.
        let mut moved = a.clone();
        moved.files = vec![("recipe.tom", "l"), ("setup.sh", "")];
        let mut moved2 = a;
        moved2.files = vec![("recipe.toml", ""), ("setup.sh", "")];
        assert_ne!(moved.cache_key(), moved2.cache_key());
    }

    #[test]
    fn bad_package_names_are_refused() {
        let files: &[(&str, &str)] = &[(
            "recipe.toml",
            "description='x'\nbuilder='debootstrap'\nos='D'\nrelease='r'\nvariant='v'\npackages=['ok', 'bad;rm -rf']",
        )];
        assert!(matches!(parse("x", files), Err(Error::BadRecipe { .. })));
    }
}
