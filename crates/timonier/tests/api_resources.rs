//! End to end: every resource kube-apiserver 1.33 serves by default, as the stock kubectl
//! (1.27 and 1.33) sees it — `kubectl api-resources`, create/get/list/delete of each stored
//! cluster-level kind with its printed columns, TokenReviews, component statuses, bindings
//! and the bootstrap PriorityClasses.

use serde_json::{json, Value};
use timonier_testkit::{Kubectl, Server};

const VERSIONS: &[&str] = &["1.27", "1.33"];

fn server(extra: &[&str]) -> Server {
    Server::start(std::path::Path::new(env!("CARGO_BIN_EXE_timonier")), extra)
}

/// A table as kubectl prints it, cut at the header's column starts (cells may be empty or
/// hold spaces, so splitting on whitespace would misalign them).
fn table(out: &str) -> Vec<Vec<String>> {
    let mut lines = out.lines();
    let Some(header) = lines.next() else { return Vec::new() };
    let mut starts = Vec::new();
    let bytes = header.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] != b' ' && (i == 0 || bytes[i - 1] == b' ') {
            starts.push(i);
        }
    }
    let cut = |l: &str| -> Vec<String> {
        (0..starts.len())
            .map(|c| {
                let end = starts.get(c + 1).copied().unwrap_or(l.len()).min(l.len());
                l.get(starts[c].min(l.len())..end).unwrap_or("").trim().to_string()
            })
            .collect()
    };
    std::iter::once(cut(header)).chain(lines.map(cut)).collect()
}

