//! One module per command noun.

pub mod image;
