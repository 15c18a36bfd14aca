//! The node runtime of Timonier. For now: the image store (`images`), the part of the runtime
//! that needs no namespaces or cgroups — images imported from OCI layouts and docker archives,
//! kept content-addressed, with every layer unpacked once as an overlayfs lower directory.

#![warn(missing_docs)]

pub mod images;