/// Every resource a default kube-apiserver 1.33 serves, as `kubectl api-resources` prints it
/// (NAME, SHORTNAMES, APIVERSION, NAMESPACED, KIND).
const EXPECTED: &[(&str, &str, &str, &str, &str)] = &[
    ("bindings", "", "v1", "true", "Binding"),
    ("componentstatuses", "cs", "v1", "false", "ComponentStatus"),
    ("configmaps", "cm", "v1", "true", "ConfigMap"),
    ("endpoints", "ep", "v1", "true", "Endpoints"),
    ("events", "ev", "v1", "true", "Event"),
    ("limitranges", "limits", "v1", "true", "LimitRange"),
    ("namespaces", "ns", "v1", "false", "Namespace"),
    ("nodes", "no", "v1", "false", "Node"),
    ("persistentvolumeclaims", "pvc", "v1", "true", "PersistentVolumeClaim"),
    ("persistentvolumes", "pv", "v1", "false", "PersistentVolume"),
    ("pods", "po", "v1", "true", "Pod"),
    ("podtemplates", "", "v1", "true", "PodTemplate"),
    ("replicationcontrollers", "rc", "v1", "true", "ReplicationController"),
    ("resourcequotas", "quota", "v1", "true", "ResourceQuota"),
    ("secrets", "", "v1", "true", "Secret"),
    ("serviceaccounts", "sa", "v1", "true", "ServiceAccount"),
    ("services", "svc", "v1", "true", "Service"),
    ("mutatingwebhookconfigurations", "", "admissionregistration.k8s.io/v1", "false", "MutatingWebhookConfiguration"),
    ("validatingadmissionpolicies", "", "admissionregistration.k8s.io/v1", "false", "ValidatingAdmissionPolicy"),
    ("validatingadmissionpolicybindings", "", "admissionregistration.k8s.io/v1", "false", "ValidatingAdmissionPolicyBinding"),
    ("validatingwebhookconfigurations", "", "admissionregistration.k8s.io/v1", "false", "ValidatingWebhookConfiguration"),
    ("customresourcedefinitions", "crd,crds", "apiextensions.k8s.io/v1", "false", "CustomResourceDefinition"),
    ("apiservices", "", "apiregistration.k8s.io/v1", "false", "APIService"),
    ("controllerrevisions", "", "apps/v1", "true", "ControllerRevision"),
    ("daemonsets", "ds", "apps/v1", "true", "DaemonSet"),
    ("deployments", "deploy", "apps/v1", "true", "Deployment"),
    ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
    ("statefulsets", "sts", "apps/v1", "true", "StatefulSet"),
    ("selfsubjectreviews", "", "authentication.k8s.io/v1", "false", "SelfSubjectReview"),
    ("tokenreviews", "", "authentication.k8s.io/v1", "false", "TokenReview"),
    ("localsubjectaccessreviews", "", "authorization.k8s.io/v1", "true", "LocalSubjectAccessReview"),
    ("selfsubjectaccessreviews", "", "authorization.k8s.io/v1", "false", "SelfSubjectAccessReview"),
    ("selfsubjectrulesreviews", "", "authorization.k8s.io/v1", "false", "SelfSubjectRulesReview"),
    ("subjectaccessreviews", "", "authorization.k8s.io/v1", "false", "SubjectAccessReview"),
    ("horizontalpodautoscalers", "hpa", "autoscaling/v2", "true", "HorizontalPodAutoscaler"),
    ("cronjobs", "cj", "batch/v1", "true", "CronJob"),
    ("jobs", "", "batch/v1", "true", "Job"),
    ("certificatesigningrequests", "csr", "certificates.k8s.io/v1", "false", "CertificateSigningRequest"),
    ("leases", "", "coordination.k8s.io/v1", "true", "Lease"),
    ("endpointslices", "", "discovery.k8s.io/v1", "true", "EndpointSlice"),
    ("events", "ev", "events.k8s.io/v1", "true", "Event"),
    ("flowschemas", "", "flowcontrol.apiserver.k8s.io/v1", "false", "FlowSchema"),
    ("prioritylevelconfigurations", "", "flowcontrol.apiserver.k8s.io/v1", "false", "PriorityLevelConfiguration"),
    ("ingressclasses", "", "networking.k8s.io/v1", "false", "IngressClass"),
    ("ingresses", "ing", "networking.k8s.io/v1", "true", "Ingress"),
    ("ipaddresses", "ip", "networking.k8s.io/v1", "false", "IPAddress"),
    ("networkpolicies", "netpol", "networking.k8s.io/v1", "true", "NetworkPolicy"),
    ("servicecidrs", "", "networking.k8s.io/v1", "false", "ServiceCIDR"),
    ("runtimeclasses", "", "node.k8s.io/v1", "false", "RuntimeClass"),
    ("poddisruptionbudgets", "pdb", "policy/v1", "true", "PodDisruptionBudget"),
    ("clusterrolebindings", "", "rbac.authorization.k8s.io/v1", "false", "ClusterRoleBinding"),
    ("clusterroles", "", "rbac.authorization.k8s.io/v1", "false", "ClusterRole"),
    ("rolebindings", "", "rbac.authorization.k8s.io/v1", "true", "RoleBinding"),
    ("roles", "", "rbac.authorization.k8s.io/v1", "true", "Role"),
    ("priorityclasses", "pc", "scheduling.k8s.io/v1", "false", "PriorityClass"),
    ("csidrivers", "", "storage.k8s.io/v1", "false", "CSIDriver"),
    ("csinodes", "", "storage.k8s.io/v1", "false", "CSINode"),
    ("csistoragecapacities", "", "storage.k8s.io/v1", "true", "CSIStorageCapacity"),
    ("storageclasses", "sc", "storage.k8s.io/v1", "false", "StorageClass"),
    ("volumeattachments", "", "storage.k8s.io/v1", "false", "VolumeAttachment"),
];

#[test]
fn api_resources_lists_every_default_resource() {
    let s = server(&[]);
    for v in VERSIONS {
        let k = s.kubectl(v);
        let out = k.run(&["api-resources"]);
        let rows = table(out.ok());
        assert_eq!(rows[0], ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], "kubectl {v}");
        let got: Vec<(String, String, String, String, String)> =
            rows[1..].iter().map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone())).collect();
        for (name, short, gv, ns, kind) in EXPECTED {
            let want = (name.to_string(), short.to_string(), gv.to_string(), ns.to_string(), kind.to_string());
            assert!(got.contains(&want), "kubectl {v}: {want:?} missing from\n{}", out.stdout);
        }
        assert_eq!(got.len(), EXPECTED.len(), "kubectl {v}: extra resources in\n{}", out.stdout);
        // Categories: the API extensions, as upstream groups them.
        let ext = k.run(&["api-resources", "--categories=api-extensions", "-o", "name"]);
        let mut names: Vec<&str> = ext.ok().lines().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "apiservices.apiregistration.k8s.io",
                "customresourcedefinitions.apiextensions.k8s.io",
                "mutatingwebhookconfigurations.admissionregistration.k8s.io",
                "validatingadmissionpolicies.admissionregistration.k8s.io",
                "validatingadmissionpolicybindings.admissionregistration.k8s.io",
                "validatingwebhookconfigurations.admissionregistration.k8s.io",
            ],
            "kubectl {v}"
        );
    }
}

