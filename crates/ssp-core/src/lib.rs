//! ssp's pure domain: the rules, as plain functions over plain data.
//!
//! No IO, no async, no wire formats: everything here is decided from its inputs alone, so it
//! is tested exhaustively with table-driven and property tests. Every user-supplied string
//! passes through a parser here before it reaches LXD, a file path or a command line.

pub mod archive;
pub mod duration;
pub mod fingerprint;
pub mod gateway;
pub mod gpu;
pub mod idblock;
pub mod names;
pub mod quota;
pub mod retention;
pub mod rfb;
pub mod sharepath;
pub mod size;
pub mod sshkey;
