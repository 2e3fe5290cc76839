//! A typed async client for the LXD REST API (and Incus, which speaks the same `/1.0`), over
//! the daemon's unix socket.
//!
//! It knows nothing about ssp: no users, quotas or naming rules live here. What it does know
//! is LXD's protocol — the response envelope, ETags, background operations, websockets for
//! exec and events, the file API's headers — so callers deal in typed values and one
//! [`Error`] that carries the daemon's own message.
//!
//! Names passed in are escaped into single path segments, so no input can address another
//! object than the one named; validating names against ssp's rules is the caller's job.
//!
//! ```no_run
//! # async fn demo() -> ssp_lxd::Result<()> {
//! use std::time::Duration;
//! let lxd = ssp_lxd::Client::from_env()?;
//! let create = ssp_lxd::wire::InstancesPost::container_from_alias("c1", "debian-12");
//! lxd.create_instance(&create).await?.wait(Some(Duration::from_secs(120))).await?;
//! lxd.start_instance("c1", Duration::from_secs(60)).await?;
//! let out = lxd.exec_output("c1", &["uname", "-a"], b"").await?;
//! assert_eq!(out.exit_code, 0);
//! # Ok(()) }
//! ```

mod admin;
mod attach;
mod backups;
mod busy;
mod client;
mod error;
mod events;
mod exec;
mod files;
mod images;
mod instances;
mod operation;
pub mod wire;

pub use attach::{Attach, Unavailable};
pub use client::{Client, Tagged};
pub use error::{Error, Result};
pub use events::{EventKind, Events};
pub use exec::{Exec, ExecControl, ExecExit, ExecOptions, ExecOutput, ExecStdin, DROP_TO_ACCOUNT};
pub use files::{FileContent, FileMode, PulledFile};
pub use images::UploadProgress;
pub use instances::StateAction;
pub use operation::Operation;
