//! What can go wrong building an image; every message names the recipe or path and says
//! what to do.

use std::path::PathBuf;

/// A failed build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No recipe by that name.
    #[error("there is no image recipe {name:?}; known recipes: {}", known.join(", "))]
    UnknownRecipe {
        /// The name asked for.
        name: String,
        /// The recipes there are.
        known: Vec<String>,
    },
    /// Not enough free disk.
    #[error("not enough free disk space in {}: {} MiB free, {} MiB needed; free some space or point the cache elsewhere", path.display(), available / (1 << 20), needed / (1 << 20))]
    NoSpace {
        /// Where space is short.
        path: PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        available: u64,
    },
    /// A host tool is missing.
    #[error("{tool} is not installed: `apt-get install {package}` (scripts/up does it)")]
    MissingTool {
        /// The command.
        tool: String,
        /// The Debian package that has it.
        package: String,
    },
    /// debootstrap failed.
    #[error("debootstrap of {recipe} failed ({status}); the end of its log:\n{log_tail}")]
    Debootstrap {
        /// Recipe name.
        recipe: String,
        /// Its exit status.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The recipe's setup script failed inside the new tree.
    #[error("the setup script of {recipe} failed ({status}):\n{output}")]
    Setup {
        /// Recipe name.
        recipe: String,
        /// Its exit status.
        status: String,
        /// What it printed (the end).
        output: String,
    },
    /// Packing the tarball failed.
    #[error("packing image {recipe} failed: {detail}")]
    Pack {
        /// Recipe name.
        recipe: String,
        /// What went wrong.
        detail: String,
    },
    /// A recipe file is malformed (a bug in the shipped recipes).
    #[error("recipe {name} is malformed: {detail}")]
    BadRecipe {
        /// Recipe name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// Filesystem trouble.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}