/// A CSR of `CN=alice, O=devs` (P-256), base64 as `spec.request` carries it.
const CSR: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIYk1JR0JBZ0VBTUI4eERqQU1CZ05WQkFNTUJXRnNhV05sTVEwd0N3WURWUVFLREFSa1pYWnpNRmt3RXdZSApLb1pJemowQ0FRWUlLb1pJemowREFRY0RRZ0FFRFk2Z0xqRDN4dDhjN3Ard051TmdXMjc0cU4xcVJBYngvQ1g3ClkydTd2MkoyWHZuNVVoK2V3a0hybG8zQVRkMThuU0dPMmN2QkZYeDc0cnk3T0Njcm5xQUFNQW9HQ0NxR1NNNDkKQkFNQ0Ewa0FNRVlDSVFEaXZxc3FqdlFpMUdoeU4vT1NZT3FPZlNheDFzbS9yZ1FkTWdWWE4wdjArd0loQUwyWgpWRGJrbGpiTnU0SFBlam04UmV3SDN0TWUxQTBaL1hnVGJpTnlQMU5mCi0tLS0tRU5EIENFUlRJRklDQVRFIFJFUVVFU1QtLS0tLQo=";

/// One object of each stored kind: (resource, namespace, object, printed header, printed row;
/// `*` stands for an age).
fn samples() -> Vec<(&'static str, &'static str, Value, Vec<&'static str>, Vec<&'static str>)> {
    let hook = json!([{"name": "hook.example.com", "clientConfig": {"url": "https://example.com/hook"}, "sideEffects": "None", "admissionReviewVersions": ["v1"]}]);
    vec![
        (
            "mutatingwebhookconfigurations",
            "",
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "mw"}, "webhooks": hook}),
            vec!["NAME", "WEBHOOKS", "AGE"],
            vec!["mw", "1", "*"],
        ),
        (
            "validatingwebhookconfigurations",
            "",
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "vw"}, "webhooks": hook}),
            vec!["NAME", "WEBHOOKS", "AGE"],
            vec!["vw", "1", "*"],
        ),
        (
            "validatingadmissionpolicies",
            "",
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": {"name": "vap"},
                "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]}]},
                         "validations": [{"expression": "object.spec.replicas <= 5"}]}}),
            vec!["NAME", "VALIDATIONS", "PARAMKIND", "AGE"],
            vec!["vap", "1", "<unset>", "*"],
        ),
        (
            "validatingadmissionpolicybindings",
            "",
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": "vapb"}, "spec": {"policyName": "vap", "validationActions": ["Deny"]}}),
            vec!["NAME", "POLICYNAME", "PARAMREF", "AGE"],
            vec!["vapb", "vap", "<unset>", "*"],
        ),
        (
            "certificatesigningrequests",
            "",
            json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "alice"},
                "spec": {"request": CSR, "signerName": "example.com/signer", "usages": ["client auth"], "expirationSeconds": 86400}}),
            vec!["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"],
            vec!["alice", "*", "example.com/signer", "timonier-admin", "24h", "Pending"],
        ),
        (
            "flowschemas",
            "",
            json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": "fs"},
                "spec": {"priorityLevelConfiguration": {"name": "pl"}, "matchingPrecedence": 500, "distinguisherMethod": {"type": "ByUser"},
                         "rules": [{"subjects": [{"kind": "Group", "group": {"name": "devs"}}], "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": true, "namespaces": ["*"]}]}]}}),
            vec!["NAME", "PRIORITYLEVEL", "MATCHINGPRECEDENCE", "DISTINGUISHERMETHOD", "AGE", "MISSINGPL"],
            vec!["fs", "pl", "500", "ByUser", "*", "?"],
        ),
        (
            "prioritylevelconfigurations",
            "",
            json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration", "metadata": {"name": "pl"},
                "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "limitResponse": {"type": "Queue", "queuing": {"queues": 16, "handSize": 4}}}}}),
            vec!["NAME", "TYPE", "NOMINALCONCURRENCYSHARES", "QUEUES", "HANDSIZE", "QUEUELENGTHLIMIT", "AGE"],
            vec!["pl", "Limited", "5", "16", "4", "50", "*"],
        ),
        (
            "servicecidrs",
            "",
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": "extra"}, "spec": {"cidrs": ["10.100.0.0/16"]}}),
            vec!["NAME", "CIDRS", "AGE"],
            vec!["extra", "10.100.0.0/16", "*"],
        ),
        (
            "ipaddresses",
            "",
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "IPAddress", "metadata": {"name": "10.100.0.5"},
                "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}}}),
            vec!["NAME", "PARENTREF"],
            vec!["10.100.0.5", "services/default/kubernetes"],
        ),
        (
            "runtimeclasses",
            "",
            json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "gvisor"}, "handler": "runsc"}),
            vec!["NAME", "HANDLER", "AGE"],
            vec!["gvisor", "runsc", "*"],
        ),
        (
            "priorityclasses",
            "",
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000}),
            vec!["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
            vec!["high", "1000", "false", "*", "PreemptLowerPriority"],
        ),
        (
            "csidrivers",
            "",
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "csi.example.com"}, "spec": {}}),
            vec!["NAME", "ATTACHREQUIRED", "PODINFOONMOUNT", "STORAGECAPACITY", "TOKENREQUESTS", "REQUIRESREPUBLISH", "MODES", "AGE"],
            vec!["csi.example.com", "true", "false", "false", "<unset>", "false", "Persistent", "*"],
        ),
        (
            "csinodes",
            "",
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"name": "node1"}, "spec": {"drivers": [{"name": "csi.example.com", "nodeID": "n1"}]}}),
            vec!["NAME", "DRIVERS", "AGE"],
            vec!["node1", "1", "*"],
        ),
        (
            "csistoragecapacities",
            "default",
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity", "metadata": {"name": "cap1"}, "storageClassName": "standard", "capacity": "10Gi"}),
            vec!["NAME", "STORAGECLASSNAME", "CAPACITY"],
            vec!["cap1", "standard", "10Gi"],
        ),
        (
            "volumeattachments",
            "",
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment", "metadata": {"name": "va1"},
                "spec": {"attacher": "csi.example.com", "nodeName": "node1", "source": {"persistentVolumeName": "pv1"}}}),
            vec!["NAME", "ATTACHER", "PV", "NODE", "ATTACHED", "AGE"],
            vec!["va1", "csi.example.com", "pv1", "node1", "false", "*"],
        ),
    ]
}

