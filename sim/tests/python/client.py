"""The official Kubernetes Python client against the simulator: the calls an
operator's script or a GitOps tool makes. Every step asserts what a real API
server answers; the script exits non-zero at the first difference."""

import os

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=os.environ["KUBECONFIG"])
core = client.CoreV1Api()
apps = client.AppsV1Api()
ext = client.ApiextensionsV1Api()
custom = client.CustomObjectsApi()
NS = "py"


def meta(name, **labels):
    return client.V1ObjectMeta(name=name, labels=labels or None)


def step(what):
    print("--", what, flush=True)


step("create and list a namespace")
core.create_namespace(client.V1Namespace(metadata=meta(NS)))
assert NS in [n.metadata.name for n in core.list_namespace().items]

step("create, list by label, page through")
created = core.create_namespaced_config_map(
    NS, client.V1ConfigMap(metadata=meta("settings", app="py"), data={"mode": "fast"})
)
for i in range(3):
    core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=meta(f"other-{i}"), data={"i": str(i)})
    )
listed = core.list_namespaced_config_map(NS, label_selector="app=py")
assert [c.metadata.name for c in listed.items] == ["settings"], listed.items
names, token = [], None
while True:
    page = core.list_namespaced_config_map(NS, limit=2, _continue=token)
    names += [c.metadata.name for c in page.items]
    token = page.metadata._continue
    if not token:
        break
assert sorted(names) == ["other-0", "other-1", "other-2", "settings"], names

step("strategic merge patch (the client's choice for a dict), JSON patch (for a list)")
core.patch_namespaced_config_map("settings", NS, {"data": {"mode": "slow"}})
core.patch_namespaced_config_map(
    "settings", NS, [{"op": "add", "path": "/data/extra", "value": "1"}]
)
got = core.read_namespaced_config_map("settings", NS)
assert got.data == {"mode": "slow", "extra": "1"}, got.data

step("watch, resumed from the version first created")
seen = []
w = watch.Watch()
for event in w.stream(
    core.list_namespaced_config_map,
    NS,
    field_selector="metadata.name=settings",
    resource_version=created.metadata.resource_version,
    timeout_seconds=30,
):
    obj = event["object"]
    seen.append((event["type"], obj.data.get("mode"), obj.data.get("extra")))
    if len(seen) == 2:
        w.stop()
assert seen == [("MODIFIED", "slow", None), ("MODIFIED", "slow", "1")], seen

step("a Deployment: create, scale, watch until its pods are ready")
apps.create_namespaced_deployment(
    NS,
    client.V1Deployment(
        metadata=meta("web"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=meta(None, app="web"),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="demo:v1")]),
            ),
        ),
    ),
)
apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 2}})
w = watch.Watch()
for event in w.stream(
    apps.list_namespaced_deployment, NS, field_selector="metadata.name=web", timeout_seconds=30
):
    status = event["object"].status
    if status and status.ready_replicas == 2:
        w.stop()
ready = apps.read_namespaced_deployment("web", NS).status.ready_replicas
assert ready == 2, ready
pods = core.list_namespaced_pod(NS, label_selector="app=web", field_selector="status.phase=Running")
assert len(pods.items) == 2, [p.metadata.name for p in pods.items]

step("a custom resource: its definition, an object, merge patches of it and of its status")
ext.create_custom_resource_definition(
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
)
crd = ext.read_custom_resource_definition("widgets.example.com")
assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)
custom.create_namespaced_custom_object(
    "example.com", "v1", NS, "widgets",
    {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}},
)
custom.patch_namespaced_custom_object_status(
    "example.com", "v1", NS, "widgets", "w", {"spec": {"size": 9}, "status": {"ready": True}}
)
w = custom.get_namespaced_custom_object("example.com", "v1", NS, "widgets", "w")
assert w["spec"] == {"size": 1} and w["status"] == {"ready": True}, w
custom.patch_namespaced_custom_object(
    "example.com", "v1", NS, "widgets", "w", {"spec": {"size": 2}}
)
assert custom.get_namespaced_custom_object("example.com", "v1", NS, "widgets", "w")["spec"] == {"size": 2}

step("delete, then 404")
core.delete_namespaced_config_map("settings", NS)
try:
    core.read_namespaced_config_map("settings", NS)
    raise AssertionError("settings still readable after delete")
except ApiException as e:
    assert e.status == 404, e
custom.delete_namespaced_custom_object("example.com", "v1", NS, "widgets", "w")
assert custom.list_namespaced_custom_object("example.com", "v1", NS, "widgets")["items"] == []

print("all calls answered as a cluster answers them")
