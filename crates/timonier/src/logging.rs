//! The process's tracing: everything to stderr as before, and each in-process component's
//! events (by tracing target, `timonier_kubelet::component_logs::Component::of_target`) also
//! to its own CRI log file under the agent's data directory, which the agent serves as the
//! log of the component's mirror pod (`kubectl logs -n kube-system kube-apiserver-NODE`).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use timonier_kubelet::component_logs::{self, Component, LogFile};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The open component log files; empty until `open` (and for good when no agent runs here:
/// without a node there are no mirror pods to show them).
#[derive(Default)]
pub struct ComponentLogs {
    files: OnceLock<Vec<(Component, Mutex<LogFile>)>>,
}

impl ComponentLogs {
    /// Starts writing the logs of `components` under `agent_data_dir`. Only the first call
    /// counts: the set is fixed for the life of the process. A file that cannot be opened is
    /// reported and skipped: its pod then shows an empty log, and the process runs on (a
    /// non-root agent gets its own, clearer error next).
    pub fn open(&self, agent_data_dir: &Path, components: &[Component]) {
        let mut files = vec![];
        for c in components {
            let path = component_logs::log_path(agent_data_dir, *c);
            match LogFile::open(&path) {
                Ok(f) => files.push((*c, Mutex::new(f))),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot open the log of {}; its pod shows none", c.name()),
            }
        }
        let _ = self.files.set(files);
    }

    fn file(&self, target: &str) -> Option<&Mutex<LogFile>> {
        let c = Component::of_target(target)?;
        self.files.get()?.iter().find(|(k, _)| *k == c).map(|(_, f)| f)
    }
}

/// Hands the formatter the file of the event's component (the filter below lets only those
/// events through, so the sink case is a fallback).
struct Router(Arc<ComponentLogs>);

struct FileWriter<'a>(Option<&'a Mutex<LogFile>>);

impl Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = self.0 {
            // A poisoned lock only means another event's write panicked; the file is fine.
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            f.append(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Router {
    type Writer = FileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        FileWriter(None)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        FileWriter(self.0.file(meta.target()))
    }
}

/// Installs the process's subscriber: `TIMONIER_LOG` (default `info`) filters both outputs.
pub fn init() -> Arc<ComponentLogs> {
    let logs = Arc::new(ComponentLogs::default());
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIMONIER_LOG").unwrap_or_else(|_| "info".into());
    let routed = logs.clone();
    // Formatting only events that have a file to go to: the rest cost nothing more than before.
    let files = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(Router(logs.clone()))
        .with_filter(tracing_subscriber::filter::filter_fn(move |meta| routed.file(meta.target()).is_some()));
    tracing_subscriber::registry().with(filter).with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).with(files).init();
    logs
}