fn assert_row(got: &[String], want: &[&str], context: &str) {
    assert_eq!(got.len(), want.len(), "{context}: {got:?}");
    for (g, w) in got.iter().zip(want) {
        if *w == "*" {
            assert!(!g.is_empty() && g != "<unknown>", "{context}: age {g:?}");
        } else {
            assert_eq!(g, w, "{context}: {got:?}");
        }
    }
}

#[test]
fn each_stored_kind_is_created_printed_listed_and_deleted() {
    let s = server(&[]);
    for v in VERSIONS {
        let k = s.kubectl(v);
        for (resource, ns, obj, header, row) in samples() {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let ns_args: Vec<&str> = if ns.is_empty() { vec![] } else { vec!["-n", ns] };
            let ctx = format!("kubectl {v} {resource}");
            let created = k.run_with_input(&[&["create", "-f", "-"][..], &ns_args].concat(), Some(&obj.to_string()));
            assert!(created.ok().contains(&format!("{name} created")), "{ctx}: {}", created.stdout);
            let got = k.run(&[&["get", resource, &name][..], &ns_args].concat());
            let rows = table(got.ok());
            assert_eq!(rows[0], header, "{ctx}");
            assert_row(&rows[1], &row, &ctx);
            let listed = k.run(&[&["get", resource, "-o", "name"][..], &ns_args].concat());
            assert!(listed.ok().lines().any(|l| l.ends_with(&format!("/{name}"))), "{ctx}: {}", listed.stdout);
            let fetched: Value = serde_json::from_str(k.run(&[&["get", resource, &name, "-o", "json"][..], &ns_args].concat()).ok()).unwrap();
            assert!(fetched["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()), "{ctx}");
            if resource == "certificatesigningrequests" {
                // Who asked is recorded; approval goes through the approval subresource.
                assert_eq!(fetched["spec"]["username"], "timonier-admin", "{ctx}");
                k.run(&["certificate", "approve", &name]).ok();
                let approved = table(k.run(&["get", "csr", &name]).ok());
                assert_eq!(approved[1][5], "Approved", "{ctx}");
            }
            let deleted = k.run(&[&["delete", resource, &name][..], &ns_args].concat());
            assert!(deleted.ok().contains(&format!("{name}\" deleted")), "{ctx}: {}", deleted.stdout);
            let gone = k.run(&[&["get", resource, &name][..], &ns_args].concat());
            assert!(gone.err().contains("NotFound") || gone.err().contains("not found"), "{ctx}: {}", gone.stderr);
        }
    }
}

#[test]
fn invalid_objects_are_refused_as_upstream() {
    let s = server(&[]);
    let k = s.kubectl("1.33");
    let refused = |obj: Value, want: &str| {
        let out = k.run_with_input(&["create", "-f", "-"], Some(&obj.to_string()));
        assert!(out.code != 0 && out.stderr.contains(want), "want {want:?}: {}", out.stderr);
    };
    refused(
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "system-mine"}, "value": 5}),
        "priority class names with 'system-' prefix are reserved for system use only",
    );
    refused(json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "huge"}, "value": 2000000000}), "maximum allowed value of a user defined priority is 1000000000");
    refused(
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "bad"},
            "webhooks": [{"name": "hook", "clientConfig": {}, "admissionReviewVersions": ["v1"]}]}),
        "webhooks[0].sideEffects: Required value",
    );
    refused(json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "r"}}), "handler: Required value");
    refused(
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "c"}, "spec": {"request": CSR, "signerName": "example.com/s", "usages": ["flying"]}}),
        "spec.usages[0]: Unsupported value: \"flying\"",
    );
    refused(json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": "c"}, "spec": {"cidrs": ["10.0.0.0/33"]}}), "must be a valid CIDR value");
    refused(
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration", "metadata": {"name": "p"}, "spec": {"type": "Fast"}}),
        "spec.type: Unsupported value: \"Fast\"",
    );
    refused(
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment", "metadata": {"name": "v"}, "spec": {"attacher": "a", "nodeName": "n", "source": {}}}),
        "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
    );
    // Server-side field validation knows the new kinds' schemas.
    refused(json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "r"}, "handler": "runc", "bogus": 1}), "unknown field \"bogus\"");
    let explain = k.run(&["explain", "priorityclasses.value"]);
    assert!(explain.ok().contains("integer"), "{}", explain.stdout);
}

