"""Render tests for charts/sessionstore-operator.

Renders the chart with `helm template` (the binary from hack/tools/helm.sh, passed in $HELM) with
default and non-default values and asserts what a user and the operator rely on: the RBAC rules
of docs/contract.md exactly, images, the operator's environment, security context, probes,
replicas and leader election. Run through hack/chart-test.sh.
"""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sessionstore-operator"
HERE = Path(__file__).resolve().parent
HELM = os.environ.get("HELM", "helm")
RELEASE = "sessionstore-operator"
NAMESPACE = "sessionstore-system"
KUBE_VERSION = "1.33.0"

# docs/contract.md, "RBAC the operator needs", as (apiGroup, resource, verb) triples.
_CRUD = ["get", "list", "watch", "create", "patch", "update", "delete"]
NAMESPACED_RULES = (
    {("sessionstore.dev", r, v)
     for r in ["sessionclusters", "sessionclusters/status", "sessionclusters/finalizers"]
     for v in ["get", "list", "watch", "patch", "update"]}
    | {("apps", "statefulsets", v) for v in _CRUD}
    | {("", r, v) for r in ["services", "configmaps", "serviceaccounts"] for v in _CRUD}
    # Secrets: no update (the operator patches, creates and deletes them).
    | {("", "secrets", v) for v in ["get", "list", "watch", "create", "patch", "delete"]}
    | {("policy", "poddisruptionbudgets", v) for v in _CRUD}
    | {("networking.k8s.io", "networkpolicies", v) for v in _CRUD}
    | {("", "pods", v) for v in ["get", "list", "watch"]}
    | {("", "persistentvolumeclaims", v) for v in ["get", "list", "watch", "patch", "delete"]}
    | {(g, "events", v) for g in ["", "events.k8s.io"] for v in ["create", "patch"]}
    | {("", "events", "list")}
    | {("monitoring.coreos.com", r, v)
       for r in ["servicemonitors", "prometheusrules"]
       for v in ["get", "list", "watch", "create", "patch", "delete"]}
)
CRD_RULES = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ["get", "list", "watch"]}
LEASE_VERBS = {"get", "create", "update", "patch"}


def workspace_version() -> str:
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def contract_operator_env() -> set[str]:
    """The env column of the "Operator configuration" table in docs/contract.md."""
    text = (ROOT / "docs" / "contract.md").read_text()
    section = text.split("## Operator configuration", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and line.startswith("|"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[1]))
    return names


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=check)


def render(*extra: str, release: str = RELEASE, chart: Path = CHART) -> list[dict]:
    result = helm("template", release, str(chart), "--namespace", NAMESPACE,
                  "--kube-version", KUBE_VERSION, *extra, check=False)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


class Objects:
    """Rendered manifests, looked up by kind (and name)."""

    def __init__(self, docs: list[dict]):
        self.docs = docs

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
        return found[0]

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    def container(self) -> dict:
        containers = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    def env(self) -> dict:
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in self.container()["env"]}


def triples(rules: list[dict]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), f"wildcard in {rule}"
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


@pytest.fixture(scope="module")
def default() -> Objects:
    return Objects(render())


@pytest.fixture(scope="module")
def namespaced() -> Objects:
    return Objects(render("--values", str(HERE / "values-namespaced.yaml")))


# --- versions and images -----------------------------------------------------------------------

def test_chart_and_app_version_follow_the_crate_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == workspace_version()
    assert chart["appVersion"] == workspace_version()


def test_default_images_are_the_ones_build_images_tags(default):
    version = workspace_version()
    container = default.container()
    # hack/build-images.sh tags docker.io/sessionstore/<name>:<version>; the kubelet resolves the
    # short names below to exactly those.
    assert container["image"] == f"sessionstore/operator:{version}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert default.env()["OPERATOR_STORE_NODE_IMAGE"] == f"sessionstore/store-node:{version}"
    script = (ROOT / "hack" / "build-images.sh").read_text()
    assert 'ref="docker.io/sessionstore/$image:$version"' in script


