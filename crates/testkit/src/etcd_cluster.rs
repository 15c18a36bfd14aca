//! A real etcd cluster of several members (Debian's `etcd-server`) on loopback, whose members a
//! test kills and restarts, for the control plane's behaviour when etcd loses members or quorum.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, wait_for_port, ChildGuard};

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<ChildGuard>,
}

pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    dir: tempfile::TempDir,
}

/// `etcd` as member `name` of `initial_cluster`, serving clients on `client` and peers on
/// `peer` (loopback), its data in `data`.
pub(crate) fn etcd_command(bin: &str, name: &str, data: &std::path::Path, client: u16, peer: u16, initial_cluster: &str) -> Command {
    let mut c = Command::new(bin);
    c.arg(format!("--name={name}"))
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        // Kubernetes objects reach 1.5 MiB; etcd's default request cap is exactly that.
        .arg("--max-request-bytes=10485760")
        .arg("--log-level=error")
        .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
    c
}

impl EtcdCluster {
    /// Starts `n` members and waits until each serves.
    pub fn start(n: usize) -> Result<EtcdCluster, String> {
        let dir = tempfile::Builder::new().prefix("timonier-etcd-cluster-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let mut ports = Vec::new();
        while ports.len() < 2 * n {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let members: Vec<Member> = (0..n).map(|i| Member { name: format!("m{i}"), client: ports[2 * i], peer: ports[2 * i + 1], child: None }).collect();
        let initial_cluster = members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        let mut cluster = EtcdCluster { members, initial_cluster, dir };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait(i)?;
        }
        Ok(cluster)
    }

    /// `HOST:PORT,…` of every member, as `--datastore etcd://…` takes them.
    pub fn endpoints(&self) -> String {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client)).collect::<Vec<_>>().join(",")
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.0.kill();
            let _ = c.0.wait();
        }
    }

    /// Starts member `i` again on its data, and waits until it serves.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.kill(i);
        self.spawn(i)?;
        self.wait(i)
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let m = &self.members[i];
        let data: PathBuf = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join(format!("{}.log", m.name))).map_err(|e| e.to_string())?;
        let child = etcd_command(&bin, &m.name, &data, m.client, m.peer, &self.initial_cluster)
            .arg("--initial-cluster-token=timonier-test")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {bin:?} (install Debian's etcd-server): {e}"))?;
        self.members[i].child = Some(ChildGuard(child));
        Ok(())
    }

    fn wait(&mut self, i: usize) -> Result<(), String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.members[i].client).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if wait_for_port(addr, Duration::from_millis(100)) {
                return Ok(());
            }
        }
        let log = std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.members[i].name))).unwrap_or_default();
        Err(format!("etcd member {i} did not start; its log:\n{log}"))
    }
}
