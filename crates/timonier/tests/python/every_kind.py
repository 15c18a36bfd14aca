"""The official Python client (kubernetes==37) across the whole API of a Timonier control plane.

For every resource the server lists in discovery and the client has a typed API for: create from
a minimal valid typed model, read, list (label selectors of every form, field selector, across
namespaces), patch, replace and delete through the typed methods, the answers deserialized into
the typed models (which check required fields). Then kubernetes.utils.create_from_yaml (a
multi-document file, a `kind: List`), create_from_dict, and watch.Watch().stream (ADDED /
MODIFIED / DELETED, resumption from a resourceVersion, 410 Gone).

argv: kubeconfig. Prints "every kind: ok" at the end; failures are collected and listed.
"""
import base64
import datetime
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from kubernetes import client, config, utils, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
api_client = client.ApiClient()
m = client  # the models live in kubernetes.client too

NS = "every-kind"
SUITE = {"suite": "every-kind"}
FAILURES = []
# Checks that meet a difference from kube-apiserver too large to fix here. Each is still run
# up to the failing call; it is reported but does not fail the script.
KNOWN_GAPS = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def case(name):
    """Runs a named group of checks; a failure is recorded and the script goes on."""
    def wrap(f):
        try:
            f()
            print("ok   %s" % name, flush=True)
        except Exception as e:  # noqa: BLE001 - any failure is a finding
            FAILURES.append(name)
            print("FAIL %s: %s" % (name, e), flush=True)
            traceback.print_exc(file=sys.stdout)
        return f
    return wrap


def meta(name, kind, namespaced=True, labels=None):
    lab = dict(SUITE, kind=kind)
    lab.update(labels or {})
    return m.V1ObjectMeta(name=name, namespace=NS if namespaced else None, labels=lab)


def status_of(e):
    return getattr(e, "status", None)


def pod_spec():
    return m.V1PodSpec(containers=[m.V1Container(name="c", image="busybox", command=["sleep", "3600"])], restart_policy="Always")


def template(app, restart="Always"):
    spec = pod_spec()
    spec.restart_policy = restart
    return m.V1PodTemplateSpec(metadata=m.V1ObjectMeta(labels={"app": app}), spec=spec)


def selector(app):
    return m.V1LabelSelector(match_labels={"app": app})


def csr_pem():
    with tempfile.TemporaryDirectory() as d:
        key = os.path.join(d, "k.pem")
        out = subprocess.run(
            ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-subj", "/CN=every-kind/O=tests"],
            check=True, capture_output=True)
        return out.stdout


# --- the discovery: what the server serves --------------------------------------------------

served = set()  # (group, version, plural)
for r in client.CoreV1Api().get_api_resources().resources:
    served.add(("", "v1", r.name))
UNMODELLED = []  # served group versions the client has no typed API for
for g in client.ApisApi().get_api_versions().groups:
    for v in g.versions:
        # The client's class for a group version, named as utils.create_from_yaml names it.
        cls = "".join(w.capitalize() for w in "".join(g.name.rsplit(".k8s.io", 1)).split(".")) + v.version.capitalize() + "Api"
        if not hasattr(client, cls):
            UNMODELLED.append(v.group_version)
            continue
        for r in getattr(client, cls)().get_api_resources().resources:
            served.add((g.name, v.version, r.name))


# --- one table row per kind -------------------------------------------------------------------
# (api class, group, version, plural, snake kind, namespaced, model class, make(name), mutate(obj))

def mk(**kw):
    return kw


CORE, APPS, BATCH = client.CoreV1Api(), client.AppsV1Api(), client.BatchV1Api()

