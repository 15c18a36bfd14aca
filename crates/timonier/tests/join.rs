//! Nodes joining a cluster, end to end: `timonier token create|list|delete`, a `timonier agent`
//! joining with the join token (the CA found through `kube-public/cluster-info` and pinned by
//! the token, its client and serving certificates from CertificateSigningRequests), joins
//! refused for a wrong CA hash and for a deleted or expired token, the node's identity kept
//! across a restart, the Node authorizer (a node reads the secrets of its own pods only), and
//! `kubectl certificate approve|deny`.
//!
//! The server runs its own agent (node `join0`); the joining agent (node `join1`) runs on the
//! same machine with its own data directory, bridge, port and cgroup root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{AgentNode, TestImage, TestRegistry};
use sha2::Digest;
use timonier_testkit::{free_port, ChildGuard, Kubectl};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_timonier"))
}

/// `timonier token …` against the server's data directory: (success, stdout, stderr).
fn token(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin()).arg("token").args(args).arg("--data-dir").arg(data).env("RUST_BACKTRACE", "0").output().expect("run timonier token");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The joining agent's process and directories; removes what it left when dropped.
struct Joiner {
    child: Option<ChildGuard>,
    dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
}

impl Joiner {
    fn new(dir: &Path, port: u16, registry_config: &Path) -> Joiner {
        let cgroup = format!("/timonier-join1-{}", std::process::id());
        let args = [
            "--data-dir", &dir.join("agent").to_string_lossy(), "--node-name", "join1", "--node-ip", "127.0.0.1",
            "--kubelet-port", &port.to_string(), "--bridge", "tmnjoin1", "--cgroup-root", &cgroup,
            "--registry-config", &registry_config.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Joiner { child: None, dir: dir.join("agent"), log: dir.join("agent.log"), args }
    }

    /// Runs `timonier agent` with `extra` until it exits: (success, stderr).
    fn run_to_exit(&self, extra: &[&str]) -> (bool, String) {
        let out = Command::new(bin()).arg("agent").args(extra).args(&self.args).env("RUST_BACKTRACE", "0").stdin(Stdio::null()).output().expect("run timonier agent");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Starts `timonier agent` with `extra` in the background.
    fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("agent log");
        let child = Command::new(bin())
            .arg("agent")
            .args(extra)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start timonier agent");
        self.child = Some(ChildGuard(child));
    }

    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            // SAFETY: a plain kill(2) of the child we started, reaped by ChildGuard's drop.
            unsafe { libc::kill(c.pid() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut c = c;
            while Instant::now() < deadline && !matches!(c.0.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kubectl as this node (its kept kubeconfig).
    fn kubectl(&self, like: &Kubectl) -> Kubectl {
        Kubectl { bin: like.bin.clone(), kubeconfig: self.dir.join("kubelet.kubeconfig"), cache: self.dir.join("kube-cache"), home: self.dir.clone() }
    }
}

impl Drop for Joiner {
    fn drop(&mut self) {
        drop(self.child.take());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        rt.block_on(timonier_kubelet::cleanup_node(&self.dir));
    }
}

/// The SHA-256 of the CA certificate's DER, hex: what a `K10` token carries.
fn ca_der_hash(ca_pem: &str) -> String {
    let b64: String = ca_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).expect("CA PEM");
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// A CertificateSigningRequest for a client certificate of `user`, as a user would write it.
fn csr_yaml(name: &str, user: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, user);
    let pem = params.serialize_request(&key).expect("csr").pem().expect("pem");
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    format!("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {request}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n")
}

fn pod_yaml(name: &str, node: &str, secret: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sh\", \"-c\", \"{command}\"]\n    env:\n    - name: SECRET\n      valueFrom: {{secretKeyRef: {{name: {secret}, key: value}}}}\n"
    )
}

#[test]
fn agents_join_with_bootstrap_tokens() {
    let registry = TestRegistry::start(&[TestImage::Busybox]);
    let reg = registry.config.to_string_lossy().into_owned();
    let cgroup = format!("/timonier-join0-{}", std::process::id());
    let node = AgentNode::start("tmnjoin0", "join0", &[], &["--cgroup-root", &cgroup, "--registry-config", &reg]);
    let k = &node.kubectl;
    let data = node.server.dir.path().join("data");
    let server = format!("https://127.0.0.1:{}", node.server.port);
    let dir = timonier_testkit::temp_dir("timonier-join-");
    let mut joiner = Joiner::new(dir.path(), free_port(), &registry.config);

    // token create prints the join token: the CA's hash and a bootstrap token.
    let (ok, out, err) = token(&data, &["create", "--ttl", "2h", "--description", "e2e join"]);
    assert!(ok, "{err}");
    let join_token = out.trim().to_string();
    let ca = std::fs::read_to_string(data.join("pki/ca.crt")).expect("ca.crt");
    let hash = ca_der_hash(&ca);
    let creds = join_token.strip_prefix(&format!("K10{hash}::")).unwrap_or_else(|| panic!("not K10<ca hash>::… : {join_token}"));
    let (id, secret) = creds.split_once('.').expect("id.secret");
    assert!(id.len() == 6 && secret.len() == 16, "{creds}");
    // …stored as kubeadm stores it.
    let stored = k.run(&["get", "secret", "-n", "kube-system", &format!("bootstrap-token-{id}"), "-o", "jsonpath={.type} {.data.auth-extra-groups}"]).ok().to_string();
    let group = base64::engine::general_purpose::STANDARD.encode("system:bootstrappers:timonier:default-node-token");
    assert_eq!(stored, format!("bootstrap.kubernetes.io/token {group}"));

    // token list, as kubeadm prints it.
    let (ok, list, err) = token(&data, &["list"]);
    assert!(ok, "{err}");
    let mut lines = list.lines();
    assert_eq!(lines.next().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")), Some("TOKEN TTL EXPIRES USAGES DESCRIPTION EXTRA GROUPS".to_string()), "{list}");
    let row = lines.find(|l| l.starts_with(creds)).unwrap_or_else(|| panic!("{list}"));
    let cells: Vec<&str> = row.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert!(matches!(cells[1], "1h" | "2h"), "{row}");
    assert_eq!(&cells[3..], ["authentication,signing", "e2e join", "system:bootstrappers:timonier:default-node-token"], "{row}");

    // A wrong CA hash: refused before anything is sent with the token.
    let wrong = format!("K10{}::{creds}", "0".repeat(64));
    let (ok, err) = joiner.run_to_exit(&["--server", &server, "--token", &wrong]);
    assert!(!ok && err.contains("the cluster CA does not match the hash the join token pins"), "{err}");

    // A deleted token, and one expired (removed by the token cleaner): no signature, refused.
    let (_, doomed, _) = token(&data, &["create"]);
    let doomed = doomed.trim().to_string();
    let doomed_id = doomed.rsplit("::").next().and_then(|c| c.split('.').next()).unwrap_or("").to_string();
    let (ok, out, err) = token(&data, &["delete", &doomed_id]);
    assert!(ok && out == format!("bootstrap token {doomed_id:?} deleted\n"), "{out}{err}");
    assert!(!token(&data, &["list"]).1.contains(&doomed_id));
    let (ok, err) = joiner.run_to_exit(&["--server", &server, "--token", &doomed]);
    assert!(!ok && err.contains(&format!("the server has no signature for token id {doomed_id:?}")), "{err}");
    let (_, short, _) = token(&data, &["create", "--ttl", "1s"]);
    let short = short.trim().to_string();
    let short_id = short.rsplit("::").next().and_then(|c| c.split('.').next()).unwrap_or("").to_string();
    node.wait("the expired token removed and unsigned", Duration::from_secs(20), |k| {
        !k.run(&["get", "secrets", "-n", "kube-system"]).stdout.contains(&short_id)
            && !k.run(&["get", "cm", "-n", "kube-public", "cluster-info", "-o", "yaml"]).stdout.contains(&format!("jws-kubeconfig-{short_id}"))
    });
    let (ok, err) = joiner.run_to_exit(&["--server", &server, "--token", &short]);
    assert!(!ok && err.contains("unknown to this cluster, expired or deleted"), "{err}");
    let (ok, _, err) = token(&data, &["delete", "zzzzzz"]);
    assert!(!ok && err.contains("failed to delete bootstrap token \"zzzzzz\""), "{err}");

    // The good token: the node joins.
    joiner.spawn(&["--server", &server, "--token", &join_token]);
    let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while k.run(&["get", "node", "join1", "-o", ready]).stdout != "True" {
        assert!(Instant::now() < deadline, "join1 never Ready:\n{}", joiner.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Two requests, both approved and issued: its client certificate, asked for with the
    // token, and its serving certificate, asked for as the node.
    let bootstrapper = format!("system:bootstrap:{id}");
    node.wait("both CSRs issued", Duration::from_secs(30), |k| {
        // NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION
        let table = k.run(&["get", "csr", "--no-headers"]).stdout;
        let rows: Vec<Vec<String>> = table.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect();
        let issued = |signer: &str, who: &str| rows.iter().any(|r| r.len() == 6 && r[2] == signer && r[3] == who && r[5] == "Approved,Issued");
        issued("kubernetes.io/kube-apiserver-client-kubelet", &bootstrapper) && issued("kubernetes.io/kubelet-serving", "system:node:join1")
    });

    // The node's identity, and what the Node authorizer lets it read: the secret of its own
    // pod, not that of another node's.
    let as_node = joiner.kubectl(k);
    let whoami = as_node.run(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"]).ok().to_string();
    assert_eq!(whoami, "system:node:join1 [\"system:nodes\",\"system:authenticated\"]");
    for (s, v) in [("secret-a", "for-join0"), ("secret-b", "for-join1")] {
        k.run(&["create", "secret", "generic", s, &format!("--from-literal=value={v}")]).ok();
    }
    k.run_with_input(&["apply", "-f", "-"], Some(&pod_yaml("on-join0", "join0", "secret-a", "sleep 3600"))).ok();
    k.run_with_input(&["apply", "-f", "-"], Some(&pod_yaml("on-join1", "join1", "secret-b", "echo joined with $SECRET; sleep 3600"))).ok();
    let denied = as_node.run(&["get", "secret", "secret-a", "-o", "name"]);
    assert!(
        denied.err().contains("secrets \"secret-a\" is forbidden: User \"system:node:join1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'join1' and this object"),
        "{}",
        denied.stderr
    );
    assert_eq!(as_node.run(&["get", "secret", "secret-b", "-o", "name"]).ok(), "secret/secret-b\n");
    let other_node = as_node.run(&["label", "node", "join0", "team=x"]);
    assert!(other_node.err().contains("node \"join1\" is not allowed to modify node \"join0\""), "{}", other_node.stderr);
    // The pod on the joined node runs; its logs come through its agent's serving certificate,
    // which the API server checks against the cluster CA.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = k.run(&["logs", "on-join1"]).stdout;
        if logs == "joined with for-join1\n" {
            break;
        }
        assert!(Instant::now() < deadline, "logs {logs:?}; pods:\n{}\n{}", k.run(&["get", "pods", "-o", "wide"]).stdout, joiner.log());
        std::thread::sleep(Duration::from_millis(300));
    }
    // The node cannot use another node's agent API, whose certificate the CA signed as well.
    let port = k.run(&["get", "node", "join0", "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"]).ok().to_string();
    let pki = joiner.dir.join("pki");
    let curl = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("kubelet-client-current.pem"))
        .arg(format!("https://127.0.0.1:{port}/containerLogs/default/on-join0/main"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "Forbidden (user=system:node:join1, verb=get, resource=nodes, subresource=proxy)");

    // kubectl certificate approve and deny.
    k.run_with_input(&["create", "-f", "-"], Some(&csr_yaml("alice-csr", "alice"))).ok();
    k.run_with_input(&["create", "-f", "-"], Some(&csr_yaml("mallory-csr", "mallory"))).ok();
    k.run(&["certificate", "approve", "alice-csr"]).ok();
    k.run(&["certificate", "deny", "mallory-csr"]).ok();
    node.wait("alice's certificate", Duration::from_secs(20), |k| k.run(&["get", "csr", "alice-csr"]).stdout.contains("Approved,Issued"));
    std::thread::sleep(Duration::from_secs(1));
    let mallory = k.run(&["get", "csr", "mallory-csr", "-o", "jsonpath={.status.conditions[0].type} {.status.conditions[0].reason} [{.status.certificate}]"]).ok().to_string();
    assert_eq!(mallory, "Denied KubectlDeny []");
    assert!(k.run(&["get", "csr", "mallory-csr"]).ok().lines().last().is_some_and(|l| l.ends_with("Denied")));

    // Restarted without its token, the node uses the identity it kept.
    joiner.stop();
    joiner.spawn(&[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !joiner.log().contains("using the node identity kept in the data directory") {
        assert!(Instant::now() < deadline, "{}", joiner.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(k.run(&["get", "node", "join1", "-o", ready]).stdout, "True");
    assert!(!joiner.log().contains("ERROR"), "{}", joiner.log());
    drop(joiner);
    drop(node);
}
