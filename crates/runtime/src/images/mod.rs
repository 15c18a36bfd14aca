//! The image store: images imported from OCI layouts and docker archives (and, later, pulled
//! from registries) kept content-addressed under one root directory:
//!
//! ```text
//! <root>/oci-layout, blobs/sha256/<hex>   every manifest, config and layer blob (an OCI layout)
//! <root>/layers/<diffID hex>/             each layer unpacked once, ready as an overlayfs lowerdir
//! <root>/images.json                      the index: reference → manifest, config, layers, size;
//!                                         and each image's last-used time (for garbage collection)
//! <root>/tmp/                             staging, emptied when the store is opened
//! ```
//!
//! Layer directories hold overlayfs-form whiteouts ([`unpack::WhiteoutMode::Overlay`]), so a
//! container rootfs is `lowerdir=` [`ImageStore::lower_dirs`] joined by `:`. Layers may be
//! plain, gzip or zstd tars (told apart by their magic bytes); a hard link to a file of an
//! earlier layer copies that file into the linking layer's directory, which therefore depends
//! on the layers below it as well as on its own tar.
//!
//! [`pull`] fetches images from registries (mirrors from a k3s-style [`RegistriesConfig`]
//! first), streaming blobs into the store; [`collect_garbage`] deletes least-recently-used
//! unused images when the disk fills up.

mod compression;
mod error;
mod gc;
mod import;
mod lower;
mod pull;
pub mod reference;
pub mod registries;
mod store;
pub mod unpack;
mod xattrs;

pub use error::{Error, Result};
pub use gc::{collect_garbage, disk_usage_percent, GcReport};
pub use pull::{pull, PullError};
pub use reference::normalize;
pub use registries::{credentials_from_dockerconfigjson, Credentials, RegistriesConfig};
pub use store::{Image, ImageConfig, ImageStore, Removed};
pub use unpack::{unpack_layer, unpack_layer_over, UnpackStats, WhiteoutMode};