def test_custom_images_by_tag_and_digest(namespaced):
    container = namespaced.container()
    assert container["image"] == "registry.example.com/platform/sessionstore-operator:0.1.0-rc.1"
    assert container["imagePullPolicy"] == "Always"
    assert namespaced.env()["OPERATOR_STORE_NODE_IMAGE"] == (
        "registry.example.com/platform/store-node@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    pod = namespaced.one("Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_images_run_as_the_user_the_chart_expects(default):
    uid = default.one("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert uid == 65532
    for dockerfile in ("operator.Dockerfile", "store-node.Dockerfile"):
        assert "\nUSER 65532:65532\n" in (ROOT / "images" / dockerfile).read_text()
    assert "RUN_AS=65532" in (ROOT / "hack" / "build-images.sh").read_text()


# --- RBAC --------------------------------------------------------------------------------------

def test_default_rbac_is_one_clusterrole_with_exactly_the_contract_rules(default):
    role = default.one("ClusterRole")
    assert triples(role["rules"]) == NAMESPACED_RULES | CRD_RULES
    binding = default.one("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sessionstore-operator",
                                    "namespace": NAMESPACE}]


def test_lease_role_is_in_the_release_namespace_and_limited_to_the_lease(default):
    roles = default.of_kind("Role")
    assert [r["metadata"]["name"] for r in roles] == ["sessionstore-operator-leader-election"]
    role = roles[0]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert {v for _, _, v in triples(role["rules"])} == LEASE_VERBS
    assert {(g, r) for g, r, _ in triples(role["rules"])} == {("coordination.k8s.io", "leases")}
    lease = default.env()["OPERATOR_LEASE_NAME"]
    for rule in role["rules"]:
        if rule["verbs"] != ["create"]:  # create cannot name an object that does not exist yet
            assert rule["resourceNames"] == [lease]
    binding = default.one("RoleBinding", "sessionstore-operator-leader-election")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sessionstore-operator",
                                    "namespace": NAMESPACE}]


def test_namespaced_rbac_has_a_role_per_watched_namespace(namespaced):
    roles = {r["metadata"]["namespace"]: r for r in namespaced.of_kind("Role")
             if r["metadata"]["name"] == "sessionstore-operator"}
    assert sorted(roles) == ["team-a", "team-b"]
    for namespace, role in roles.items():
        assert triples(role["rules"]) == NAMESPACED_RULES, namespace
    bindings = {b["metadata"]["namespace"]: b for b in namespaced.of_kind("RoleBinding")
                if b["metadata"]["name"] == "sessionstore-operator"}
    assert sorted(bindings) == ["team-a", "team-b"]
    for binding in bindings.values():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "sessionstore-operator"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sessionstore-operator",
                                        "namespace": NAMESPACE}]


def test_namespaced_mode_keeps_only_the_crd_read_rule_cluster_wide(namespaced):
    cluster_role = namespaced.one("ClusterRole")
    assert triples(cluster_role["rules"]) == CRD_RULES
    binding = namespaced.one("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"][0]["namespace"] == NAMESPACE
    assert namespaced.env()["WATCH_NAMESPACES"] == "team-a,team-b"


def test_rbac_and_service_account_can_be_brought_by_the_user():
    objects = Objects(render("--set", "rbac.create=false", "--set", "serviceAccount.create=false",
                             "--set", "serviceAccount.name=platform-operator"))
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"} & set(objects.kinds())
    pod = objects.one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-operator"


# --- the operator Deployment -------------------------------------------------------------------

