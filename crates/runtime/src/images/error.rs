//! Errors of the image store. Each message names the file or reference at fault and, where
//! there is one, what to do about it.

use std::path::PathBuf;

/// Why an image-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a file of the store or of an input, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The input of `import` is neither format: the caller passed the wrong file.
    #[error("not an OCI layout or docker archive: no index.json or manifest.json in {0}")]
    UnknownFormat(PathBuf),
    /// The input claims a format but its metadata is wrong (bad JSON, missing blobs, …).
    #[error("invalid image in {path}: {reason}")]
    Invalid {
        /// The file being imported.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Content does not hash to the digest that names it: the file is corrupt or was altered.
    #[error("digest mismatch for {what}: expected {expected}, got {actual} (the file is corrupt or truncated; re-export the image)")]
    DigestMismatch {
        /// Which blob or layer.
        what: String,
        /// The digest the metadata promised.
        expected: String,
        /// The digest of the content actually read.
        actual: String,
    },
    /// A layer tar is malformed or tries to write outside its directory.
    #[error("layer {layer}: {reason}")]
    Layer {
        /// The layer (digest or file) being unpacked.
        layer: String,
        /// What is wrong, with the offending entry.
        reason: String,
    },
    /// A string is not a valid image reference or digest.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No image in the store has this reference or digest.
    #[error("image {0:?} not found (list images to see what is present, or import it first)")]
    NotFound(String),
    /// The store's own index is unreadable: it was edited by hand or the disk is damaged.
    #[error("image index {path} is corrupt: {reason} (move it aside and re-import the images)")]
    CorruptIndex {
        /// The index file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

/// The result type of the image store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    /// Wraps the error with the path it happened on.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}
