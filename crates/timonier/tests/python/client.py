"""The official Python client against a Timonier server (kubeconfig path in argv[1])."""
import sys

from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()

assert client.VersionApi().get_code().minor == "33"
names = [n.metadata.name for n in core.list_namespace().items]
assert "kube-system" in names, names

cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"from": "python"}), data={"a": "1"})
created = core.create_namespaced_config_map("default", cm)
rv = created.metadata.resource_version
core.patch_namespaced_config_map("py", "default", {"data": {"a": "2"}})
assert core.read_namespaced_config_map("py", "default").data["a"] == "2"

events = []
w = watch.Watch()
for ev in w.stream(core.list_namespaced_config_map, "default", label_selector="from=python", resource_version=rv, timeout_seconds=5):
    events.append((ev["type"], ev["object"].data["a"]))
    if len(events) == 1:
        core.delete_namespaced_config_map("py", "default")
    if len(events) == 2:
        w.stop()
assert events == [("MODIFIED", "2"), ("DELETED", "2")], events

dep = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "py-web"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "py-web"}},
        "template": {"metadata": {"labels": {"app": "py-web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}},
    },
}
apps.create_namespaced_deployment("default", dep)
scale = apps.read_namespaced_deployment_scale("py-web", "default")
assert scale.spec.replicas == 2
apps.patch_namespaced_deployment_scale("py-web", "default", {"spec": {"replicas": 5}})
assert apps.read_namespaced_deployment("py-web", "default").spec.replicas == 5
try:
    core.read_namespaced_config_map("py", "default")
    raise SystemExit("expected 404")
except client.exceptions.ApiException as e:
    assert e.status == 404, e.status

# DELETE answers as upstream: the deleted object for registries with ReturnDeletedObject
# (the client decodes a Service delete as a V1Service), a Status for the rest.
svc = client.V1Service(metadata=client.V1ObjectMeta(name="py-svc"), spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]))
core.create_namespaced_service("default", svc)
deleted = core.delete_namespaced_service("py-svc", "default")
assert isinstance(deleted, client.V1Service) and deleted.metadata.name == "py-svc", deleted
core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-gone")))
status = core.delete_namespaced_config_map("py-gone", "default")
status = status if isinstance(status, dict) else status.to_dict()
assert status["status"] == "Success" and status["details"]["name"] == "py-gone", status

# A body over 3 MiB: a 413 Status, not a dropped connection.
try:
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-big"), data={"x": "y" * (4 * 1024 * 1024)}))
    raise SystemExit("expected 413")
except client.exceptions.ApiException as e:
    assert e.status == 413 and "Request entity too large" in e.body, (e.status, e.body)
print("python client: ok")