def test_two_replicas_with_leader_election_by_default(default):
    deployment = default.one("Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 2
    env = default.env()
    assert env["OPERATOR_LEADER_ELECTION"] == "true"
    assert env["OPERATOR_LEASE_NAME"] == "sessionstore-operator"
    # The standby must start before the leader stops during a rollout.
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_environment_is_the_contract(default, namespaced):
    contract = contract_operator_env()
    assert contract == {"WATCH_NAMESPACES", "OPERATOR_HTTP_ADDR", "OPERATOR_LEADER_ELECTION",
                        "OPERATOR_LEASE_NAME", "POD_NAMESPACE", "POD_NAME",
                        "OPERATOR_STORE_NODE_IMAGE", "OPERATOR_LOG_FORMAT", "OPERATOR_LOG_LEVEL"}
    # Every variable of the contract is set when namespaces are given; without them
    # WATCH_NAMESPACES is absent, which the contract defines as "all namespaces".
    assert set(namespaced.env()) == contract
    assert set(default.env()) == contract - {"WATCH_NAMESPACES"}
    env = default.env()
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["OPERATOR_HTTP_ADDR"] == "0.0.0.0:8080"
    assert (env["OPERATOR_LOG_FORMAT"], env["OPERATOR_LOG_LEVEL"]) == ("text", "info")
    env = namespaced.env()
    assert (env["OPERATOR_LOG_FORMAT"], env["OPERATOR_LOG_LEVEL"]) == ("json", "debug")
    # Configuration comes from the environment only: no args to drift from it.
    assert "args" not in default.container() and "command" not in default.container()


def test_probes_hit_the_operator_http_port(default):
    container = default.container()
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_security_context_is_restricted(default):
    pod = default.one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "sessionstore-operator"
    assert "hostNetwork" not in pod and "hostPID" not in pod
    security = default.container()["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert default.container()["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                "limits": {"memory": "256Mi"}}


def test_single_replica_without_leader_election():
    objects = Objects(render("--set", "replicaCount=1", "--set", "leaderElection.enabled=false"))
    assert objects.one("Deployment")["spec"]["replicas"] == 1
    assert objects.env()["OPERATOR_LEADER_ELECTION"] == "false"
    assert objects.of_kind("Role") == [] and objects.of_kind("RoleBinding") == []
    # A budget of 1 available out of 1 pod would block every node drain.
    assert objects.of_kind("PodDisruptionBudget") == []


def test_two_replicas_without_leader_election_is_refused():
    result = helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION,
                  "--set", "leaderElection.enabled=false", check=False)
    assert result.returncode != 0
    assert "replicaCount > 1 requires leaderElection.enabled=true" in result.stderr


def test_values_schema_rejects_typos_and_bad_values():
    for override, message in (("watchNamespace=team-a", "additional properties 'watchNamespace' not allowed"),
                              ("logging.format=xml", "value must be one of 'text', 'json'"),
                              ("image.digest=latest", "/image/digest"),
                              ("watchNamespaces={Team_A}", "/watchNamespaces/0")):
        result = helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION,
                      "--set", override, check=False)
        assert result.returncode != 0, override
        assert message in result.stderr, (override, result.stderr)


def test_names_follow_the_release():
    objects = Objects(render(release="ops"))
    assert objects.one("Deployment")["metadata"]["name"] == "ops-sessionstore-operator"
    assert objects.env()["OPERATOR_LEASE_NAME"] == "ops-sessionstore-operator"
    assert objects.one("ServiceAccount")["metadata"]["name"] == "ops-sessionstore-operator"
    assert objects.one("ClusterRoleBinding")["subjects"][0]["name"] == "ops-sessionstore-operator"
    role = objects.one("Role", "ops-sessionstore-operator-leader-election")
    assert role["rules"][1]["resourceNames"] == ["ops-sessionstore-operator"]


# --- Service, ServiceMonitor, PodDisruptionBudget, labels --------------------------------------

def test_metrics_service_selects_the_operator_pods(default):
    service = default.one("Service")
    pod_labels = default.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "http-metrics", "port": 8080,
                                         "targetPort": "http", "protocol": "TCP"}]
    assert default.of_kind("ServiceMonitor") == []


def test_service_monitor_scrapes_the_metrics_service(namespaced):
    monitor = namespaced.one("ServiceMonitor")
    service = namespaced.one("Service")
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [{"port": "http-metrics", "path": "/metrics", "scheme": "http",
                                             "interval": "15s", "scrapeTimeout": "5s"}]


