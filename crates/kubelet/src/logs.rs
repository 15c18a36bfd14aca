//! Reading container logs: the CRI-format files the shim writes
//! (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`), with the options of `kubectl logs`
//! (tail, since, timestamps, limitBytes, follow) applied as the kubelet applies them.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<jiff::Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<i64>,
}

impl LogOptions {
    pub fn from_query(query: &str) -> LogOptions {
        let mut o = LogOptions::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "follow" => o.follow = v == "true" || v == "1",
                "tailLines" => o.tail_lines = v.parse().ok(),
                "sinceSeconds" => o.since_seconds = v.parse().ok(),
                "sinceTime" => o.since_time = v.parse().ok(),
                "timestamps" => o.timestamps = v == "true" || v == "1",
                "limitBytes" => o.limit_bytes = v.parse().ok(),
                _ => {}
            }
        }
        o
    }
}

/// One parsed CRI log line.
struct Line<'a> {
    time: &'a str,
    partial: bool,
    text: &'a [u8],
}

fn parse(line: &[u8]) -> Option<Line<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or(b"");
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    Some(Line { time, partial: tag == b"P", text })
}

/// The files of a container run, oldest first: rotated ones (`N.log.<stamp>`) then `N.log`.
pub fn files_of(log_path: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let (Some(dir), Some(name)) = (log_path.parent(), log_path.file_name().map(|n| n.to_string_lossy().into_owned())) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut rotated: Vec<PathBuf> = rd
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{name}.")))
                .map(|e| e.path())
                .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
                .collect();
            rotated.sort();
            out.extend(rotated);
        }
    }
    out.push(log_path.to_path_buf());
    out
}

struct Formatter {
    opts: LogOptions,
    since: Option<jiff::Timestamp>,
    sent: i64,
    pending: Vec<u8>,
}

impl Formatter {
    fn new(opts: LogOptions) -> Formatter {
        let since = opts.since_time.or_else(|| opts.since_seconds.map(|s| jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s)));
        Formatter { opts, since, sent: 0, pending: vec![] }
    }

    /// Formats one raw file line; `None` when it is filtered out or incomplete.
    fn format(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        let line = parse(raw)?;
        if let Some(since) = self.since {
            if line.time.parse::<jiff::Timestamp>().is_ok_and(|t| t < since) {
                return None;
            }
        }
        self.pending.extend_from_slice(line.text);
        if line.partial {
            return None;
        }
        let mut out = vec![];
        if self.opts.timestamps {
            out.extend_from_slice(line.time.as_bytes());
            out.push(b' ');
        }
        out.append(&mut self.pending);
        out.push(b'\n');
        Some(out)
    }

    /// Applies limitBytes; `false` once the limit is reached.
    fn admit(&mut self, chunk: &mut Vec<u8>) -> bool {
        if let Some(limit) = self.opts.limit_bytes {
            let left = limit - self.sent;
            if left <= 0 {
                return false;
            }
            if chunk.len() as i64 > left {
                chunk.truncate(left as usize);
            }
        }
        self.sent += chunk.len() as i64;
        true
    }
}

/// Streams the log of a container run into `tx` until done (or, with `follow`, until
/// `still_running` says the container stopped and the file is drained, or the receiver
/// goes away).
pub async fn stream(log_path: PathBuf, opts: LogOptions, tx: mpsc::Sender<Bytes>, still_running: impl Fn() -> bool + Send + 'static) {
    let follow = opts.follow;
    let tail = opts.tail_lines;
    let mut f = Formatter::new(opts);
    // The existing content, all files, with tail applied to whole lines.
    let mut lines: Vec<Vec<u8>> = vec![];
    for file in files_of(&log_path) {
        let Ok(fh) = std::fs::File::open(&file) else { continue };
        let mut r = BufReader::new(fh);
        let mut buf = vec![];
        while r.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
            if buf.ends_with(b"\n") {
                if let Some(l) = f.format(&buf) {
                    lines.push(l);
                }
            }
            buf.clear();
        }
    }
    if let Some(t) = tail {
        let keep = t.max(0) as usize;
        if lines.len() > keep {
            lines.drain(..lines.len() - keep);
        }
    }
    for mut l in lines {
        if !f.admit(&mut l) || tx.send(Bytes::from(l)).await.is_err() {
            return;
        }
    }
    if !follow {
        return;
    }
    // Follow the current file from its end, across rotations.
    let mut pos = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let mut carry: Vec<u8> = vec![];
    loop {
        let len = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // rotated: the new file starts over
        }
        if len > pos {
            if let Ok(mut fh) = std::fs::File::open(&log_path) {
                if fh.seek(SeekFrom::Start(pos)).is_ok() {
                    let mut chunk = vec![];
                    if let Ok(n) = fh.take(len - pos).read_to_end(&mut chunk) {
                        pos += n as u64;
                        carry.extend_from_slice(&chunk);
                    }
                }
            }
            while let Some(i) = carry.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = carry.drain(..=i).collect();
                if let Some(mut l) = f.format(&raw) {
                    if !f.admit(&mut l) || tx.send(Bytes::from(l)).await.is_err() {
                        return;
                    }
                }
            }
            continue;
        }
        if tx.is_closed() || !still_running() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(path: &Path, opts: LogOptions) -> String {
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(stream(path.to_path_buf(), opts, tx, || false));
        let mut out = vec![];
        while let Some(b) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn options_apply() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("0.log");
        std::fs::write(
            &p,
            "2020-01-01T00:00:00.000000001Z stdout F one\n2020-01-01T00:00:01Z stderr P tw\n2020-01-01T00:00:01Z stderr F o\n2030-01-01T00:00:00Z stdout F three\n",
        )
        .unwrap();
        assert_eq!(collect(&p, LogOptions::default()).await, "one\ntwo\nthree\n");
        assert_eq!(collect(&p, LogOptions { tail_lines: Some(1), ..Default::default() }).await, "three\n");
        assert_eq!(collect(&p, LogOptions { timestamps: true, tail_lines: Some(1), ..Default::default() }).await, "2030-01-01T00:00:00Z three\n");
        assert_eq!(collect(&p, LogOptions { limit_bytes: Some(5), ..Default::default() }).await, "one\nt");
        assert_eq!(collect(&p, LogOptions { since_seconds: Some(3600), ..Default::default() }).await, "three\n");
    }
}
