//! The image store: images imported from OCI layouts and docker archives (and, later, pulled
//! from registries) kept content-addressed under one root directory:
//!
//! ```text
//! <root>/oci-layout, blobs/sha256/<hex>   every manifest, config and layer blob (an OCI layout)
//! <root>/layers/<diffID hex>/             each layer unpacked once, ready as an overlayfs lowerdir
//! <root>/images.json                      the index: reference → manifest, config, layers, size
//! <root>/tmp/                             staging, emptied when the store is opened
//! ```
//!
//! Layer directories hold overlayfs-form whiteouts ([`unpack::WhiteoutMode::Overlay`]), so a
//! container rootfs is `lowerdir=` [`ImageStore::lower_dirs`] joined by `:`.

mod error;
mod import;
pub mod reference;
mod store;
pub mod unpack;

pub use error::{Error, Result};
pub use reference::normalize;
pub use store::{Image, ImageConfig, ImageStore, Removed};
pub use unpack::{unpack_layer, UnpackStats, WhiteoutMode};
