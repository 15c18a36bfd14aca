//! Layer and archive compression: gzip, zstd or none, told apart by the stream's magic bytes
//! as containerd does (`compression.DecompressStream`), so that a layer whose media type is
//! generic (`application/vnd.docker.image.rootfs.diff.tar`, or a docker archive's
//! `layer.tar`) still unpacks, and the media type is only checked for what we cannot read.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::error::{Error, IoContext, Result};

/// How a stream is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Classifies a stream by its first bytes (at least 4 should be given when there are).
pub(crate) fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&GZIP_MAGIC) {
        return Compression::Gzip;
    }
    if head.starts_with(&ZSTD_MAGIC) {
        return Compression::Zstd;
    }
    // A zstd stream may open with a skippable frame (magic 0x184D2A50..=0x184D2A5F, little
    // endian): podman's zstd:chunked layers carry their table of contents in one.
    if head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18] {
        return Compression::Zstd;
    }
    Compression::None
}

/// Checks that a layer media type names a tar we can read: plain, gzip or zstd (OCI
/// `…layer.v1.tar[+gzip|+zstd]`, the non-distributable variants, Docker's
/// `…rootfs.diff.tar[.gzip]` and `…rootfs.foreign.diff.tar.gzip`). The compression itself
/// is then taken from the content. An empty media type (docker archives) is accepted.
pub(crate) fn check_layer_media_type(media: &str) -> Result<(), String> {
    if media.is_empty() {
        return Ok(());
    }
    if media.contains("+encrypted") {
        return Err(format!(
            "layer media type {media:?} is encrypted (ocicrypt), which is not supported; use an unencrypted image"
        ));
    }
    if let Some((_, suffix)) = media.split_once('+') {
        if !matches!(suffix, "gzip" | "zstd") {
            return Err(format!(
                "layer media type {media:?}: compression {suffix:?} is not supported (gzip, zstd or none)"
            ));
        }
    }
    if media.contains("tar") || media.contains("rootfs.diff") {
        Ok(())
    } else {
        Err(format!(
            "unsupported layer media type {media:?} (a tar layer, plain, gzip or zstd, is expected)"
        ))
    }
}

/// Wraps a layer or archive stream with the decompressor its magic bytes call for.
pub(crate) fn decompress<'a>(r: impl Read + 'a, path: &Path) -> Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::new(r);
    let head = r.fill_buf().at(path)?;
    match detect(head) {
        Compression::Gzip => Ok(Box::new(flate2::read::GzDecoder::new(r))),
        // The decoder reads every frame to the end of the stream and skips skippable ones;
        // libzstd refuses frames whose window exceeds 128 MiB unless told otherwise, which
        // bounds the memory a hostile layer can make us allocate.
        Compression::Zstd => Ok(Box::new(
            zstd::stream::read::Decoder::with_buffer(r).map_err(|e| Error::Invalid {
                path: path.into(),
                reason: format!("cannot start zstd decompression: {e}"),
            })?,
        )),
        Compression::None => Ok(Box::new(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(detect(&[0x1f, 0x8b, 0x08, 0]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0x04]), Compression::Zstd);
        assert_eq!(
            detect(&[0x5e, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]),
            Compression::Zstd
        );
        assert_eq!(detect(b"etc/\0\0\0\0"), Compression::None);
        assert_eq!(detect(&[0x1f]), Compression::None);
        assert_eq!(detect(&[]), Compression::None);
    }

    #[test]
    fn media_types() {
        for ok in [
            "",
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        ] {
            assert!(check_layer_media_type(ok).is_ok(), "{ok}");
        }
        for (bad, word) in [
            (
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                "encrypted",
            ),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", "bzip2"),
            ("application/vnd.cncf.helm.chart.content.v1", "unsupported"),
        ] {
            let e = check_layer_media_type(bad).unwrap_err();
            assert!(e.contains(word), "{e}");
        }
    }

    #[test]
    fn zstd_stream_of_several_frames_with_a_skippable_one() {
        let mut blob = zstd::stream::encode_all(&b"hello "[..], 3).unwrap();
        // A skippable frame (magic 0x184D2A53, 4 bytes of payload) between two frames.
        blob.extend_from_slice(&[0x53, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
        blob.extend(zstd::stream::encode_all(&b"world"[..], 3).unwrap());
        let mut out = String::new();
        decompress(&blob[..], Path::new("t"))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello world");
        let mut plain = String::new();
        decompress(&b"plain"[..], Path::new("t"))
            .unwrap()
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "plain");
    }
}
