//! CRI-format container logs, written by the shim from the container's stdout/stderr pipes.
//!
//! Line format as containerd writes it: `<RFC3339Nano> <stdout|stderr> <F|P> <content>\n`.
//! Lines longer than 16 KiB are split into `P` (partial) records followed by a final `F`.
//! Rotation follows the kubelet: when the file passes `max_bytes`, `0.log` is renamed to
//! `0.log.<YYYYMMDD-hhmmss>` and the oldest rotated files beyond `max_files - 1` are deleted.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::util::{rfc3339_nano, rotation_suffix};

/// containerd's `max_container_log_line_size`.
pub const MAX_LINE: usize = 16 * 1024;

/// Which pipe a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One container's log file, with a pending partial line per stream.
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    max_files: u32,
    pending: [Vec<u8>; 2],
    /// A terminal's output: a partial line (a shell prompt, echoed keys) is written at once as
    /// a `P` record, since `kubectl attach -t` follows the log and must show it.
    terminal: bool,
}

impl LogWriter {
    /// Open (append) the log at `path`, creating its directory.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            max_bytes,
            max_files,
            pending: [Vec::new(), Vec::new()],
            terminal: false,
        })
    }

    /// Marks this log as a terminal's (see the field).
    pub fn for_terminal(mut self) -> Self {
        self.terminal = true;
        self
    }

    /// Feed bytes read from a pipe: complete lines become `F` records, and a partial line that
    /// reaches 16 KiB is flushed as a `P` record.
    pub fn feed(&mut self, stream: Stream, data: &[u8]) {
        let idx = stream as usize;
        let mut buf = std::mem::take(&mut self.pending[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &buf[start..];
            match rest.iter().position(|b| *b == b'\n') {
                Some(nl) if nl <= MAX_LINE => {
                    let line = rest[..nl].to_vec();
                    self.record(stream, 'F', &line);
                    start += nl + 1;
                }
                _ if rest.len() >= MAX_LINE => {
                    let chunk = rest[..MAX_LINE].to_vec();
                    self.record(stream, 'P', &chunk);
                    start += MAX_LINE;
                }
                _ if self.terminal && !rest.is_empty() => {
                    let chunk = rest.to_vec();
                    self.record(stream, 'P', &chunk);
                    start = buf.len();
                }
                _ => break,
            }
        }
        buf.drain(..start);
        self.pending[idx] = buf;
    }

    /// The pipe closed: a trailing line without newline is written as a full record.
    pub fn close_stream(&mut self, stream: Stream) {
        let idx = stream as usize;
        let rest = std::mem::take(&mut self.pending[idx]);
        if !rest.is_empty() {
            self.record(stream, 'F', &rest);
        }
    }

    fn record(&mut self, stream: Stream, tag: char, content: &[u8]) {
        let mut line = Vec::with_capacity(content.len() + 48);
        line.extend_from_slice(rfc3339_nano(SystemTime::now()).as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.name().as_bytes());
        line.push(b' ');
        line.push(tag as u8);
        line.push(b' ');
        line.extend_from_slice(content);
        line.push(b'\n');
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.write_all(&line) {
                tracing::warn!(path = %self.path.display(), error = %e, "log write failed");
                return;
            }
            self.size += line.len() as u64;
        }
        if self.max_bytes > 0 && self.size > self.max_bytes {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        let Some(name) = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            return;
        };
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut target = dir.join(format!("{name}.{}", rotation_suffix(SystemTime::now())));
        let mut n = 1;
        while target.exists() {
            target = dir.join(format!("{name}.{}.{n}", rotation_suffix(SystemTime::now())));
            n += 1;
        }
        self.file = None;
        if let Err(e) = std::fs::rename(&self.path, &target) {
            tracing::warn!(error = %e, "log rotation failed");
        }
        // Keep max_files - 1 rotated files (the live file is the last one).
        let keep = self.max_files.max(1) as usize - 1;
        let prefix = format!("{name}.");
        let mut rotated: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        rotated.sort();
        let excess = rotated.len().saturating_sub(keep);
        for (_, p) in rotated.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
        match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(f) => {
                self.file = Some(f);
                self.size = 0;
            }
            Err(e) => tracing::warn!(error = %e, "reopening log failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_rotate() {
        let dir = std::env::temp_dir().join(format!("shimlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.join("0.log");
        let mut w = LogWriter::open(&p, 0, 5).expect("open");
        w.feed(Stream::Stdout, b"a\nb");
        w.feed(Stream::Stderr, &vec![b'x'; MAX_LINE + 3]);
        w.feed(Stream::Stdout, b"c\n");
        w.close_stream(Stream::Stderr);
        let text = std::fs::read_to_string(&p).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(" stdout F a"));
        assert!(lines[1].contains(" stderr P xxx"));
        assert!(lines[2].ends_with(" stdout F bc"));
        assert!(lines[3].ends_with(" stderr F xxx"));
        let mut w = LogWriter::open(&dir.join("1.log"), 100, 2).expect("open");
        for _ in 0..20 {
            w.feed(
                Stream::Stdout,
                b"0123456789012345678901234567890123456789\n",
            );
        }
        let n = std::fs::read_dir(&dir).expect("dir").count();
        assert_eq!(n, 3, "0.log, 1.log and one rotated file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
