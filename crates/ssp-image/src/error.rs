//! What can go wrong building an image. Every message names the recipe, tool or path involved
//! and says what to do about it, because the CLI shows it to a person as it is.

use std::path::PathBuf;

/// A failed lookup or build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No built-in recipe has that name (or the name is not a valid recipe name at all).
    #[error("there is no image recipe {name:?}; known recipes: {}", known.join(", "))]
    UnknownRecipe {
        /// The name asked for.
        name: String,
        /// The built-in recipes.
        known: Vec<String>,
    },

    /// A filesystem the build writes to has too little free space.
    #[error(
        "not enough free disk space in {}: {} MiB free, {} MiB needed; free some space there \
         or build with another cache/work directory",
        path.display(), available / (1 << 20), needed / (1 << 20)
    )]
    NoSpace {
        /// The directory whose filesystem is short.
        path: PathBuf,
        /// Bytes the build needs there.
        needed: u64,
        /// Bytes free there (for an unprivileged user).
        available: u64,
    },

    /// A host program the build needs is not installed.
    #[error("{tool} is needed to build image {recipe} but is not installed: run `apt-get install {package}`")]
    MissingTool {
        /// The recipe being built.
        recipe: String,
        /// The program (or file) that is missing.
        tool: String,
        /// The Debian package that provides it.
        package: String,
    },

    /// The build needs root (debootstrap creates device nodes and files of many owners).
    #[error("building image {recipe} needs root (debootstrap and chroot): run it as root")]
    NotRoot {
        /// The recipe being built.
        recipe: String,
    },

    /// `debootstrap` failed.
    #[error(
        "debootstrap failed ({status}); check that the Debian mirror is reachable (pass another \
         mirror to use a different one). The end of its log:\n{log_tail}"
    )]
    Debootstrap {
        /// How it exited.
        status: String,
        /// The last lines of what it printed (and of its own log, when it left one).
        log_tail: String,
    },

    /// The recipe's setup script failed inside the new root tree.
    #[error(
        "the setup script of image {recipe} failed ({status}); this is a bug in the recipe. Its output ends:\n{output}"
    )]
    Setup {
        /// The recipe being built.
        recipe: String,
        /// How it exited.
        status: String,
        /// The last lines of what it printed.
        output: String,
    },

    /// Writing the tarball failed.
    #[error("packing image {recipe} failed: {detail}")]
    Pack {
        /// The recipe being built.
        recipe: String,
        /// What went wrong.
        detail: String,
    },

    /// A built-in recipe is malformed: a bug in `images/`, caught by the crate's tests.
    #[error("image recipe {name} is malformed: {detail}; fix images/{name}/")]
    BadRecipe {
        /// The recipe.
        name: String,
        /// What is wrong.
        detail: String,
    },

    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`"creating"`, `"reading"`, …).
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A `map_err` adaptor for IO errors on `path`.
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}