def test_pod_disruption_budget_keeps_one_operator(default):
    budget = default.one("PodDisruptionBudget")
    pod_labels = default.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_every_object_is_labelled_and_namespaced(default, namespaced):
    for objects in (default, namespaced):
        for doc in objects.docs:
            labels = doc["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "sessionstore-operator"
            assert labels["app.kubernetes.io/instance"] == RELEASE
            assert labels["app.kubernetes.io/version"] == workspace_version()
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                assert "namespace" not in doc["metadata"]
            elif doc["kind"] in ("Role", "RoleBinding") and doc["metadata"]["namespace"] != NAMESPACE:
                assert doc["metadata"]["namespace"] in ("team-a", "team-b")
            else:
                assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
    assert default.kinds() == sorted(["ClusterRole", "ClusterRoleBinding", "Deployment",
                                      "PodDisruptionBudget", "Role", "RoleBinding", "Service",
                                      "ServiceAccount"])


def test_notes_tell_the_user_what_to_do_next(tmp_path):
    # helm template does not render NOTES.txt; render it through a ConfigMap in a copy of the chart.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(CHART / "templates" / "NOTES.txt", chart / "notes-under-test.txt")
    (chart / "templates" / "notes-under-test.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n'
        'data:\n  notes: {{ tpl (.Files.Get "notes-under-test.txt") . | toYaml | indent 4 }}\n')
    for extra, namespace in (((), "default"), (("--set", "watchNamespaces={team-a}"), "team-a")):
        docs = render(*extra, "--show-only", "templates/notes-under-test.yaml", chart=chart)
        notes = docs[0]["data"]["notes"]
        assert f"\ncat <<'YAML' | kubectl apply -n {namespace} -f -\n" in notes
        assert "\nYAML\n" in notes
        assert "kind: SessionCluster" in notes
        assert f"kubectl -n {namespace} get scl demo -w" in notes
        assert "kubectl -n sessionstore-system rollout status deployment/sessionstore-operator" in notes
        assert "kubectl apply --server-side -f" in notes


def _unknown_fields(value, schema: dict, path: str) -> list[str]:
    """Paths in value that the CRD's openAPIV3Schema does not declare."""
    if not isinstance(value, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    properties = schema.get("properties")
    if properties is None:
        return []  # a map (additionalProperties) or a type the schema leaves open
    unknown = []
    for key, child in value.items():
        if key not in properties:
            unknown.append(f"{path}.{key}")
        else:
            unknown += _unknown_fields(child, properties[key], f"{path}.{key}")
    return unknown


def test_notes_example_matches_the_crd(tmp_path):
    crds = [d for f in sorted((ROOT / "crds").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())
            if d and d.get("spec", {}).get("names", {}).get("kind") == "SessionCluster"]
    if not crds:
        pytest.skip("no SessionCluster CRD generated yet (crds/ is empty)")
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    # The heredoc is at column 0 so that it can be pasted into a shell as it is.
    example = yaml.safe_load(notes.split("<<'YAML'", 1)[1].split("\n", 1)[1].split("\nYAML\n", 1)[0])
    versions = {v["name"]: v for v in crds[0]["spec"]["versions"]}
    group, version = example["apiVersion"].split("/")
    assert group == crds[0]["spec"]["group"]
    assert version in versions, f"NOTES uses {version}, the CRD serves {sorted(versions)}"
    schema = versions[version]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert _unknown_fields(example["spec"], schema, "spec") == []


# --- CRDs --------------------------------------------------------------------------------------

def test_chart_crds_match_the_generated_crds():
    generated, chart = ROOT / "crds", CHART / "crds"
    files = lambda d: sorted(p.name for p in d.glob("*.yaml")) if d.is_dir() else []
    if not files(generated) and not files(chart):
        pytest.skip("no CRDs generated yet (crds/ is empty)")
    assert files(chart) == files(generated), "charts/sessionstore-operator/crds/ and crds/ hold different files"
    for name in files(generated):
        assert (chart / name).read_bytes() == (generated / name).read_bytes(), (
            f"charts/sessionstore-operator/crds/{name} differs from crds/{name}: copy it again")
