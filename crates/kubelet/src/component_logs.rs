//! The logs of the components that run inside the timonier process itself (API server,
//! scheduler, controller manager, Service proxy, cluster DNS): where their CRI-format files
//! live under the agent's data directory, which tracing targets belong to which component,
//! and the writer that appends and rotates them as the kubelet rotates container logs.
//!
//! The binary's tracing layer writes these files; the agent's log server reads them for the
//! components' mirror pods (`kubectl logs -n kube-system kube-apiserver-NODE`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The kubelet's `containerLogMaxSize` default.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;
/// The kubelet's `containerLogMaxFiles` default (the live file included).
pub const MAX_FILES: usize = 5;

/// A component that runs in-process and shows as a mirror pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    ApiServer,
    Scheduler,
    ControllerManager,
    Proxy,
    Dns,
}

impl Component {
    pub const ALL: [Component; 5] = [Component::ApiServer, Component::Scheduler, Component::ControllerManager, Component::Proxy, Component::Dns];

    /// The component's name as upstream calls it: its container's name and its pod's prefix.
    pub fn name(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::Scheduler => "kube-scheduler",
            Component::ControllerManager => "kube-controller-manager",
            Component::Proxy => "kube-proxy",
            Component::Dns => "coredns",
        }
    }

    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The tracing targets (module paths) whose events are this component's log. The
    /// datastore is part of the API server here (as kine is part of k3s' server log).
    fn targets(self) -> &'static [&'static str] {
        match self {
            Component::ApiServer => &["timonier_apiserver", "timonier_store"],
            Component::Scheduler => &["timonier_scheduler"],
            Component::ControllerManager => &["timonier_controllers"],
            Component::Proxy => &["timonier_kubelet::proxy", "timonier_network::proxy"],
            Component::Dns => &["timonier_network::dns"],
        }
    }

    /// The component an event of `target` belongs to; `None` for the rest (the kubelet's own
    /// log, the CLI), which is no pod's.
    pub fn of_target(target: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| {
            c.targets().iter().any(|t| target.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
        })
    }
}

/// Where a component's live log file is, under the agent's data directory; rotated files sit
/// next to it as `0.log.<YYYYMMDD-hhmmss>`.
pub fn log_path(agent_data_dir: &Path, component: Component) -> PathBuf {
    agent_data_dir.join("logs").join("components").join(component.name()).join("0.log")
}

/// One component's log file: each line written becomes a CRI `stderr F` record stamped now.
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
}

impl LogFile {
    pub fn open(path: &Path) -> std::io::Result<LogFile> {
        LogFile::with_max_bytes(path, MAX_BYTES)
    }

    pub fn with_max_bytes(path: &Path, max_bytes: u64) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogFile { path: path.to_path_buf(), file: Some(file), size, max_bytes })
    }

    /// Appends `text` — one formatted event, maybe several lines — as one write of CRI
    /// records. Errors are dropped: this runs inside the tracing subscriber, where reporting
    /// them would log from within logging; stderr still has every line.
    pub fn append(&mut self, text: &[u8]) {
        // RFC 3339 with nanoseconds, as containerd stamps records.
        let time = format!("{:.9}", jiff::Timestamp::now());
        let mut out = Vec::with_capacity(text.len() + 48);
        for line in text.strip_suffix(b"\n").unwrap_or(text).split(|b| *b == b'\n') {
            out.extend_from_slice(time.as_bytes());
            out.extend_from_slice(b" stderr F ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        if self.file.is_none() {
            self.reopen();
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(&out).is_ok() {
                self.size += out.len() as u64;
            }
        }
        if self.size > self.max_bytes {
            self.rotate();
        }
    }

    fn reopen(&mut self) {
        self.file = OpenOptions::new().create(true).append(true).open(&self.path).ok();
        self.size = self.file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
    }

    /// `0.log` becomes `0.log.<stamp>` and the oldest rotated files past `MAX_FILES - 1` go,
    /// as the kubelet's container log manager does; readers following the file see it
    /// shrink and start over.
    fn rotate(&mut self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name().map(|n| n.to_string_lossy().into_owned())) else { return };
        let stamp = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
        let mut target = dir.join(format!("{name}.{stamp}"));
        let mut n = 1;
        while target.exists() {
            target = dir.join(format!("{name}.{stamp}.{n}"));
            n += 1;
        }
        self.file = None;
        let _ = std::fs::rename(&self.path, &target);
        let prefix = format!("{name}.");
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        // The stamps sort as times; `.N` suffixes of one second sort after the plain one.
        rotated.sort();
        let excess = rotated.len().saturating_sub(MAX_FILES - 1);
        for p in rotated.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
        self.reopen();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_route_by_module() {
        assert_eq!(Component::of_target("timonier_apiserver"), Some(Component::ApiServer));
        assert_eq!(Component::of_target("timonier_apiserver::rest"), Some(Component::ApiServer));
        assert_eq!(Component::of_target("timonier_store::sqlite"), Some(Component::ApiServer));
        assert_eq!(Component::of_target("timonier_scheduler"), Some(Component::Scheduler));
        assert_eq!(Component::of_target("timonier_controllers::deployment"), Some(Component::ControllerManager));
        assert_eq!(Component::of_target("timonier_kubelet::proxy"), Some(Component::Proxy));
        assert_eq!(Component::of_target("timonier_network::dns"), Some(Component::Dns));
        assert_eq!(Component::of_target("timonier_kubelet::pods"), None);
        assert_eq!(Component::of_target("timonier_kubelet::proxyx"), None);
        assert_eq!(Component::of_target("timonier"), None);
    }

    #[test]
    fn lines_become_cri_records_and_rotate() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c").join("0.log");
        let mut f = LogFile::with_max_bytes(&p, 200).unwrap();
        f.append(b"one\ntwo\n");
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" stderr F one") && lines[0].starts_with("20"), "{text}");
        assert!(lines[1].ends_with(" stderr F two"), "{text}");
        for _ in 0..40 {
            f.append(b"a line that fills the file\n");
        }
        let files = crate::logs::files_of(&p);
        assert!(files.len() > 1 && files.len() <= MAX_FILES, "{files:?}");
        assert!(std::fs::metadata(&p).unwrap().len() <= 200);
    }
}
