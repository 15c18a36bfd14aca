"""The official Python client reads back objects through its typed models, which reject a
response missing a field the Go struct always writes (kubeconfig path in argv[1]).

Each kind here has a model with required fields that a new object only has as Go's zero values
(`V1ReplicationControllerStatus.replicas`, `V1DaemonSetStatus.numberReady`, ...)."""
import sys

from kubernetes import client, config

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()
policy = client.PolicyV1Api()
autoscaling = client.AutoscalingV2Api()
NS = "default"

labels = {"app": "pyzero"}
template = client.V1PodTemplateSpec(
    metadata=client.V1ObjectMeta(labels=labels),
    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
)
selector = client.V1LabelSelector(match_labels=labels)

checks = []


def check(kind, created, read, listed):
    checks.append(kind)
    assert read.metadata.name == created.metadata.name, (kind, read.metadata.name)
    assert any(i.metadata.name == created.metadata.name for i in listed.items), kind
    return read


rc = client.V1ReplicationController(
    metadata=client.V1ObjectMeta(name="py-rc"),
    spec=client.V1ReplicationControllerSpec(replicas=0, selector=labels, template=template),
)
created = core.create_namespaced_replication_controller(NS, rc)
assert created.status.replicas == 0, created.status
read = check("ReplicationController", created, core.read_namespaced_replication_controller("py-rc", NS),
             core.list_namespaced_replication_controller(NS))
assert read.spec.replicas == 0 and read.status.replicas == 0, read
assert core.read_namespaced_replication_controller_status("py-rc", NS).status.replicas == 0
scale = core.read_namespaced_replication_controller_scale("py-rc", NS)
assert scale.spec.replicas == 0, scale

ds = client.V1DaemonSet(metadata=client.V1ObjectMeta(name="py-ds"), spec=client.V1DaemonSetSpec(selector=selector, template=template))
created = apps.create_namespaced_daemon_set(NS, ds)
read = check("DaemonSet", created, apps.read_namespaced_daemon_set("py-ds", NS), apps.list_namespaced_daemon_set(NS))
s = read.status
assert (s.current_number_scheduled, s.number_misscheduled, s.desired_number_scheduled, s.number_ready) == (0, 0, 0, 0), s
# A status write through the typed model keeps the counts.
s.number_ready = 0
apps.replace_namespaced_daemon_set_status("py-ds", NS, read)
assert apps.read_namespaced_daemon_set_status("py-ds", NS).status.number_ready == 0

rs = client.V1ReplicaSet(metadata=client.V1ObjectMeta(name="py-rs"), spec=client.V1ReplicaSetSpec(replicas=0, selector=selector, template=template))
created = apps.create_namespaced_replica_set(NS, rs)
read = check("ReplicaSet", created, apps.read_namespaced_replica_set("py-rs", NS), apps.list_namespaced_replica_set(NS))
assert read.status.replicas == 0, read.status

sts = client.V1StatefulSet(metadata=client.V1ObjectMeta(name="py-sts"),
                           spec=client.V1StatefulSetSpec(replicas=0, selector=selector, service_name="py", template=template))
created = apps.create_namespaced_stateful_set(NS, sts)
read = check("StatefulSet", created, apps.read_namespaced_stateful_set("py-sts", NS), apps.list_namespaced_stateful_set(NS))
assert read.status.replicas == 0, read.status

# Without revision: Go writes the zero int64, which the model requires.
created = apps.create_namespaced_controller_revision(NS, {"metadata": {"name": "py-cr"}, "data": {"x": 1}})
assert created.revision == 0, created
check("ControllerRevision", created, apps.read_namespaced_controller_revision("py-cr", NS), apps.list_namespaced_controller_revision(NS))

pdb = client.V1PodDisruptionBudget(metadata=client.V1ObjectMeta(name="py-pdb"), spec=client.V1PodDisruptionBudgetSpec(min_available=1, selector=selector))
created = policy.create_namespaced_pod_disruption_budget(NS, pdb)
read = check("PodDisruptionBudget", created, policy.read_namespaced_pod_disruption_budget("py-pdb", NS),
             policy.list_namespaced_pod_disruption_budget(NS))
assert read.status.disruptions_allowed == 0 and read.status.expected_pods == 0, read.status

hpa = client.V2HorizontalPodAutoscaler(
    metadata=client.V1ObjectMeta(name="py-hpa"),
    spec=client.V2HorizontalPodAutoscalerSpec(
        max_replicas=3, scale_target_ref=client.V2CrossVersionObjectReference(api_version="apps/v1", kind="ReplicaSet", name="py-rs")),
)
created = autoscaling.create_namespaced_horizontal_pod_autoscaler(NS, hpa)
read = check("HorizontalPodAutoscaler", created, autoscaling.read_namespaced_horizontal_pod_autoscaler("py-hpa", NS),
             autoscaling.list_namespaced_horizontal_pod_autoscaler(NS))
assert read.status.desired_replicas == 0, read.status

node = client.V1Node(metadata=client.V1ObjectMeta(name="py-node"))
created = core.create_node(node)
read = check("Node", created, core.read_node("py-node"), core.list_node())
assert read.status.node_info.machine_id == "" and read.status.daemon_endpoints.kubelet_endpoint.port == 0, read.status

ev = client.CoreV1Event(metadata=client.V1ObjectMeta(name="py-ev"), involved_object=client.V1ObjectReference(kind="Pod", name="x", namespace=NS))
created = core.create_namespaced_event(NS, ev)
read = check("Event", created, core.read_namespaced_event("py-ev", NS), core.list_namespaced_event(NS))
assert read.reporting_component == "" and read.event_time is None, read

print("python zero values: ok", ", ".join(checks))
