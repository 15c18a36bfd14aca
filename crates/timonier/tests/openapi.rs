//! End to end: the OpenAPI documents and server-side field validation, with the stock kubectl
//! 1.27 (which loads `/openapi/v2` as protobuf first) and 1.33 (`/openapi/v3` only).

use std::time::{Duration, Instant};

use timonier_testkit::{Kubectl, Server};

const VERSIONS: &[&str] = &["1.27", "1.33"];

fn server() -> Server {
    Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), &[])
}

/// Runs `f` for each supported kubectl version against one fresh server each.
fn each_version(f: impl Fn(&Server, &Kubectl, &str)) {
    for v in VERSIONS {
        let s = server();
        let k = s.kubectl(v);
        f(&s, &k, v);
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - {name: A, value: '1'}
        - {name: B, value: '2'}
";

#[test]
fn explain_reads_the_schemas() {
    each_version(|_, k, v| {
        let out = k.run(&["explain", "deployment.spec.strategy"]);
        let text = out.ok();
        assert!(text.contains("KIND:       Deployment") && text.contains("FIELD: strategy <DeploymentStrategy>"), "{v}: {text}");
        assert!(text.contains("The deployment strategy to use to replace existing pods with new ones."), "{v}: {text}");
        assert!(text.contains("rollingUpdate\t<RollingUpdateDeployment>"), "{v}: {text}");
        let ports = k.run(&["explain", "pods.spec.containers.ports"]);
        assert!(ports.ok().contains("FIELD: ports <[]ContainerPort>") && ports.ok().contains("containerPort\t<integer> -required-"), "{v}: {}", ports.stdout);
        let rec = k.run(&["explain", "deployment.spec.strategy", "--recursive"]);
        assert!(rec.ok().contains("maxSurge\t<IntOrString>") && rec.ok().contains("maxUnavailable\t<IntOrString>"), "{v}: {}", rec.stdout);
    });
}

#[test]
fn apply_is_validated_by_the_server() {
    each_version(|_, k, v| {
        assert_eq!(k.run_with_input(&["apply", "-f", "-"], Some(DEPLOYMENT)).ok().trim(), "deployment.apps/web created", "{v}");
        // Client-side apply computes its strategic merge patch from the published metadata:
        // the env list merges by name, a removed item is deleted.
        let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3").replace("{name: B, value: '2'}", "{name: C, value: '3'}");
        assert_eq!(k.run_with_input(&["apply", "-f", "-"], Some(&changed)).ok().trim(), "deployment.apps/web configured", "{v}");
        let got = k.run(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].env[*].name}"]);
        assert_eq!(got.ok(), "3 A C", "{v}");

        let typo = DEPLOYMENT.replace("name: web", "name: typo").replace("replicas: 2", "replicass: 2").replace("image: nginx", "imagee: nginx");
        let err = k.run_with_input(&["apply", "-f", "-"], Some(&typo));
        assert!(
            err.err().contains("Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replicass\", unknown field \"spec.template.spec.containers[0].imagee\""),
            "{v}: {}",
            err.stderr
        );
        // Without the misspelt image the object is valid: Warn and Ignore let it through.
        let typo = typo.replace("imagee: nginx", "image: nginx");
        let warned = k.run_with_input(&["create", "--validate=warn", "-f", "-"], Some(&typo));
        warned.ok();
        assert!(warned.stderr.contains("Warning: unknown field \"spec.replicass\""), "{v}: {}", warned.stderr);
        let ignored = k.run_with_input(&["replace", "--validate=false", "-f", "-"], Some(&typo));
        ignored.ok();
        assert!(!ignored.stderr.contains("unknown field"), "{v}: {}", ignored.stderr);
    });
}

#[test]
fn duplicate_fields_are_refused() {
    let s = server();
    let k = s.kubectl("1.33");
    let path = s.dir.path().join("dup.json");
    std::fs::write(&path, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","name":"b"},"data":{"k":"1","k":"2"}}"#).expect("write");
    let path = path.to_string_lossy().to_string();
    let out = k.run(&["create", "--raw", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", "-f", &path]);
    assert!(
        out.err().contains("strict decoding error: duplicate field \"metadata.name\", duplicate field \"data.k\""),
        "{}",
        out.stderr
    );
    k.run(&["create", "--raw", "/api/v1/namespaces/default/configmaps?fieldValidation=Ignore", "-f", &path]).ok();
}

#[test]
fn custom_resources_are_explained_and_validated() {
    const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: How often the job runs.
            properties:
              cronSpec: {type: string, description: The schedule in cron format.}
              image: {type: string}
";
    each_version(|_, k, v| {
        k.run_with_input(&["apply", "-f", "-"], Some(CRD)).ok();
        let deadline = Instant::now() + Duration::from_secs(20);
        while k.run(&["get", "crontabs"]).code != 0 {
            assert!(Instant::now() < deadline, "{v}: the CRD was never served");
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = k.run(&["explain", "crontab.spec"]);
        assert!(out.ok().contains("How often the job runs.") && out.ok().contains("cronSpec\t<string>") && out.ok().contains("The schedule in cron format."), "{v}: {}", out.stdout);
        let bad = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: c}\nspec: {cronSpec: '* * * * *', imag: x}\n";
        let err = k.run_with_input(&["apply", "-f", "-"], Some(bad));
        assert!(err.err().contains("CronTab in version \"v1\" cannot be handled as a CronTab: strict decoding error: unknown field \"spec.imag\""), "{v}: {}", err.stderr);
        k.run_with_input(&["apply", "-f", "-"], Some(&bad.replace("imag:", "image:"))).ok();
    });
}