KINDS = [
    mk(api=CORE, gv=("", "v1"), plural="configmaps", kind="config_map", model=m.V1ConfigMap,
       make=lambda n: m.V1ConfigMap(metadata=meta(n, "config_map"), data={"a": "1"}),
       mutate=lambda o: o.data.update({"b": "2"}), mutated=lambda o: o.data.get("b") == "2"),
    mk(api=CORE, gv=("", "v1"), plural="endpoints", kind="endpoints", model=m.V1Endpoints,
       make=lambda n: m.V1Endpoints(metadata=meta(n, "endpoints"), subsets=[m.V1EndpointSubset(
           addresses=[m.V1EndpointAddress(ip="10.1.2.3")], ports=[m.CoreV1EndpointPort(port=80, protocol="TCP")])])),
    mk(api=CORE, gv=("", "v1"), plural="events", kind="event", model=m.CoreV1Event,
       make=lambda n: m.CoreV1Event(metadata=meta(n, "event"), involved_object=m.V1ObjectReference(kind="Pod", name="x", namespace=NS),
                                    reason="Tested", message="a test event", type="Normal",
                                    first_timestamp=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0),
                                    source=m.V1EventSource(component="every-kind"))),
    mk(api=CORE, gv=("", "v1"), plural="limitranges", kind="limit_range", model=m.V1LimitRange,
       make=lambda n: m.V1LimitRange(metadata=meta(n, "limit_range"), spec=m.V1LimitRangeSpec(
           limits=[m.V1LimitRangeItem(type="Container", max={"cpu": "2"})]))),
    mk(api=CORE, gv=("", "v1"), plural="namespaces", kind="namespace", model=m.V1Namespace, namespaced=False,
       make=lambda n: m.V1Namespace(metadata=meta(n, "namespace", False)), terminating_ok=True),
    mk(api=CORE, gv=("", "v1"), plural="nodes", kind="node", model=m.V1Node, namespaced=False,
       make=lambda n: m.V1Node(metadata=meta(n, "node", False), spec=m.V1NodeSpec(unschedulable=True))),
    mk(api=CORE, gv=("", "v1"), plural="persistentvolumeclaims", kind="persistent_volume_claim", model=m.V1PersistentVolumeClaim,
       make=lambda n: m.V1PersistentVolumeClaim(metadata=meta(n, "persistent_volume_claim"), spec=m.V1PersistentVolumeClaimSpec(
           access_modes=["ReadWriteOnce"], resources=m.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
           storage_class_name="none"))),
    mk(api=CORE, gv=("", "v1"), plural="persistentvolumes", kind="persistent_volume", model=m.V1PersistentVolume, namespaced=False,
       make=lambda n: m.V1PersistentVolume(metadata=meta(n, "persistent_volume", False), spec=m.V1PersistentVolumeSpec(
           capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"], host_path=m.V1HostPathVolumeSource(path="/tmp/every-kind"),
           storage_class_name="none"))),
    mk(api=CORE, gv=("", "v1"), plural="pods", kind="pod", model=m.V1Pod,
       make=lambda n: m.V1Pod(metadata=meta(n, "pod"), spec=pod_spec()),
       delete_kw={"grace_period_seconds": 0}),
    mk(api=CORE, gv=("", "v1"), plural="podtemplates", kind="pod_template", model=m.V1PodTemplate,
       make=lambda n: m.V1PodTemplate(metadata=meta(n, "pod_template"), template=template("pt"))),
    mk(api=CORE, gv=("", "v1"), plural="replicationcontrollers", kind="replication_controller", model=m.V1ReplicationController,
       make=lambda n: m.V1ReplicationController(metadata=meta(n, "replication_controller"), spec=m.V1ReplicationControllerSpec(
           replicas=0, selector={"app": "rc"}, template=template("rc")))),
    mk(api=CORE, gv=("", "v1"), plural="resourcequotas", kind="resource_quota", model=m.V1ResourceQuota,
       make=lambda n: m.V1ResourceQuota(metadata=meta(n, "resource_quota"), spec=m.V1ResourceQuotaSpec(hard={"configmaps": "1000"}))),
    mk(api=CORE, gv=("", "v1"), plural="secrets", kind="secret", model=m.V1Secret,
       make=lambda n: m.V1Secret(metadata=meta(n, "secret"), string_data={"k": "v"}),
       created=lambda o: o.data == {"k": base64.b64encode(b"v").decode()}),
    mk(api=CORE, gv=("", "v1"), plural="serviceaccounts", kind="service_account", model=m.V1ServiceAccount,
       make=lambda n: m.V1ServiceAccount(metadata=meta(n, "service_account"))),
    mk(api=CORE, gv=("", "v1"), plural="services", kind="service", model=m.V1Service,
       make=lambda n: m.V1Service(metadata=meta(n, "service"), spec=m.V1ServiceSpec(
           ports=[m.V1ServicePort(port=80, target_port=8080)], selector={"app": "svc"})),
       created=lambda o: o.spec.cluster_ip and o.spec.type == "ClusterIP" and o.spec.ports[0].protocol == "TCP"),

    mk(api=APPS, gv=("apps", "v1"), plural="controllerrevisions", kind="controller_revision", model=m.V1ControllerRevision,
       make=lambda n: m.V1ControllerRevision(metadata=meta(n, "controller_revision"), revision=1, data={"spec": {}})),
    mk(api=APPS, gv=("apps", "v1"), plural="daemonsets", kind="daemon_set", model=m.V1DaemonSet,
       make=lambda n: m.V1DaemonSet(metadata=meta(n, "daemon_set"), spec=m.V1DaemonSetSpec(selector=selector("ds"), template=template("ds")))),
    mk(api=APPS, gv=("apps", "v1"), plural="deployments", kind="deployment", model=m.V1Deployment,
       make=lambda n: m.V1Deployment(metadata=meta(n, "deployment"), spec=m.V1DeploymentSpec(
           replicas=0, selector=selector("deploy"), template=template("deploy"))),
       created=lambda o: o.spec.strategy.type == "RollingUpdate" and o.spec.revision_history_limit == 10),
    mk(api=APPS, gv=("apps", "v1"), plural="replicasets", kind="replica_set", model=m.V1ReplicaSet,
       make=lambda n: m.V1ReplicaSet(metadata=meta(n, "replica_set"), spec=m.V1ReplicaSetSpec(
           replicas=0, selector=selector("rs"), template=template("rs")))),
    mk(api=APPS, gv=("apps", "v1"), plural="statefulsets", kind="stateful_set", model=m.V1StatefulSet,
       make=lambda n: m.V1StatefulSet(metadata=meta(n, "stateful_set"), spec=m.V1StatefulSetSpec(
           replicas=0, selector=selector("sts"), template=template("sts"), service_name="sts"))),

    mk(api=client.AutoscalingV2Api(), gv=("autoscaling", "v2"), plural="horizontalpodautoscalers", kind="horizontal_pod_autoscaler",
       model=m.V2HorizontalPodAutoscaler,
       make=lambda n: m.V2HorizontalPodAutoscaler(metadata=meta(n, "horizontal_pod_autoscaler"), spec=m.V2HorizontalPodAutoscalerSpec(
           max_replicas=3, scale_target_ref=m.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment", name="x")))),
    # Served too, stored as v2: a v1 HPA without a target gets v2's explicit default CPU
    # target (80%), as kube-apiserver's conversion gives it.
    mk(api=client.AutoscalingV1Api(), gv=("autoscaling", "v1"), plural="horizontalpodautoscalers", kind="horizontal_pod_autoscaler",
       model=m.V1HorizontalPodAutoscaler,
       created=lambda o: o.spec.target_cpu_utilization_percentage == 80,
       mutate=lambda o: setattr(o.spec, "target_cpu_utilization_percentage", 60),
       mutated=lambda o: o.spec.target_cpu_utilization_percentage == 60,
       make=lambda n: m.V1HorizontalPodAutoscaler(metadata=meta(n, "horizontal_pod_autoscaler_v1"), spec=m.V1HorizontalPodAutoscalerSpec(
           max_replicas=3, scale_target_ref=m.V1CrossVersionObjectReference(api_version="apps/v1", kind="Deployment", name="x")))),

    mk(api=BATCH, gv=("batch", "v1"), plural="cronjobs", kind="cron_job", model=m.V1CronJob,
       make=lambda n: m.V1CronJob(metadata=meta(n, "cron_job"), spec=m.V1CronJobSpec(
           schedule="0 0 1 1 *", suspend=True,
           job_template=m.V1JobTemplateSpec(spec=m.V1JobSpec(template=template("cj", "Never")))))),
    mk(api=BATCH, gv=("batch", "v1"), plural="jobs", kind="job", model=m.V1Job,
       make=lambda n: m.V1Job(metadata=meta(n, "job"), spec=m.V1JobSpec(suspend=True, template=template("job", "Never"))),
       created=lambda o: o.spec.selector is not None and o.spec.backoff_limit == 6,
       delete_kw={"propagation_policy": "Background"}),

    mk(api=client.CertificatesV1Api(), gv=("certificates.k8s.io", "v1"), plural="certificatesigningrequests",
       kind="certificate_signing_request", model=m.V1CertificateSigningRequest, namespaced=False,
       make=lambda n: m.V1CertificateSigningRequest(metadata=meta(n, "certificate_signing_request", False), spec=m.V1CertificateSigningRequestSpec(
           request=base64.b64encode(csr_pem()).decode(), signer_name="example.com/every-kind", usages=["digital signature"])),
       created=lambda o: o.spec.username is not None),
    mk(api=client.CoordinationV1Api(), gv=("coordination.k8s.io", "v1"), plural="leases", kind="lease", model=m.V1Lease,
       make=lambda n: m.V1Lease(metadata=meta(n, "lease"), spec=m.V1LeaseSpec(
           holder_identity="every-kind", lease_duration_seconds=15,
           renew_time=datetime.datetime.now(datetime.timezone.utc)))),
    mk(api=client.DiscoveryV1Api(), gv=("discovery.k8s.io", "v1"), plural="endpointslices", kind="endpoint_slice", model=m.V1EndpointSlice,
       make=lambda n: m.V1EndpointSlice(metadata=meta(n, "endpoint_slice"), address_type="IPv4",
                                        endpoints=[m.V1Endpoint(addresses=["10.1.2.3"])], ports=[m.DiscoveryV1EndpointPort(port=80)])),
    mk(api=client.EventsV1Api(), gv=("events.k8s.io", "v1"), plural="events", kind="event", model=m.EventsV1Event,
       make=lambda n: m.EventsV1Event(metadata=meta(n, "events_event"), event_time=datetime.datetime.now(datetime.timezone.utc),
                                      reporting_controller="example.com/every-kind", reporting_instance="every-kind-1",
                                      action="Testing", reason="Tested", type="Normal", note="a test event",
                                      regarding=m.V1ObjectReference(kind="Pod", name="x", namespace=NS)),
       created=lambda o: o.event_time is not None and o.reporting_controller == "example.com/every-kind"),
    mk(api=client.FlowcontrolApiserverV1Api(), gv=("flowcontrol.apiserver.k8s.io", "v1"), plural="flowschemas", kind="flow_schema",
       model=m.V1FlowSchema, namespaced=False,
       make=lambda n: m.V1FlowSchema(metadata=meta(n, "flow_schema", False), spec=m.V1FlowSchemaSpec(
           matching_precedence=9000, priority_level_configuration=m.V1PriorityLevelConfigurationReference(name="global-default"),
           rules=[m.V1PolicyRulesWithSubjects(subjects=[m.FlowcontrolV1Subject(kind="User", user=m.V1UserSubject(name="nobody"))],
                                              resource_rules=[m.V1ResourcePolicyRule(api_groups=["example.com"], resources=["widgets"], verbs=["get"], cluster_scope=True)])]))),
    mk(api=client.FlowcontrolApiserverV1Api(), gv=("flowcontrol.apiserver.k8s.io", "v1"), plural="prioritylevelconfigurations",
       kind="priority_level_configuration", model=m.V1PriorityLevelConfiguration, namespaced=False,
       make=lambda n: m.V1PriorityLevelConfiguration(metadata=meta(n, "priority_level_configuration", False), spec=m.V1PriorityLevelConfigurationSpec(
           type="Limited", limited=m.V1LimitedPriorityLevelConfiguration(nominal_concurrency_shares=5, limit_response=m.V1LimitResponse(type="Reject"))))),

    mk(api=client.NetworkingV1Api(), gv=("networking.k8s.io", "v1"), plural="ingressclasses", kind="ingress_class", model=m.V1IngressClass, namespaced=False,
       make=lambda n: m.V1IngressClass(metadata=meta(n, "ingress_class", False), spec=m.V1IngressClassSpec(controller="example.com/every-kind"))),
    mk(api=client.NetworkingV1Api(), gv=("networking.k8s.io", "v1"), plural="ingresses", kind="ingress", model=m.V1Ingress,
       make=lambda n: m.V1Ingress(metadata=meta(n, "ingress"), spec=m.V1IngressSpec(rules=[m.V1IngressRule(
           host="every-kind.example.com", http=m.V1HTTPIngressRuleValue(paths=[m.V1HTTPIngressPath(
               path="/", path_type="Prefix", backend=m.V1IngressBackend(service=m.V1IngressServiceBackend(
                   name="svc", port=m.V1ServiceBackendPort(number=80))))]))]))),
    mk(api=client.NetworkingV1Api(), gv=("networking.k8s.io", "v1"), plural="ipaddresses", kind="ip_address", model=m.V1IPAddress, namespaced=False,
       name="10.97.3.4",
       make=lambda n: m.V1IPAddress(metadata=meta(n, "ip_address", False), spec=m.V1IPAddressSpec(
           parent_ref=m.V1ParentReference(resource="services", name="x", namespace=NS)))),
    mk(api=client.NetworkingV1Api(), gv=("networking.k8s.io", "v1"), plural="networkpolicies", kind="network_policy", model=m.V1NetworkPolicy,
       make=lambda n: m.V1NetworkPolicy(metadata=meta(n, "network_policy"), spec=m.V1NetworkPolicySpec(pod_selector=m.V1LabelSelector())),
       created=lambda o: o.spec.policy_types == ["Ingress"]),
    mk(api=client.NetworkingV1Api(), gv=("networking.k8s.io", "v1"), plural="servicecidrs", kind="service_cidr", model=m.V1ServiceCIDR, namespaced=False,
       make=lambda n: m.V1ServiceCIDR(metadata=meta(n, "service_cidr", False), spec=m.V1ServiceCIDRSpec(cidrs=["10.233.0.0/24"]))),
    mk(api=client.NodeV1Api(), gv=("node.k8s.io", "v1"), plural="runtimeclasses", kind="runtime_class", model=m.V1RuntimeClass, namespaced=False,
       make=lambda n: m.V1RuntimeClass(metadata=meta(n, "runtime_class", False), handler="every-kind")),
    mk(api=client.PolicyV1Api(), gv=("policy", "v1"), plural="poddisruptionbudgets", kind="pod_disruption_budget", model=m.V1PodDisruptionBudget,
       make=lambda n: m.V1PodDisruptionBudget(metadata=meta(n, "pod_disruption_budget"), spec=m.V1PodDisruptionBudgetSpec(
           min_available=1, selector=selector("pdb")))),

    mk(api=client.RbacAuthorizationV1Api(), gv=("rbac.authorization.k8s.io", "v1"), plural="clusterroles", kind="cluster_role", model=m.V1ClusterRole, namespaced=False,
       make=lambda n: m.V1ClusterRole(metadata=meta(n, "cluster_role", False), rules=[m.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"])])),
    mk(api=client.RbacAuthorizationV1Api(), gv=("rbac.authorization.k8s.io", "v1"), plural="clusterrolebindings", kind="cluster_role_binding",
       model=m.V1ClusterRoleBinding, namespaced=False,
       make=lambda n: m.V1ClusterRoleBinding(metadata=meta(n, "cluster_role_binding", False),
                                             role_ref=m.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"),
                                             subjects=[m.RbacV1Subject(kind="User", name="every-kind", api_group="rbac.authorization.k8s.io")])),
    mk(api=client.RbacAuthorizationV1Api(), gv=("rbac.authorization.k8s.io", "v1"), plural="roles", kind="role", model=m.V1Role,
       make=lambda n: m.V1Role(metadata=meta(n, "role"), rules=[m.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])])),
    mk(api=client.RbacAuthorizationV1Api(), gv=("rbac.authorization.k8s.io", "v1"), plural="rolebindings", kind="role_binding", model=m.V1RoleBinding,
       make=lambda n: m.V1RoleBinding(metadata=meta(n, "role_binding"),
                                      role_ref=m.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"),
                                      subjects=[m.RbacV1Subject(kind="ServiceAccount", name="default", namespace=NS)])),
    mk(api=client.SchedulingV1Api(), gv=("scheduling.k8s.io", "v1"), plural="priorityclasses", kind="priority_class", model=m.V1PriorityClass, namespaced=False,
       make=lambda n: m.V1PriorityClass(metadata=meta(n, "priority_class", False), value=1000),
       created=lambda o: o.preemption_policy == "PreemptLowerPriority"),

    mk(api=client.StorageV1Api(), gv=("storage.k8s.io", "v1"), plural="csidrivers", kind="csi_driver", model=m.V1CSIDriver, namespaced=False,
       name="every-kind.example.com",
       make=lambda n: m.V1CSIDriver(metadata=meta(n, "csi_driver", False), spec=m.V1CSIDriverSpec(attach_required=False))),
    mk(api=client.StorageV1Api(), gv=("storage.k8s.io", "v1"), plural="csinodes", kind="csi_node", model=m.V1CSINode, namespaced=False,
       make=lambda n: m.V1CSINode(metadata=meta(n, "csi_node", False), spec=m.V1CSINodeSpec(drivers=[
           m.V1CSINodeDriver(name="every-kind.example.com", node_id="n1")]))),
    mk(api=client.StorageV1Api(), gv=("storage.k8s.io", "v1"), plural="csistoragecapacities", kind="csi_storage_capacity",
       model=m.V1CSIStorageCapacity,
       make=lambda n: m.V1CSIStorageCapacity(metadata=meta(n, "csi_storage_capacity"), storage_class_name="standard", capacity="10Gi")),
    mk(api=client.StorageV1Api(), gv=("storage.k8s.io", "v1"), plural="storageclasses", kind="storage_class", model=m.V1StorageClass, namespaced=False,
       make=lambda n: m.V1StorageClass(metadata=meta(n, "storage_class", False), provisioner="example.com/every-kind"),
       created=lambda o: o.reclaim_policy == "Delete" and o.volume_binding_mode == "Immediate"),
    mk(api=client.StorageV1Api(), gv=("storage.k8s.io", "v1"), plural="volumeattachments", kind="volume_attachment", model=m.V1VolumeAttachment, namespaced=False,
       make=lambda n: m.V1VolumeAttachment(metadata=meta(n, "volume_attachment", False), spec=m.V1VolumeAttachmentSpec(
           attacher="every-kind.example.com", node_name="n1", source=m.V1VolumeAttachmentSource(persistent_volume_name="pv1")))),

    mk(api=client.AdmissionregistrationV1Api(), gv=("admissionregistration.k8s.io", "v1"), plural="mutatingwebhookconfigurations",
       kind="mutating_webhook_configuration", model=m.V1MutatingWebhookConfiguration, namespaced=False,
       # A webhook no request ever matches (an object label nothing carries), and ignored if called.
       make=lambda n: m.V1MutatingWebhookConfiguration(metadata=meta(n, "mutating_webhook_configuration", False), webhooks=[m.V1MutatingWebhook(
           name="never.every-kind.example.com", admission_review_versions=["v1"], side_effects="None", failure_policy="Ignore",
           client_config=m.AdmissionregistrationV1WebhookClientConfig(url="https://127.0.0.1:1/never"),
           object_selector=m.V1LabelSelector(match_labels={"every-kind-never": "true"}),
           rules=[m.V1RuleWithOperations(api_groups=["example.com"], api_versions=["v1"], operations=["CREATE"], resources=["widgets"])])]),
       created=lambda o: o.webhooks[0].timeout_seconds == 10 and o.webhooks[0].match_policy == "Equivalent" and o.webhooks[0].reinvocation_policy == "Never"),
    mk(api=client.AdmissionregistrationV1Api(), gv=("admissionregistration.k8s.io", "v1"), plural="validatingwebhookconfigurations",
       kind="validating_webhook_configuration", model=m.V1ValidatingWebhookConfiguration, namespaced=False,
       make=lambda n: m.V1ValidatingWebhookConfiguration(metadata=meta(n, "validating_webhook_configuration", False), webhooks=[m.V1ValidatingWebhook(
           name="never.every-kind.example.com", admission_review_versions=["v1"], side_effects="None", failure_policy="Ignore",
           client_config=m.AdmissionregistrationV1WebhookClientConfig(url="https://127.0.0.1:1/never"),
           object_selector=m.V1LabelSelector(match_labels={"every-kind-never": "true"}),
           rules=[m.V1RuleWithOperations(api_groups=["example.com"], api_versions=["v1"], operations=["CREATE"], resources=["widgets"])])])),
    mk(api=client.AdmissionregistrationV1Api(), gv=("admissionregistration.k8s.io", "v1"), plural="validatingadmissionpolicies",
       kind="validating_admission_policy", model=m.V1ValidatingAdmissionPolicy, namespaced=False,
       make=lambda n: m.V1ValidatingAdmissionPolicy(metadata=meta(n, "validating_admission_policy", False), spec=m.V1ValidatingAdmissionPolicySpec(
           match_constraints=m.V1MatchResources(resource_rules=[m.V1NamedRuleWithOperations(
               api_groups=["example.com"], api_versions=["v1"], operations=["CREATE"], resources=["widgets"])]),
           validations=[m.V1Validation(expression="true")]))),
    mk(api=client.AdmissionregistrationV1Api(), gv=("admissionregistration.k8s.io", "v1"), plural="validatingadmissionpolicybindings",
       kind="validating_admission_policy_binding", model=m.V1ValidatingAdmissionPolicyBinding, namespaced=False,
       make=lambda n: m.V1ValidatingAdmissionPolicyBinding(metadata=meta(n, "validating_admission_policy_binding", False),
                                                           spec=m.V1ValidatingAdmissionPolicyBindingSpec(policy_name="every-kind", validation_actions=["Deny"]))),
    mk(api=client.ApiextensionsV1Api(), gv=("apiextensions.k8s.io", "v1"), plural="customresourcedefinitions",
       kind="custom_resource_definition", model=m.V1CustomResourceDefinition, namespaced=False,
       name="gadgets.every-kind.example.com",
       make=lambda n: m.V1CustomResourceDefinition(metadata=meta(n, "custom_resource_definition", False), spec=m.V1CustomResourceDefinitionSpec(
           group="every-kind.example.com", scope="Namespaced",
           names=m.V1CustomResourceDefinitionNames(plural="gadgets", singular="gadget", kind="Gadget", list_kind="GadgetList"),
           versions=[m.V1CustomResourceDefinitionVersion(name="v1", served=True, storage=True, schema=m.V1CustomResourceValidation(
               open_apiv3_schema=m.V1JSONSchemaProps(type="object", properties={
                   "spec": m.V1JSONSchemaProps(type="object", properties={"size": m.V1JSONSchemaProps(type="integer")})})))])),
       created=lambda o: o.status is not None and o.status.accepted_names.singular == "gadget" and o.spec.names.list_kind == "GadgetList"),
    # Last: an APIService for a group nothing serves (its Service does not exist), so that
    # nothing earlier depends on its availability.
    mk(api=client.ApiregistrationV1Api(), gv=("apiregistration.k8s.io", "v1"), plural="apiservices", kind="api_service",
       model=m.V1APIService, namespaced=False, name="v1.every-kind-aggregated.example.com",
       make=lambda n: m.V1APIService(metadata=meta(n, "api_service", False), spec=m.V1APIServiceSpec(
           group="every-kind-aggregated.example.com", version="v1", group_priority_minimum=1000, version_priority=15,
           insecure_skip_tls_verify=True, service=m.ApiregistrationV1ServiceReference(name="every-kind-api", namespace=NS)))),
]


def call(row, verb, *args, **kw):
    ns = row.get("namespaced", True)
    k = row["kind"]
    name = "%s_namespaced_%s" % (verb, k) if ns and verb != "list_all" else "%s_%s" % (verb, k)
    if verb == "list_all":
        name = "list_%s_for_all_namespaces" % k
    f = getattr(row["api"], name)
    if ns and verb not in ("list_all",):
        if verb in ("create", "list", "delete_collection"):
            return f(NS, *args, **kw)
        return f(args[0], NS, *args[1:], **kw)
    return f(*args, **kw)


def names(lst):
    return sorted(o.metadata.name for o in lst.items)


def crud(row):
    k = row["kind"]
    name = row.get("name") or ("ek-" + k.replace("_", "-"))
    model = row["model"]
    klabel = row["make"](name).metadata.labels["kind"]
    created = call(row, "create", row["make"](name))
    check(isinstance(created, model), "create returned %s" % type(created).__name__)
    check(created.metadata.name == name and created.metadata.uid and created.metadata.resource_version,
          "created metadata %r" % created.metadata)
    check(created.metadata.creation_timestamp is not None, "no creationTimestamp")
    if row.get("created"):
        check(row["created"](created), "created object lacks the upstream defaults: %r" % created)

    got = call(row, "read", name)
    check(isinstance(got, model) and got.metadata.uid == created.metadata.uid, "read back another object")

    # Label selectors: equality, inequality, set-based, existence; field selector on the name.
    for sel, want in [
        ("suite=every-kind,kind=%s" % klabel, [name]),
        ("suite==every-kind,kind!=other,kind=%s" % klabel, [name]),
        ("kind in (%s,nothing),suite" % klabel, [name]),
        ("kind notin (%s),kind=%s" % (klabel, klabel), []),
        ("!suite,kind=%s" % klabel, []),
        ("suite=other", []),
    ]:
        lst = call(row, "list", label_selector=sel)
        check(names(lst) == want, "list with %r: %r, want %r" % (sel, names(lst), want))
        check(lst.metadata.resource_version, "list has no resourceVersion")
    lst = call(row, "list", resource_version="0", resource_version_match="NotOlderThan", label_selector="kind=%s" % klabel)
    check(names(lst) == [name], "list at resourceVersion 0: %r" % names(lst))
    lst = call(row, "list", field_selector="metadata.name=%s" % name)
    check(names(lst) == [name], "list with field selector: %r" % names(lst))
    if row.get("namespaced", True):
        lst = call(row, "list_all", label_selector="kind=%s" % klabel)
        check(names(lst) == [name], "list across namespaces: %r" % names(lst))
    # Paging: limit 1 answers one item and (when more exist) a continue token.
    lst = call(row, "list", limit=1)
    check(len(lst.items) <= 1, "limit=1 answered %d items" % len(lst.items))

    # Patch (the client sends a strategic merge patch for a dict body on typed kinds).
    patched = call(row, "patch", name, {"metadata": {"labels": {"patched": "yes"}}})
    check(isinstance(patched, model) and patched.metadata.labels.get("patched") == "yes", "patch: labels %r" % patched.metadata.labels)
    check(patched.metadata.resource_version != created.metadata.resource_version, "patch kept the resourceVersion")
    # JSON patch through the typed method (a list body is sent as application/json-patch+json).
    patched = call(row, "patch", name, [{"op": "add", "path": "/metadata/annotations", "value": {"json-patched": "yes"}}])
    check(patched.metadata.annotations == {"json-patched": "yes"}, "json patch: annotations %r" % patched.metadata.annotations)

    # Replace what was read, with a change; a stale resourceVersion then conflicts.
    # (Controllers write the status of some kinds meanwhile: a conflict is retried, as
    # clients do, from a fresh read.)
    for attempt in range(5):
        cur = call(row, "read", name)
        cur.metadata.annotations = {"replaced": "yes"}
        if row.get("mutate"):
            row["mutate"](cur)
        try:
            replaced = call(row, "replace", name, cur)
            break
        except ApiException as e:
            if e.status != 409 or attempt == 4:
                raise
    check(isinstance(replaced, model) and replaced.metadata.annotations == {"replaced": "yes"}, "replace: annotations %r" % replaced.metadata.annotations)
    if row.get("mutated"):
        check(row["mutated"](replaced), "replace did not take the change")
    try:
        call(row, "replace", name, cur)
        raise AssertionError("replace with a stale resourceVersion succeeded")
    except ApiException as e:
        check(e.status == 409, "stale replace: %s" % e.status)

    # Delete: the typed answer, then the object is gone (or, for a namespace, terminating).
    # The client declares the kind's model for the registries that answer the deleted object
    # (pods, services, …) and a plain object for the others, which answer a Status.
    gone = call(row, "delete", name, **row.get("delete_kw", {}))
    if isinstance(gone, dict):
        kind = gone.get("kind")
        check(kind == created.kind or
              (kind == "Status" and gone.get("status") == "Success" and gone.get("details", {}).get("name") == name),
              "delete answered %r" % gone)
    else:
        check(isinstance(gone, model) and gone.metadata.name == name, "delete answered %r" % type(gone).__name__)
    deadline = time.time() + 30
    while True:
        try:
            o = call(row, "read", name)
            if row.get("terminating_ok") and o.metadata.deletion_timestamp is not None:
                break
        except ApiException as e:
            check(e.status == 404, "read after delete: %s" % e.status)
            break
        if time.time() > deadline:
            raise AssertionError("still there 30 s after delete: finalizers %r" % o.metadata.finalizers)
        time.sleep(0.2)
    try:
        call(row, "delete", name)
        if not row.get("terminating_ok"):
            raise AssertionError("second delete succeeded")
    except ApiException as e:
        check(e.status in (404, 409), "second delete: %s" % e.status)

    # deletecollection with a label selector: only the selected objects go.
    if hasattr(row["api"], ("delete_collection_namespaced_%s" if row.get("namespaced", True) else "delete_collection_%s") % k) and not row.get("name"):
        for n in ("a", "b"):
            o = row["make"]("%s-%s" % (name, n))
            o.metadata.labels["batch"] = n
            call(row, "create", o)
        call(row, "delete_collection", label_selector="kind=%s,batch=a" % klabel, **row.get("delete_kw", {}))
        deadline = time.time() + 30
        while names(call(row, "list", label_selector="kind=%s" % klabel)) != [name + "-b"]:
            check(time.time() < deadline, "after deletecollection: %r" % names(call(row, "list", label_selector="kind=%s" % klabel)))
            time.sleep(0.2)
        call(row, "delete", name + "-b", **row.get("delete_kw", {}))


@case("namespace for the suite")
def _():
    CORE.create_namespace(m.V1Namespace(metadata=m.V1ObjectMeta(name=NS)))
    # Namespaced objects wait for the namespace's default ServiceAccount only when pods need it.


for row in KINDS:
    g, v = row["gv"]
    label = "%s/%s %s" % (g or "core", v, row["plural"])
    if (g, v, row["plural"]) not in served:
        if row.get("gap"):
            KNOWN_GAPS.append("%s: %s" % (label, row["gap"]))
            print("gap  %s: %s" % (label, row["gap"]), flush=True)
            continue
        FAILURES.append(label)
        print("FAIL %s: not served" % label, flush=True)
        continue
    case(label)(lambda row=row: crud(row))

covered = {(r["gv"][0], r["gv"][1], r["plural"]) for r in KINDS}
# Kinds with create-only, read-only or subresource semantics, checked one by one below.
special = {("", "v1", "bindings"), ("", "v1", "componentstatuses"),
           ("authentication.k8s.io", "v1", "tokenreviews"), ("authentication.k8s.io", "v1", "selfsubjectreviews"),
           ("authorization.k8s.io", "v1", "localsubjectaccessreviews"), ("authorization.k8s.io", "v1", "selfsubjectaccessreviews"),
           ("authorization.k8s.io", "v1", "selfsubjectrulesreviews"), ("authorization.k8s.io", "v1", "subjectaccessreviews")}
for (g, v, p) in sorted(served):
    if "/" in p or (g, v, p) in covered or (g, v, p) in special:
        continue
    FAILURES.append("%s/%s %s" % (g, v, p))
    print("FAIL %s/%s %s: served but not covered by this script" % (g or "core", v, p), flush=True)


# --- create-only and read-only kinds, subresources -----------------------------------------

@case("core/v1 componentstatuses")
def _():
    lst = CORE.list_component_status()
    check(isinstance(lst, m.V1ComponentStatusList) and lst.items, "componentstatuses %r" % lst)
    cs = CORE.read_component_status(lst.items[0].metadata.name)
    check(isinstance(cs, m.V1ComponentStatus) and cs.conditions[0].type == "Healthy", "componentstatus %r" % cs)


@case("core/v1 bindings and pods/binding")
def _():
    for n in ("ek-bind-a", "ek-bind-b"):
        CORE.create_namespaced_pod(NS, m.V1Pod(metadata=meta(n, "bound"), spec=pod_spec()))
    # The client declares V1Binding (which requires `target`) as the answer, but kube-apiserver
    # answers a Status: users read the raw answer (kubernetes-client/python#825).
    r = CORE.create_namespaced_binding(NS, m.V1Binding(metadata=m.V1ObjectMeta(name="ek-bind-a"),
                                                        target=m.V1ObjectReference(kind="Node", name="ek-node-x")),
                                       _preload_content=False)
    import json
    body = json.loads(r.data)
    check(r.status == 201 and body.get("kind") == "Status" and body.get("status") == "Success", "binding answer %s %r" % (r.status, body))
    r = CORE.create_namespaced_pod_binding("ek-bind-b", NS, m.V1Binding(metadata=m.V1ObjectMeta(name="ek-bind-b"),
                                                                         target=m.V1ObjectReference(kind="Node", name="ek-node-x")),
                                           _preload_content=False)
    check(r.status == 201, "pods/binding answer %s" % r.status)
    for n in ("ek-bind-a", "ek-bind-b"):
        p = CORE.read_namespaced_pod(n, NS)
        check(p.spec.node_name == "ek-node-x", "%s not bound: %r" % (n, p.spec.node_name))
        CORE.delete_namespaced_pod(n, NS, grace_period_seconds=0)


@case("authentication.k8s.io/v1 tokenreviews and selfsubjectreviews")
def _():
    a = client.AuthenticationV1Api()
    tr = a.create_token_review(m.V1TokenReview(spec=m.V1TokenReviewSpec(token="not-a-token")))
    check(isinstance(tr, m.V1TokenReview) and tr.status.authenticated in (None, False), "tokenreview %r" % tr.status)
    ssr = a.create_self_subject_review(m.V1SelfSubjectReview())
    check(isinstance(ssr, m.V1SelfSubjectReview) and ssr.status.user_info.username, "selfsubjectreview %r" % ssr.status)


@case("authorization.k8s.io/v1 access reviews")
def _():
    a = client.AuthorizationV1Api()
    r = a.create_self_subject_access_review(m.V1SelfSubjectAccessReview(spec=m.V1SelfSubjectAccessReviewSpec(
        resource_attributes=m.V1ResourceAttributes(namespace=NS, verb="list", resource="pods"))))
    check(r.status.allowed is True, "admin may not list pods: %r" % r.status)
    r = a.create_subject_access_review(m.V1SubjectAccessReview(spec=m.V1SubjectAccessReviewSpec(
        user="every-kind-nobody", resource_attributes=m.V1ResourceAttributes(namespace=NS, verb="delete", resource="pods"))))
    check(r.status.allowed is False, "nobody may delete pods: %r" % r.status)
    r = a.create_namespaced_local_subject_access_review(NS, m.V1LocalSubjectAccessReview(spec=m.V1SubjectAccessReviewSpec(
        user="every-kind-nobody", resource_attributes=m.V1ResourceAttributes(namespace=NS, verb="get", resource="pods"))))
    check(isinstance(r, m.V1LocalSubjectAccessReview) and r.status.allowed is False, "local review %r" % r.status)
    r = a.create_self_subject_rules_review(m.V1SelfSubjectRulesReview(spec=m.V1SelfSubjectRulesReviewSpec(namespace=NS)))
    check(isinstance(r, m.V1SelfSubjectRulesReview) and r.status.resource_rules, "rules review %r" % r.status)


@case("subresources: status, scale, approval, ephemeral")
def _():
    d = APPS.create_namespaced_deployment(NS, m.V1Deployment(metadata=meta("ek-scaled", "scaled"), spec=m.V1DeploymentSpec(
        replicas=1, selector=selector("scaled"), template=template("scaled"))))
    sc = APPS.read_namespaced_deployment_scale("ek-scaled", NS)
    check(isinstance(sc, m.V1Scale) and sc.spec.replicas == 1 and sc.status.selector == "app=scaled", "scale %r" % sc)
    sc = APPS.patch_namespaced_deployment_scale("ek-scaled", NS, {"spec": {"replicas": 3}})
    check(sc.spec.replicas == 3, "patched scale %r" % sc.spec)
    sc.spec.replicas = 2
    sc = APPS.replace_namespaced_deployment_scale("ek-scaled", NS, sc)
    check(APPS.read_namespaced_deployment("ek-scaled", NS).spec.replicas == 2, "replace scale not applied")
    st = APPS.read_namespaced_deployment_status("ek-scaled", NS)
    check(isinstance(st, m.V1Deployment), "status read %r" % type(st))
    APPS.patch_namespaced_deployment_status("ek-scaled", NS, {"status": {"observedGeneration": 99}})
    APPS.delete_namespaced_deployment("ek-scaled", NS)

    csr = client.CertificatesV1Api()
    c = csr.create_certificate_signing_request(m.V1CertificateSigningRequest(metadata=meta("ek-approve", "approve", False),
        spec=m.V1CertificateSigningRequestSpec(request=base64.b64encode(csr_pem()).decode(), signer_name="example.com/every-kind",
                                               usages=["digital signature"])))
    c.status = m.V1CertificateSigningRequestStatus(conditions=[m.V1CertificateSigningRequestCondition(
        type="Approved", status="True", reason="Tested", message="approved by every_kind.py")])
    c = csr.replace_certificate_signing_request_approval("ek-approve", c)
    check(c.status.conditions[0].type == "Approved" and c.status.conditions[0].last_update_time is not None, "approval %r" % c.status)
    csr.delete_certificate_signing_request("ek-approve")

    ns = CORE.read_namespace_status(NS)
    check(ns.status.phase == "Active", "namespace status %r" % ns.status)


@case("subresources: serviceaccount token, pod eviction, ephemeral containers, node and pod status")
def _():
    CORE.create_namespaced_service_account(NS, m.V1ServiceAccount(metadata=m.V1ObjectMeta(name="ek-sa")))
    # No audiences: the API server's own (its issuer), so the token authenticates to it.
    tr = CORE.create_namespaced_service_account_token("ek-sa", NS, m.AuthenticationV1TokenRequest(
        spec=m.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)))
    check(isinstance(tr, m.AuthenticationV1TokenRequest) and tr.status.token.count(".") == 2 and tr.status.expiration_timestamp,
          "token request %r" % tr.status)
    check(tr.spec.audiences == ["https://kubernetes.default.svc.cluster.local"], "defaulted audiences %r" % tr.spec.audiences)
    review = client.AuthenticationV1Api().create_token_review(m.V1TokenReview(spec=m.V1TokenReviewSpec(token=tr.status.token)))
    check(review.status.authenticated and review.status.user.username == "system:serviceaccount:%s:ek-sa" % NS, "token review %r" % review.status)
    # A token for another audience does not authenticate to the API server.
    other = CORE.create_namespaced_service_account_token("ek-sa", NS, m.AuthenticationV1TokenRequest(
        spec=m.V1TokenRequestSpec(audiences=["https://vault.example.com"])))
    review = client.AuthenticationV1Api().create_token_review(m.V1TokenReview(spec=m.V1TokenReviewSpec(token=other.status.token)))
    check(not review.status.authenticated, "a token for another audience authenticated: %r" % review.status)
    # The reason in status.error, worded and aggregated as kube-apiserver's authenticators.
    check(review.status.error == '[invalid bearer token, token audiences ["https://vault.example.com"] is invalid for the target '
          'audiences ["https://kubernetes.default.svc.cluster.local"], unknown]', "rejection reason %r" % review.status.error)
    # Reviewed for its own audience, it authenticates, and the audiences are the intersection.
    review = client.AuthenticationV1Api().create_token_review(m.V1TokenReview(spec=m.V1TokenReviewSpec(
        token=other.status.token, audiences=["https://vault.example.com", "https://other.example.com"])))
    check(review.status.authenticated and review.status.audiences == ["https://vault.example.com"] and not review.status.error,
          "token review for its audience %r" % review.status)

    CORE.create_namespaced_pod(NS, m.V1Pod(metadata=meta("ek-evicted", "evicted"), spec=pod_spec()))
    # The client declares V1Eviction as the answer; kube-apiserver answers a Status (201).
    r = CORE.create_namespaced_pod_eviction("ek-evicted", NS, m.V1Eviction(metadata=m.V1ObjectMeta(name="ek-evicted", namespace=NS)),
                                            _preload_content=False)
    check(r.status == 201, "eviction answer %s" % r.status)

    CORE.create_namespaced_pod(NS, m.V1Pod(metadata=meta("ek-debugged", "debugged"), spec=pod_spec()))
    # pods/ephemeralcontainers (what `kubectl debug` uses): a strategic merge patch adds one,
    # defaulted as any container; removing or changing it afterwards is refused.
    p = CORE.patch_namespaced_pod_ephemeralcontainers("ek-debugged", NS, {"spec": {"ephemeralContainers": [
        {"name": "debugger", "image": "busybox", "stdin": True, "tty": True}]}})
    check(isinstance(p, m.V1Pod) and p.spec.ephemeral_containers[0].name == "debugger"
          and p.spec.ephemeral_containers[0].termination_message_policy == "File", "ephemeral %r" % p.spec.ephemeral_containers)
    got = CORE.read_namespaced_pod_ephemeralcontainers("ek-debugged", NS)
    check(got.spec.ephemeral_containers[0].name == "debugger", "ephemeral read %r" % got.spec.ephemeral_containers)
    got.spec.ephemeral_containers[0].image = "alpine"
    try:
        CORE.replace_namespaced_pod_ephemeralcontainers("ek-debugged", NS, got)
        check(False, "changing an ephemeral container was accepted")
    except ApiException as e:
        check(e.status == 422 and "may not be changed" in e.body, "ephemeral change %s %s" % (e.status, e.body))
    p = CORE.patch_namespaced_pod_status("ek-debugged", NS, {"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Tested"}]}})
    check(p.status.conditions[0].reason == "Tested" and p.status.phase == "Pending", "pod status %r" % p.status)
    CORE.delete_namespaced_pod("ek-debugged", NS, grace_period_seconds=0)

    CORE.create_node(m.V1Node(metadata=m.V1ObjectMeta(name="ek-status-node")))
    n = CORE.patch_node_status("ek-status-node", {"status": {"capacity": {"cpu": "4", "pods": "110"}, "conditions": [
        {"type": "Ready", "status": "False", "reason": "Tested", "lastHeartbeatTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}})
    check(n.status.capacity == {"cpu": "4", "pods": "110"} and n.status.conditions[0].reason == "Tested", "node status %r" % n.status)
    CORE.delete_node("ek-status-node")


# --- kubernetes.utils: create_from_yaml and create_from_dict ------------------------------

MULTI = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: ek-yaml-web
  labels: {app: ek-yaml-web}
spec:
  replicas: 0
  selector:
    matchLabels: {app: ek-yaml-web}
  template:
    metadata:
      labels: {app: ek-yaml-web}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: ek-yaml-web
spec:
  selector: {app: ek-yaml-web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: ek-yaml-web
data:
  index.html: hello
"""

LIST = """apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: ek-list-web
  spec:
    replicas: 0
    selector:
      matchLabels: {app: ek-list-web}
    template:
      metadata:
        labels: {app: ek-list-web}
      spec:
        containers:
        - name: web
          image: nginx
- apiVersion: v1
  kind: Service
  metadata:
    name: ek-list-web
  spec:
    selector: {app: ek-list-web}
    ports:
    - port: 80
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: ek-list-web
  data:
    k: v
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata:
    name: ek-list-reader
  rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get]
"""


def created_kinds(objs):
    out = []
    for o in objs:
        # create_from_yaml returns one list per document
        for x in (o if isinstance(o, list) else [o]):
            out.append(type(x).__name__)
    return out


@case("utils.create_from_yaml: a multi-document file")
def _():
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(MULTI)
    try:
        objs = utils.create_from_yaml(api_client, f.name, namespace=NS)
    finally:
        os.unlink(f.name)
    check(created_kinds(objs) == ["V1Deployment", "V1Service", "V1ConfigMap"], "created %r" % created_kinds(objs))
    check(APPS.read_namespaced_deployment("ek-yaml-web", NS).spec.template.spec.containers[0].image == "nginx", "deployment")
    check(CORE.read_namespaced_service("ek-yaml-web", NS).spec.cluster_ip, "service has no clusterIP")
    # Created again: each document fails with 409, reported together.
    try:
        utils.create_from_yaml(api_client, yaml_objects=list(__import__("yaml").safe_load_all(MULTI)), namespace=NS)
        raise AssertionError("creating again succeeded")
    except utils.FailToCreateError as e:
        check([x.status for x in e.api_exceptions] == [409, 409, 409], "again: %r" % [x.status for x in e.api_exceptions])


@case("utils.create_from_yaml: a kind: List manifest")
def _():
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(LIST)
    try:
        objs = utils.create_from_yaml(api_client, f.name, namespace=NS)
    finally:
        os.unlink(f.name)
    check(created_kinds(objs) == ["V1Deployment", "V1Service", "V1ConfigMap", "V1ClusterRole"], "created %r" % created_kinds(objs))
    check(CORE.read_namespaced_config_map("ek-list-web", NS).data == {"k": "v"}, "configmap")
    client.RbacAuthorizationV1Api().delete_cluster_role("ek-list-reader")


@case("utils.create_from_dict")
def _():
    objs = utils.create_from_dict(api_client, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ek-dict-job"},
        "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}},
        namespace=NS)
    check(len(objs) == 1 and isinstance(objs[0], m.V1Job) and objs[0].spec.selector is not None, "created %r" % objs)
    objs = utils.create_from_dict(api_client, {"apiVersion": "v1", "kind": "ConfigMapList", "items": [
        {"metadata": {"name": "ek-dict-a"}, "data": {"x": "1"}}, {"metadata": {"name": "ek-dict-b"}}]}, namespace=NS)
    check([o.metadata.name for o in objs] == ["ek-dict-a", "ek-dict-b"], "from a ConfigMapList: %r" % objs)


@case("dynamic client: discovery, server-side apply (create_from_yaml apply=True), get, list, patch, delete")
def _():
    from kubernetes.dynamic import DynamicClient
    dyn = DynamicClient(api_client)
    objs = utils.create_from_yaml(api_client, yaml_objects=[{"apiVersion": "v1", "kind": "ConfigMap",
                                                             "metadata": {"name": "ek-applied", "namespace": NS, "labels": {"ek": "applied"}},
                                                             "data": {"a": "1"}}], apply=True, namespace=NS)
    # (namespace= is needed: create_from_yaml defaults it to "default" and the apply path sends
    # it as the request's namespace, which kube-apiserver refuses (400) for an object of another.)
    check(objs[0][0].metadata.name == "ek-applied", "applied %r" % objs)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    got = cms.get(name="ek-applied", namespace=NS)
    check(got.data.a == "1" and got.metadata.managedFields[0].manager == "python-client", "applied object %r" % got.to_dict())
    check([i.metadata.name for i in cms.get(namespace=NS, label_selector="ek=applied").items] == ["ek-applied"], "dynamic list")
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    check(deps.namespaced and deps.name == "deployments" and "scale" in [s.split("/")[-1] for s in deps.subresources], "deployments resource %r" % deps.subresources)
    crb = dyn.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="ClusterRoleBinding")
    check(not crb.namespaced, "clusterrolebindings are namespaced?")
    # Applying again with a change, then a conflicting field manager is refused (409) unless forced.
    cms.server_side_apply(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ek-applied", "namespace": NS},
                                "data": {"a": "2"}}, field_manager="python-client")
    try:
        cms.server_side_apply(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ek-applied", "namespace": NS},
                                    "data": {"a": "3"}}, field_manager="someone-else")
        raise AssertionError("a conflicting apply succeeded")
    except ApiException as e:
        check(e.status == 409, "conflicting apply: %s" % e.status)
    cms.server_side_apply(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ek-applied", "namespace": NS},
                                "data": {"a": "3"}}, field_manager="someone-else", force_conflicts=True)
    cms.patch(name="ek-applied", namespace=NS, body={"data": {"b": "x"}}, content_type="application/merge-patch+json")
    check(cms.get(name="ek-applied", namespace=NS).data.to_dict() == {"a": "3", "b": "x"}, "after apply and patch")
    cms.delete(name="ek-applied", namespace=NS)


# --- watch ------------------------------------------------------------------------------------

def collect(w, gen, want, timeout=20):
    """Events of gen until `want` events have come (or the timeout)."""
    out = []
    stop = time.time() + timeout
    for ev in gen:
        out.append(ev)
        if len(out) >= want or time.time() > stop:
            w.stop()
            break
    return out


@case("watch.Watch().stream: configmaps, ADDED/MODIFIED/DELETED and resumption")
def _():
    start_rv = CORE.list_namespaced_config_map(NS).metadata.resource_version
    events = []
    w = watch.Watch()
    sel = "ek-watch=yes"

    def run():
        events.extend(collect(w, w.stream(CORE.list_namespaced_config_map, NS, label_selector=sel,
                                          resource_version=start_rv, timeout_seconds=30), 3))
    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    CORE.create_namespaced_config_map(NS, m.V1ConfigMap(metadata=m.V1ObjectMeta(name="ek-watched", labels={"ek-watch": "yes"}), data={"n": "1"}))
    CORE.patch_namespaced_config_map("ek-watched", NS, {"data": {"n": "2"}})
    CORE.delete_namespaced_config_map("ek-watched", NS)
    t.join(30)
    check([e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"], "events %r" % [e["type"] for e in events])
    check(all(isinstance(e["object"], m.V1ConfigMap) for e in events), "typed objects %r" % [type(e["object"]) for e in events])
    check(events[1]["object"].data == {"n": "2"}, "MODIFIED carries %r" % events[1]["object"].data)
    check(w.resource_version == events[2]["object"].metadata.resource_version, "watch kept rv %r" % w.resource_version)

    # Resuming from the ADDED event's resourceVersion replays what followed it.
    w2 = watch.Watch()
    again = collect(w2, w2.stream(CORE.list_namespaced_config_map, NS, label_selector=sel,
                                  resource_version=events[0]["object"].metadata.resource_version, timeout_seconds=10), 2)
    check([e["type"] for e in again] == ["MODIFIED", "DELETED"], "resumed events %r" % [e["type"] for e in again])

    # Without a resourceVersion the watch starts with the current objects as ADDED.
    CORE.create_namespaced_config_map(NS, m.V1ConfigMap(metadata=m.V1ObjectMeta(name="ek-watched-2", labels={"ek-watch": "yes"})))
    w3 = watch.Watch()
    first = collect(w3, w3.stream(CORE.list_namespaced_config_map, NS, label_selector=sel, timeout_seconds=10), 1)
    check([(e["type"], e["object"].metadata.name) for e in first] == [("ADDED", "ek-watched-2")], "initial events %r" % first)


@case("watch.Watch().stream: deployments and namespaces (cluster scope), bookmarks")
def _():
    w = watch.Watch()
    rv = APPS.list_namespaced_deployment(NS).metadata.resource_version
    got = []

    def run():
        got.extend(collect(w, w.stream(APPS.list_namespaced_deployment, NS, resource_version=rv, allow_watch_bookmarks=True,
                                       field_selector="metadata.name=ek-watch-deploy", timeout_seconds=30), 1))
    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    APPS.create_namespaced_deployment(NS, m.V1Deployment(metadata=m.V1ObjectMeta(name="ek-watch-deploy"), spec=m.V1DeploymentSpec(
        replicas=0, selector=selector("wd"), template=template("wd"))))
    t.join(30)
    check([(e["type"], type(e["object"]).__name__) for e in got] == [("ADDED", "V1Deployment")], "deployment events %r" % got)

    w = watch.Watch()
    rv = CORE.list_namespace().metadata.resource_version
    got = []

    def run2():
        got.extend(collect(w, w.stream(CORE.list_namespace, resource_version=rv, label_selector="ek-watch-ns=yes", timeout_seconds=30), 1))
    t = threading.Thread(target=run2)
    t.start()
    time.sleep(0.5)
    CORE.create_namespace(m.V1Namespace(metadata=m.V1ObjectMeta(name="ek-watch-ns", labels={"ek-watch-ns": "yes"})))
    t.join(30)
    check([(e["type"], e["object"].metadata.name) for e in got] == [("ADDED", "ek-watch-ns")], "namespace events %r" % got)
    CORE.delete_namespace("ek-watch-ns")


@case("watch.Watch().stream: a too old resourceVersion is 410 Gone")
def _():
    # The test runs the server with a watch cache of 50 events per resource (as
    # kube-apiserver's --default-watch-cache-size): 60 writes later, the version of the first
    # is no longer in it. Resuming from there is answered with an ERROR event of code 410,
    # which the client raises as ApiException(status=410) — at once when timeout_seconds is
    # set, after its one retry otherwise.
    cm = CORE.create_namespaced_config_map(NS, m.V1ConfigMap(metadata=m.V1ObjectMeta(name="ek-churn"), data={"n": "0"}))
    old_rv = cm.metadata.resource_version
    for i in range(60):
        CORE.patch_namespaced_config_map("ek-churn", NS, {"data": {"n": str(i + 1)}})
    for kw in ({"timeout_seconds": 5}, {}):
        w = watch.Watch()
        try:
            for ev in w.stream(CORE.list_namespaced_config_map, NS, resource_version=old_rv, **kw):
                raise AssertionError("event from an expired resourceVersion: %r" % ev["type"])
            raise AssertionError("no 410 for an expired resourceVersion (%r)" % kw)
        except ApiException as e:
            check(e.status == 410, "status %s" % e.status)
    # What a client does then: list again, and watch from the list's version.
    rv = CORE.list_namespaced_config_map(NS).metadata.resource_version
    w = watch.Watch()
    got = []

    def run():
        got.extend(collect(w, w.stream(CORE.list_namespaced_config_map, NS, resource_version=rv,
                                       field_selector="metadata.name=ek-churn", timeout_seconds=20), 1))
    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    CORE.delete_namespaced_config_map("ek-churn", NS)
    t.join(25)
    check([e["type"] for e in got] == ["DELETED"], "after relisting: %r" % [e["type"] for e in got])


# --- custom resources through CustomObjectsApi (CRD typed above) ----------------------------

@case("apiextensions: a CRD's objects through CustomObjectsApi")
def _():
    ext = client.ApiextensionsV1Api()
    ext.create_custom_resource_definition(m.V1CustomResourceDefinition(metadata=m.V1ObjectMeta(name="widgets.every-kind.example.com"),
        spec=m.V1CustomResourceDefinitionSpec(group="every-kind.example.com", scope="Namespaced",
            names=m.V1CustomResourceDefinitionNames(plural="widgets", kind="Widget"),
            versions=[m.V1CustomResourceDefinitionVersion(name="v1", served=True, storage=True, schema=m.V1CustomResourceValidation(
                open_apiv3_schema=m.V1JSONSchemaProps(type="object", properties={"spec": m.V1JSONSchemaProps(
                    type="object", properties={"size": m.V1JSONSchemaProps(type="integer")})})))])))
    deadline = time.time() + 20
    while True:
        crd = ext.read_custom_resource_definition("widgets.every-kind.example.com")
        conds = {c.type: c.status for c in (crd.status.conditions or [])}
        if conds.get("Established") == "True":
            break
        check(time.time() < deadline, "CRD not Established: %r" % conds)
        time.sleep(0.2)
    check(crd.status.accepted_names.singular == "widget" and crd.status.accepted_names.list_kind == "WidgetList", "accepted names %r" % crd.status.accepted_names)
    co = client.CustomObjectsApi()
    args = ("every-kind.example.com", "v1", NS, "widgets")
    o = co.create_namespaced_custom_object(*args, {"apiVersion": "every-kind.example.com/v1", "kind": "Widget",
                                                   "metadata": {"name": "w1", "labels": {"size": "small"}}, "spec": {"size": 1, "dropped": True}})
    check(o["spec"] == {"size": 1}, "pruned spec %r" % o["spec"])
    lst = co.list_namespaced_custom_object(*args, label_selector="size=small")
    check([i["metadata"]["name"] for i in lst["items"]] == ["w1"], "list %r" % lst)
    o = co.patch_namespaced_custom_object(*args, "w1", {"spec": {"size": 2}})
    check(o["spec"]["size"] == 2, "patched %r" % o)
    o["spec"]["size"] = 3
    o = co.replace_namespaced_custom_object(*args, "w1", o)
    check(co.get_namespaced_custom_object(*args, "w1")["spec"]["size"] == 3, "replaced")
    co.delete_namespaced_custom_object(*args, "w1")
    try:
        co.get_namespaced_custom_object(*args, "w1")
        raise AssertionError("w1 still there")
    except ApiException as e:
        check(e.status == 404, "after delete %s" % e.status)
    ext.delete_custom_resource_definition("widgets.every-kind.example.com")


print("known gaps: %d" % len(KNOWN_GAPS))
for g in KNOWN_GAPS:
    print("  KNOWN GAP: %s" % g)
if FAILURES:
    print("failed: %d: %s" % (len(FAILURES), ", ".join(FAILURES)))
    sys.exit(1)
print("every kind: ok")