fn review(k: &Kubectl, token: &str, audiences: &[&str]) -> Value {
    // `metadata` given: this server's OpenAPI v2 marks it required (k8s-openapi's types make
    // it so), which kubectl 1.27's client-side validation enforces; upstream's does not.
    let mut obj = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {}, "spec": {"token": token}});
    if !audiences.is_empty() {
        obj["spec"]["audiences"] = json!(audiences);
    }
    let out = k.run_with_input(&["create", "-f", "-", "-o", "json"], Some(&obj.to_string()));
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn token_reviews_use_the_servers_authenticators() {
    let dir = timonier_testkit::temp_dir("timonier-tokens-");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "alice-token,alice,1001,\"devs\"\n").unwrap();
    let s = server(&["--token-auth-file", tokens.to_str().unwrap()]);
    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
    for v in VERSIONS {
        let k = s.kubectl(v);
        let r = review(&k, "alice-token", &[]);
        assert_eq!(r["kind"], "TokenReview");
        assert_eq!(
            r["status"],
            json!({"authenticated": true, "user": {"username": "alice", "uid": "1001", "groups": ["devs", "system:authenticated"]}, "audiences": [ISSUER]}),
            "kubectl {v}"
        );
        // Refused, with the error upstream's authenticator chain gives (status.error).
        let refused = json!({"user": {}, "error": "invalid bearer token"});
        assert_eq!(review(&k, "not-a-token", &[])["status"], refused, "kubectl {v}");
        // A static token is for this server's audience only.
        assert_eq!(review(&k, "alice-token", &["vault"])["status"], refused, "kubectl {v}");
        let sa_token = k.run(&["create", "token", "default"]).ok().trim().to_string();
        let r = review(&k, &sa_token, &[]);
        assert_eq!(r["status"]["authenticated"], true, "kubectl {v}: {r}");
        assert_eq!(r["status"]["user"]["username"], "system:serviceaccount:default:default");
        assert_eq!(r["status"]["user"]["groups"], json!(["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]));
        assert!(r["status"]["user"]["extra"]["authentication.kubernetes.io/credential-id"][0].as_str().is_some_and(|c| c.starts_with("JTI=")), "{r}");
        let sa_uid = k.run(&["get", "sa", "default", "-o", "jsonpath={.metadata.uid}"]).ok().to_string();
        assert_eq!(r["status"]["user"]["uid"], sa_uid.as_str());
        assert_eq!(r["status"]["audiences"], json!([ISSUER]));
        // A token for another audience is valid for that audience only.
        let vault = k.run(&["create", "token", "default", "--audience", "vault"]).ok().trim().to_string();
        assert_eq!(
            review(&k, &vault, &[])["status"],
            json!({"user": {}, "error": format!("[invalid bearer token, token audiences [\"vault\"] is invalid for the target audiences [\"{ISSUER}\"], unknown]")})
        );
        assert_eq!(review(&k, &vault, &["vault", "other"])["status"]["audiences"], json!(["vault"]));
        // The account gone, its token no longer authenticates, and the error says why.
        k.run(&["create", "sa", "gone"]).ok();
        let gone = k.run(&["create", "token", "gone"]).ok().trim().to_string();
        assert_eq!(review(&k, &gone, &[])["status"]["authenticated"], true);
        k.run(&["delete", "sa", "gone"]).ok();
        let r = review(&k, &gone, &[]);
        assert!(r["status"]["authenticated"].is_null() && r["status"]["error"].as_str().is_some_and(|e| e.contains(r#"serviceaccounts "gone" not found"#)), "kubectl {v}: {r}");
        let empty = k.run_with_input(&["create", "-f", "-"], Some(r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {}, "spec": {}}"#));
        assert!(empty.stderr.contains("token is required for TokenReview in authentication"), "{}", empty.stderr);
    }
}

#[test]
fn component_statuses_priority_classes_and_bindings() {
    let s = server(&[]);
    for v in VERSIONS {
        let k = s.kubectl(v);
        let out = k.run(&["get", "componentstatuses"]);
        let rows = table(out.ok());
        assert_eq!(rows[0], ["NAME", "STATUS", "MESSAGE", "ERROR"], "kubectl {v}");
        for name in ["controller-manager", "scheduler", "etcd-0"] {
            assert!(rows.iter().any(|r| r == &[name, "Healthy", "ok", ""]), "kubectl {v}: {name}: {}", out.stdout);
        }
        assert!(out.stderr.contains("Warning: v1 ComponentStatus is deprecated in v1.19+"), "{}", out.stderr);
        let etcd: Value = serde_json::from_str(k.run(&["get", "cs", "etcd-0", "-o", "json"]).ok()).unwrap();
        assert_eq!(etcd["conditions"], json!([{"type": "Healthy", "status": "True", "message": "ok"}]));
        assert!(k.run(&["get", "cs", "kube-proxy"]).err().contains("componentstatuses \"kube-proxy\" not found"));

        let out = k.run(&["get", "priorityclasses"]);
        let rows = table(out.ok());
        assert_eq!(rows[0], ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"], "kubectl {v}");
        assert_row(&rows[1], &["system-cluster-critical", "2000000000", "false", "*", "PreemptLowerPriority"], "priorityclasses");
        assert_row(&rows[2], &["system-node-critical", "2000001000", "false", "*", "PreemptLowerPriority"], "priorityclasses");
        let cidrs = table(k.run(&["get", "servicecidrs"]).ok());
        assert_eq!(&cidrs[1][..2], ["kubernetes", "10.96.0.0/12"], "kubectl {v}");

        // POST bindings assigns the pod it names, once (no scheduler runs here).
        let pod = format!("web-{}", v.replace('.', "-"));
        k.run(&["run", &pod, "--image=busybox", "--restart=Never"]).ok();
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}});
        let path = s.dir.path().join(format!("binding-{pod}.json"));
        std::fs::write(&path, binding.to_string()).unwrap();
        let bound = k.run(&["create", "--raw", "/api/v1/namespaces/default/bindings", "-f", path.to_str().unwrap()]);
        assert!(bound.ok().contains("\"status\":\"Success\""), "{}", bound.stdout);
        assert_eq!(k.run(&["get", "pod", &pod, "-o", "jsonpath={.spec.nodeName}"]).ok(), "node-a");
        let again = k.run(&["create", "--raw", "/api/v1/namespaces/default/bindings", "-f", path.to_str().unwrap()]);
        assert!(again.stderr.contains("is already assigned to node"), "{}", again.stderr);
        assert!(k.run(&["get", "bindings"]).err().contains("the server does not allow this method on the requested resource"));
    }
}
