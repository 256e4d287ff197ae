"""deploy/k8s is usable and safe (no cluster here: we render it and check its structure).

The three kustomizations (``deploy/k8s``, ``deploy/k8s/with-postgres`` with the optional
PostgreSQL, ``deploy/k8s/with-pgbouncer`` with the optional PgBouncer) are rendered by
``tests/kustomize_lite.py`` from a copy of deploy/ in which the committed ``*.env.example``
files stand in for the git-ignored secrets. Then: every object against Kubernetes' own API
schemas (kubernetes-validate, strict: an unknown field fails); the containers are
docker-compose.yml's (same image, same arguments); the storage URL reaches containers only from
a Secret and no password is written anywhere in deploy/; the worker Job (Indexed, one GPU per
pod, failure policy, grace period, shared checkpoints, a decode cache shared with the creator,
threads from the CPU request, cleaned up when done); PgBouncer in transaction mode; the
dashboard inside the cluster only; selectors and references; PostgreSQL's connection
arithmetic.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from clirun import sweeper
from kubernetes_validate import utils as k8s_schema
from kustomize_lite import (
    KustomizeError,
    containers,
    pod_template,
    read_env_file,
    referenced_files,
    render,
    split_image,
)

from sweeper import attrs
from sweeper.errors import UsageError
from sweeper.spec import load_spec
from sweeper.storage import MAX_OVERFLOW, POOL_SIZE, normalise_url, secrets_in
from sweeper.work import checkpoints, provenance

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
VARIANTS = ("k8s", "k8s/with-postgres", "k8s/with-pgbouncer")  # relative to deploy/
# The oldest Kubernetes whose Job API has every field used here as GA (backoffLimitPerIndex
# went GA in 1.33; podReplacementPolicy is beta and on by default since 1.29), and the
# newest kubernetes-validate knows.
K8S_VERSIONS = ("1.33", k8s_schema.major_minor(k8s_schema.latest_version()))
# The one value deploy/'s committed templates may hold where a password goes.
PLACEHOLDER = "change-me"
# PostgreSQL keeps this many connections for superusers (its default).
SUPERUSER_RESERVED = 3
# Room left for people: psql sessions, monitoring (postgres.yaml's comment says so too).
HUMAN_MARGIN = 10

Object = dict[str, Any]


# -- rendering ---------------------------------------------------------------------------------


def _with_example_secrets(destination: Path) -> Path:
    """A copy of deploy/ whose git-ignored env files are their committed examples."""
    shutil.copytree(DEPLOY, destination)
    for example in destination.rglob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    return destination


@pytest.fixture(scope="module")
def deploy_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _with_example_secrets(tmp_path_factory.mktemp("k8s") / "deploy")


@pytest.fixture(scope="module", params=VARIANTS)
def objects(request: pytest.FixtureRequest, deploy_copy: Path) -> list[Object]:
    return render(deploy_copy / request.param)


@pytest.fixture(scope="module")
def with_postgres(deploy_copy: Path) -> list[Object]:
    return render(deploy_copy / "k8s/with-postgres")


def _one(objects: list[Object], kind: str, name: str) -> Object:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _container(obj: Object, name: str) -> dict[str, Any]:
    found = [c for c in containers(obj) if c["name"] == name]
    assert len(found) == 1, f"{obj['metadata']['name']} has no single container {name}"
    return found[0]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _compose_args(command: list[str]) -> list[str]:
    """compose's ``${VAR}`` written as Kubernetes' ``$(VAR)``."""
    return [re.sub(r"\$\{(\w+)\}", r"$(\1)", part) for part in command]


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, f"unexpected compose duration {duration!r}"
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def _compose_mounts(service: str) -> dict[str, bool]:
    """A compose service's mount targets, each with whether it is read-only."""
    mounts = {}
    for volume in _compose()["services"][service]["volumes"]:
        read_only = volume.endswith(":ro")
        parts = volume.removesuffix(":ro").split(":")
        mounts[parts[-1]] = read_only
    return mounts


def _git_ignored(path: Path) -> bool:
    result = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", "-q", str(path)], check=False
    )
    assert result.returncode in (0, 1), f"git check-ignore failed on {path}"
    return result.returncode == 0


# -- the files ---------------------------------------------------------------------------------


def test_every_file_is_used_and_every_secret_file_is_ignored(deploy_copy: Path) -> None:
    used = set().union(*(referenced_files(deploy_copy / v) for v in VARIANTS))
    present = {p.resolve() for p in deploy_copy.rglob("*") if p.is_file()}
    examples = {p for p in present if p.name.endswith(".env.example")}
    assert present - examples == used, (
        f"not referenced by any kustomization: {sorted(map(str, present - examples - used))}; "
        f"referenced but missing: {sorted(map(str, used - present))}"
    )
    env_files = {p for p in used if p.suffix == ".env"}
    assert env_files, "the secrets should come from env files"
    assert {p.with_name(p.name + ".example") for p in env_files} == examples
    for env in env_files:
        in_repo = REPO / env.relative_to(deploy_copy.parent)
        assert _git_ignored(in_repo), f"{in_repo} holds a password: git must ignore it"
        assert not _git_ignored(in_repo.with_name(in_repo.name + ".example"))


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_schema_valid(objects: list[Object], version: str) -> None:
    kinds = set()
    for obj in objects:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        try:
            used = k8s_schema.validate(obj, version, strict=True)
        except k8s_schema.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            pytest.fail(f"{where} is not valid Kubernetes {version}: {path}: {err.message}")
        assert used == version, f"{where} was checked against {used}, not {version}"
        kinds.add(obj["kind"])
    assert {"Namespace", "Job", "Deployment", "Service", "Secret", "ConfigMap"} <= kinds


# -- the containers are compose's ----------------------------------------------------------------


def test_worker_and_dashboard_run_compose_s_image_and_arguments(objects: list[Object]) -> None:
    services = _compose()["services"]
    for kind, name, container, service in (
        ("Job", "sweeper-worker", "worker", "worker"),
        ("Deployment", "sweeper-dashboard", "dashboard", "dashboard"),
    ):
        spec = _container(_one(objects, kind, name), container)
        assert spec["image"] == services[service]["image"]
        assert "command" not in spec, "compose's command replaces CMD: that is `args` here"
        assert spec["args"] == _compose_args(services[service]["command"])


def test_the_creator_runs_compose_s_create_step(objects: list[Object]) -> None:
    # The step compose's header tells users to run once before scaling the workers.
    header = (REPO / "docker-compose.yml").read_text()
    step = re.search(r"docker compose run --rm worker (run [^#\n]+?)\s*#", header)
    assert step, "docker-compose.yml's header should show the create step"
    creator = _container(_one(objects, "Job", "sweeper-create-study"), "create-study")
    assert creator["image"] == _compose()["services"]["worker"]["image"]
    study = _one(objects, "ConfigMap", "sweeper-study")["data"]
    args = [a.replace("$(SWEEPER_SPEC)", study["SWEEPER_SPEC"]) for a in creator["args"]]
    # Both point at the data volume (the creator downloads CIFAR-10 there when empty).
    assert args[-2:] == ["--data", "/data"]
    assert args == step.group(1).split()


def test_arguments_name_only_variables_their_container_defines(objects: list[Object]) -> None:
    checked = 0
    for obj in objects:
        for container in containers(obj):
            defined = {e["name"] for e in container.get("env", [])}
            wanted = set(re.findall(r"\$\((\w+)\)", " ".join(container.get("args", []))))
            # Kubernetes leaves an undefined $(VAR) in place: `--study $(SWEEPER_STUDY)`.
            assert wanted <= defined, f"{container['name']}: {wanted - defined} undefined"
            checked += len(wanted)
    assert checked >= 3


def test_the_study_name_is_the_spec_s_and_the_spec_is_in_the_image(objects: list[Object]) -> None:
    study = _one(objects, "ConfigMap", "sweeper-study")["data"]
    spec_path = study["SWEEPER_SPEC"]
    assert spec_path.startswith("studies/"), "a path inside the image, below its WORKDIR"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "WORKDIR /opt/sweeper" in dockerfile and "COPY studies ./studies" in dockerfile
    assert load_spec(REPO / spec_path).name == study["SWEEPER_STUDY"]


def test_one_images_entry_sets_every_sweeper_container(tmp_path: Path) -> None:
    copy = _with_example_secrets(tmp_path / "deploy")
    kustomization = copy / "k8s/base/kustomization.yaml"
    data = yaml.safe_load(kustomization.read_text())
    assert [entry["name"] for entry in data["images"]] == ["sweeper"]
    moved = {"name": "sweeper", "newName": "registry.example:5000/ml/sweeper", "newTag": "0.1.0"}
    data["images"] = [moved]
    kustomization.write_text(yaml.safe_dump(data))
    for variant in VARIANTS:
        images = {c["image"] for o in render(copy / variant) for c in containers(o)}
        assert "registry.example:5000/ml/sweeper:0.1.0" in images
        # The optional PostgreSQL and PgBouncer are other projects' images, pinned.
        others = {"postgres:18", "edoburu/pgbouncer:v1.25.1-p0"}
        assert images <= {"registry.example:5000/ml/sweeper:0.1.0", *others}, images


# -- secrets -------------------------------------------------------------------------------------

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")
_PASSWORD_LIKE = re.compile(
    r"(?i)\b\w*(?:password|passwd|pwd|secret|token)\w*[ \t]*[=:][ \t]*[\"']?([^\s\"'#]+)"
)


def _written_secrets(text: str) -> list[str]:
    """Passwords written in ``text``: a URL's (as ``sweeper.storage.secrets_in`` finds them,
    typos included) and the values of password-like keys (``POSTGRES_PASSWORD=...``,
    ``password: ...``, ``?password=...``)."""
    found = [s for url in _URL.findall(text) for s in secrets_in(url)]
    found += _PASSWORD_LIKE.findall(text)
    return found


def test_the_password_scan_finds_passwords_in_every_shape() -> None:
    for text in (
        "SWEEPER_STORAGE=postgresql+psycopg2://sweeper:hunter2@postgres:5432/sweeper",
        "  value: postgresql://u:hunter2@db.example/sweeper",
        "postgres://u:hunter2/sweeper  # forgot the @host",
        "postgresql://u@db/sweeper?sslmode=require&password=hunter2",
        "POSTGRES_PASSWORD=hunter2",
        '  password: "hunter2"',
        "# the token: hunter2",
    ):
        assert "hunter2" in _written_secrets(text), text
    for text in (
        "  - name: POSTGRES_PASSWORD",
        "      secretKeyRef:",
        "postgresql+psycopg2://sweeper@postgres:5432/sweeper",
        "kind: Secret",
    ):
        assert _written_secrets(text) == [], text


def test_no_password_is_written_in_deploy() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and not _git_ignored(p)]
    assert len(files) >= 10
    written = {str(p.relative_to(REPO)): _written_secrets(p.read_text()) for p in files}
    leaks = {path: found for path, found in written.items() if set(found) - {PLACEHOLDER}}
    assert not leaks, f"passwords written in deploy/: {leaks}"
    assert any(written.values()), "the templates should show where the password goes"
    for path in files:
        if path.suffix == ".yaml":
            kinds = [d.get("kind") for d in yaml.safe_load_all(path.read_text()) if d]
            assert "Secret" not in kinds, f"{path}: Secrets are generated from ignored files"


def test_the_storage_url_reaches_containers_only_from_a_secret(objects: list[Object]) -> None:
    secret = _one(objects, "Secret", "sweeper-storage")
    url = base64.b64decode(secret["data"]["SWEEPER_STORAGE"]).decode()
    assert normalise_url(url) == url, "the template's URL should be one sweeper accepts"
    sweeper_containers = 0
    for obj in objects:
        for container in containers(obj):
            assert "envFrom" not in container, "each variable named, from its own source"
            for env in container.get("env", []):
                value = env.get("value", "")
                assert not _written_secrets(f"{env['name']}={value}"), env
                assert not _URL.search(value), f"{env['name']}: a URL belongs in the Secret"
            if split_image(container["image"])[0] != "sweeper":
                continue
            sweeper_containers += 1
            storage = [e for e in container["env"] if e["name"] == "SWEEPER_STORAGE"]
            assert storage == [
                {
                    "name": "SWEEPER_STORAGE",
                    "valueFrom": {
                        "secretKeyRef": {"name": "sweeper-storage", "key": "SWEEPER_STORAGE"}
                    },
                }
            ], f"{container['name']}: {storage}"
    assert sweeper_containers == 5  # creator, worker + its wait, dashboard + its wait
    for config in (o for o in objects if o["kind"] == "ConfigMap"):
        assert "SWEEPER_STORAGE" not in config["data"]
        assert not any(_written_secrets(f"{k}={v}") for k, v in config["data"].items())


def test_the_example_secrets_fit_the_bundled_postgres(deploy_copy: Path) -> None:
    # Copying both examples as they are gives a working pair, and README's recipe writes
    # the same password into both files.
    from sqlalchemy.engine import make_url

    url = make_url(read_env_file(deploy_copy / "k8s/base/storage-url.env")["SWEEPER_STORAGE"])
    password = read_env_file(deploy_copy / "k8s/postgres/postgres.env")["POSTGRES_PASSWORD"]
    postgres = _one(render(deploy_copy / "k8s/with-postgres"), "StatefulSet", "postgres")
    env = {e["name"]: e for e in _container(postgres, "postgres")["env"]}
    assert url.password == password == PLACEHOLDER
    assert (url.host, url.port) == ("postgres", 5432)
    assert url.username == env["POSTGRES_USER"]["value"]
    assert url.database == env["POSTGRES_DB"]["value"]
    assert env["POSTGRES_PASSWORD"] == {
        "name": "POSTGRES_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "postgres-auth", "key": "POSTGRES_PASSWORD"}},
    }


# -- the workers -------------------------------------------------------------------------------


def test_workers_are_an_indexed_job_with_one_gpu_each(objects: list[Object]) -> None:
    job = _one(objects, "Job", "sweeper-worker")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] >= 1  # elastic: scale both together
    pod = pod_template(job)["spec"]
    assert pod["restartPolicy"] == "Never"
    worker = _container(job, "worker")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert all("nvidia.com/gpu" not in str(c.get("resources")) for c in pod["initContainers"])
    # The index is the worker's name: an Indexed Job's pod is host <job>-<index> unless the
    # template overrides it, and a trial records its worker as host:pid; Kubernetes sets
    # JOB_COMPLETION_INDEX, which a trial records as its cluster task, unless the template
    # overrides it.
    assert not {"hostname", "subdomain", "setHostnameAsFQDN"} & set(pod)
    assert "JOB_COMPLETION_INDEX" not in {e["name"] for e in worker["env"]}
    host, _, pid = provenance.worker_id().rpartition(":")
    assert host == socket.gethostname() and pid.isdigit()


def test_the_completion_index_is_recorded_as_the_cluster_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    assert provenance.cluster_task() is None
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")  # as Kubernetes sets it in each container
    assert provenance.cluster_task() == "k8s index 2"
    recorded = provenance.provenance(torch.device("cpu"), "fused", "eager")
    assert recorded[attrs.CLUSTER_TASK] == "k8s index 2"


def test_preemption_and_sigterm_re_queue_without_spending_retries(objects: list[Object]) -> None:
    from sweeper.work.worker import WorkerStopped

    spec = _one(objects, "Job", "sweeper-worker")["spec"]
    assert spec["backoffLimitPerIndex"] >= 1
    assert spec["podReplacementPolicy"] == "Failed"  # never two pods (two GPUs) per index
    actions: dict[Any, str] = {}
    for rule in spec["podFailurePolicy"]["rules"]:
        for condition in rule.get("onPodConditions", []):
            actions.setdefault(condition["type"], rule["action"])
        codes = rule.get("onExitCodes")
        if codes:
            assert codes["operator"] == "In" and codes["containerName"] == "worker"
            for code in codes["values"]:
                actions.setdefault(code, rule["action"])
    assert actions == {
        "DisruptionTarget": "Ignore",  # preempted, evicted, drained
        WorkerStopped.exit_code: "Ignore",  # SIGTERM: the trial was re-queued
        UsageError.exit_code: "FailJob",  # bad input fails every index alike
    }


def test_sigterm_has_compose_s_grace_and_no_prestop(objects: list[Object]) -> None:
    job = _one(objects, "Job", "sweeper-worker")
    grace = pod_template(job)["spec"]["terminationGracePeriodSeconds"]
    compose = _seconds(_compose()["services"]["worker"]["stop_grace_period"])
    # workers.yaml derives 60 s: one step or checkpoint write, heartbeat joins (<= 5 s each)
    # and a few transactions per trial; past it the reaper re-queues the trial anyway.
    assert grace == compose >= 60
    assert "lifecycle" not in _container(job, "worker"), "a preStop hook would eat the grace"


def test_checkpoints_are_shared_where_the_image_writes_them(
    objects: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = re.search(r"SWEEPER_HOME=(\S+)", (REPO / "Dockerfile").read_text())
    assert home
    monkeypatch.setenv("SWEEPER_HOME", home.group(1))
    monkeypatch.delenv(checkpoints.ENV_VAR, raising=False)
    job = _one(objects, "Job", "sweeper-worker")
    mounts = {m["name"]: m for m in _container(job, "worker")["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_template(job)["spec"]["volumes"]}
    compose = _compose_mounts("worker")
    assert mounts["checkpoints"]["mountPath"] == str(checkpoints.default_root())
    assert compose[mounts["checkpoints"]["mountPath"]] is False
    claim_name = volumes["checkpoints"]["persistentVolumeClaim"]["claimName"]
    claim = _one(objects, "PersistentVolumeClaim", claim_name)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # a re-queued trial moves pods
    # Data: read-only for workers as in compose (`/data:ro`), written by the creator.
    assert mounts["data"]["mountPath"] == "/data" and mounts["data"]["readOnly"] is True
    assert compose["/data"] is True
    creator = _container(_one(objects, "Job", "sweeper-create-study"), "create-study")
    assert [m["mountPath"] for m in creator["volumeMounts"] if not m.get("readOnly")] == [
        "/data",
        "/var/cache/sweeper",
    ]


def test_data_is_decoded_once_into_a_cache_every_pod_shares(
    objects: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeper.train.data import cache_dir

    cache = re.search(r"SWEEPER_CACHE=(\S+)", (REPO / "Dockerfile").read_text())
    assert cache
    monkeypatch.setenv("SWEEPER_CACHE", cache.group(1))
    claims = set()
    for job, name in (("sweeper-create-study", "create-study"), ("sweeper-worker", "worker")):
        obj = _one(objects, "Job", job)
        mounts = {m["mountPath"]: m for m in _container(obj, name)["volumeMounts"]}
        mount = mounts[str(cache_dir())]  # where sweeper.train.data keeps its decodes
        assert not mount.get("readOnly"), f"{job} takes the decode lock: it must write"
        volumes = {v["name"]: v for v in pod_template(obj)["spec"]["volumes"]}
        claims.add(volumes[mount["name"]]["persistentVolumeClaim"]["claimName"])
    assert len(claims) == 1, claims  # one cache: the creator's decode is every worker's
    claim = _one(objects, "PersistentVolumeClaim", claims.pop())
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # The creator decodes before it creates the study, and workers wait for the study.
    waits = pod_template(_one(objects, "Job", "sweeper-worker"))["spec"]["initContainers"]
    assert [c["name"] for c in waits] == ["wait-for-study"]


def test_workers_run_as_many_threads_as_cores_they_request(objects: list[Object]) -> None:
    job = _one(objects, "Job", "sweeper-worker")
    worker = _container(job, "worker")
    env = {e["name"]: e for e in worker["env"]}
    ref = env["OMP_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]
    assert ref["containerName"] == "worker" and ref["resource"] == "requests.cpu"
    assert _resource_value(worker, ref) == int(worker["resources"]["requests"]["cpu"])


def test_finished_jobs_are_cleaned_up_after_their_logs_can_be_read(objects: list[Object]) -> None:
    for name in ("sweeper-create-study", "sweeper-worker"):
        ttl = _one(objects, "Job", name)["spec"]["ttlSecondsAfterFinished"]
        assert 3600 <= ttl <= 7 * 86400, (name, ttl)  # an hour to read logs, gone in a week


def test_pgbouncer_fronts_postgres_in_transaction_mode(deploy_copy: Path) -> None:
    from sweeper.storage import MIN_POOLER_CONNECTIONS

    rendered = render(deploy_copy / "k8s/with-pgbouncer")
    pooler = _one(rendered, "Deployment", "sweeper-pgbouncer")
    assert pooler["spec"]["replicas"] == 1
    container = _container(pooler, "pgbouncer")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["POOL_MODE"] == "transaction"  # the only mode sweeper works through
    assert int(env["DEFAULT_POOL_SIZE"]) >= MIN_POOLER_CONNECTIONS
    assert int(env["MAX_DB_CONNECTIONS"]) == int(env["DEFAULT_POOL_SIZE"])
    workers = _one(rendered, "Job", "sweeper-worker")["spec"]["parallelism"]
    assert int(env["MAX_CLIENT_CONN"]) >= (workers + 2) * (POOL_SIZE + MAX_OVERFLOW)
    assert "extra_float_digits" in env["IGNORE_STARTUP_PARAMETERS"]
    upstream = {e["name"]: e for e in container["env"]}["DATABASE_URL"]["valueFrom"]
    assert upstream == {"secretKeyRef": {"name": "pgbouncer-upstream", "key": "DATABASE_URL"}}
    service = _one(rendered, "Service", "sweeper-pgbouncer")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_template(pooler)["metadata"]["labels"].items()


# -- the dashboard, selectors, references --------------------------------------------------------


def test_the_dashboard_is_reachable_only_inside_the_cluster(objects: list[Object]) -> None:
    assert not {"Ingress", "Route", "Gateway", "HTTPRoute"} & {o["kind"] for o in objects}
    for service in (o for o in objects if o["kind"] == "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]
        assert not {"externalIPs", "loadBalancerIP"} & set(service["spec"])
    for obj in objects:
        pod = pod_template(obj)
        if pod is not None:
            assert not pod["spec"].get("hostNetwork")
            assert all("hostPort" not in str(c.get("ports")) for c in containers(obj))
    service = _one(objects, "Service", "sweeper-dashboard")["spec"]
    dashboard = _container(_one(objects, "Deployment", "sweeper-dashboard"), "dashboard")
    [port] = service["ports"]
    [container_port] = [p for p in dashboard["ports"] if p["name"] == port["targetPort"]]
    args = dashboard["args"]
    assert container_port["containerPort"] == int(args[args.index("--port") + 1])


def test_selectors_and_references_resolve(objects: list[Object]) -> None:
    templates = [(o, pod_template(o)) for o in objects if pod_template(o) is not None]
    for obj, template in templates:
        labels = template["metadata"]["labels"]
        selector = obj["spec"].get("selector")
        if obj["kind"] != "Job":  # a Job's selector is generated
            assert selector["matchLabels"].items() <= labels.items(), obj["metadata"]["name"]
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        assert selector and any(
            selector.items() <= t["metadata"]["labels"].items() for _, t in templates
        ), f"Service {service['metadata']['name']} selects no pod"
    names = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    for obj, template in templates:
        if obj["kind"] == "StatefulSet":
            headless = names[("Service", obj["spec"]["serviceName"])]
            assert headless["spec"]["clusterIP"] == "None"
        claims = {c["metadata"]["name"] for c in obj["spec"].get("volumeClaimTemplates", [])}
        for volume in template["spec"].get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            assert claim is None or ("PersistentVolumeClaim", claim) in names
        mounted = {m["name"] for c in containers(obj) for m in c.get("volumeMounts", [])}
        assert mounted <= {v["name"] for v in template["spec"].get("volumes", [])} | claims
        for container in containers(obj):
            for env in container.get("env", []):
                for kind, ref in (
                    ("Secret", env.get("valueFrom", {}).get("secretKeyRef")),
                    ("ConfigMap", env.get("valueFrom", {}).get("configMapKeyRef")),
                ):
                    if ref:
                        assert ref["key"] in names[(kind, ref["name"])]["data"], ref


# -- PostgreSQL ----------------------------------------------------------------------------------


def test_postgres_is_compose_s_with_room_for_the_workers(with_postgres: list[Object]) -> None:
    compose = _compose()["services"]["postgres"]
    postgres = _container(_one(with_postgres, "StatefulSet", "postgres"), "postgres")
    assert postgres["image"] == compose["image"]
    assert postgres["args"] == compose["command"]
    [setting] = [a for a in postgres["args"] if a.startswith("max_connections=")]
    max_connections = int(setting.partition("=")[2])
    per_process = POOL_SIZE + MAX_OVERFLOW
    workers = _one(with_postgres, "Job", "sweeper-worker")["spec"]["parallelism"]
    dashboards = _one(with_postgres, "Deployment", "sweeper-dashboard")["spec"]["replicas"]
    creators = _one(with_postgres, "Job", "sweeper-create-study")["spec"].get("parallelism", 1)
    others = (dashboards + creators) * per_process + SUPERUSER_RESERVED + HUMAN_MARGIN
    assert workers * per_process + others <= max_connections
    # The most workers the comment (and README) promise is what the arithmetic gives.
    most = (max_connections - others) // per_process
    comment = (K8S / "postgres/postgres.yaml").read_text()
    assert f"at most {most} workers" in comment
    assert f"{most} workers" in (REPO / "README.md").read_text()


def test_readme_shows_how_to_apply() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Kubernetes", 1)[1]
    for command in (
        "kubectl apply -k deploy/k8s",
        "kubectl apply -k deploy/k8s/with-postgres",
        "kubectl apply -k deploy/k8s/with-pgbouncer",
        # Results from inside the cluster: the dashboard's pod holds the storage URL.
        "kubectl -n sweeper exec deploy/sweeper-dashboard -- sweeper best --study",
    ):
        assert command in section, command
    assert "storage-url.env" in section


# -- the pods' commands, run as processes on a real PostgreSQL ------------------------------------


def _resource_value(container: dict[str, Any], ref: dict[str, Any]) -> int:
    """What Kubernetes puts in an env var from ``resourceFieldRef``: the container's CPU
    request or limit over ``divisor`` (1 core), rounded up ("500m" -> 1, "2" -> 2)."""
    kind, _, resource = ref["resource"].partition(".")
    assert resource == "cpu" and ref.get("divisor", "1") == "1", ref
    quantity = str(container["resources"][kind][resource])
    millis = int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)
    return -(-millis // 1000)


def _process(
    obj: Object, name: str, objects: list[Object], mounts: dict[str, Path]
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment ``name`` in ``obj`` would run with: env from its literal
    values, Secrets and ConfigMaps, ``$(VAR)`` expanded as Kubernetes does, the image's
    ENTRYPOINT (`sweeper`) unless ``command`` replaces it, and mount paths in arguments
    replaced by the local folders in ``mounts``."""
    container = _container(obj, name)
    data = {(o["kind"], o["metadata"]["name"]): o.get("data", {}) for o in objects}
    env = {}
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[entry["name"]] = base64.b64decode(
                data[("Secret", ref["name"])][ref["key"]]
            ).decode()
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[entry["name"]] = data[("ConfigMap", ref["name"])][ref["key"]]
        elif "resourceFieldRef" in source:
            env[entry["name"]] = str(_resource_value(container, source["resourceFieldRef"]))
        else:
            env[entry["name"]] = entry["value"]
    argv = container.get("command", ["sweeper"]) + container.get("args", [])
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), a) for a in argv]
    argv = [str(mounts.get(a, a)) for a in argv]
    bin_dir = str(Path(sys.executable).parent)  # `sweeper` on PATH, as in the image
    return argv, {**os.environ, **env, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}


@pytest.mark.slow
def test_the_pods_commands_create_wait_work_and_requeue_on_sigterm(
    storage_url: str, tiny_official: Path, tmp_path: Path
) -> None:
    """The study-creator Job, a worker pod's wait and its worker, with the environment the
    manifests give them (the Secret made from storage-url.env as a user writes it): the
    wait holds until the study exists, and SIGTERM makes the worker re-queue its trial and
    exit 130 (the code podFailurePolicy ignores) well within the grace period."""
    copy = _with_example_secrets(tmp_path / "deploy")
    (copy / "k8s/base/storage-url.env").write_text(f"SWEEPER_STORAGE={storage_url}\n")
    objects = render(copy / "k8s")
    mounts = {"/data": tiny_official}
    creator = _one(objects, "Job", "sweeper-create-study")
    workers = _one(objects, "Job", "sweeper-worker")
    study = _one(objects, "ConfigMap", "sweeper-study")["data"]["SWEEPER_STUDY"]

    argv, env = _process(workers, "wait-for-study", objects, mounts)
    wait = subprocess.Popen(
        argv, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        time.sleep(3)
        assert wait.poll() is None, "the wait should hold while there is no study"
        argv, env = _process(creator, "create-study", objects, mounts)
        created = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
        assert created.returncode == 0, created.stderr
        assert wait.wait(timeout=60) == 0
    finally:
        if wait.poll() is None:  # the shell and its `sleep` or `sweeper trials`
            os.killpg(wait.pid, signal.SIGKILL)
            wait.wait()
    assert wait.stderr is not None and f"no study named '{study}'" in wait.stderr.read()

    argv, env = _process(workers, "worker", objects, mounts)
    worker = subprocess.Popen(argv, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stderr is not None
        seen = []
        for line in worker.stderr:
            seen.append(line)
            if "trial   0 | epoch 1/" in line:
                break
        assert "epoch 1/" in seen[-1], "the worker never trained:\n" + "".join(seen)
        stopped = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        took = time.monotonic() - stopped
    finally:
        worker.kill()
    from sweeper.work.worker import WorkerStopped

    grace = pod_template(workers)["spec"]["terminationGracePeriodSeconds"]
    assert code == WorkerStopped.exit_code
    assert took < grace / 4, f"SIGTERM to exit took {took:.1f} s of the {grace} s grace"
    trials = sweeper("trials", "--study", study, "--format", "json", env=env)
    assert trials.returncode == 0, trials.stderr
    assert '"state": "WAITING"' in trials.stdout and "stopped by SIGTERM" in trials.stdout


# -- the renderer refuses what it does not implement ---------------------------------------------


def test_the_renderer_refuses_kustomize_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    head = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    for body, problem in (
        ("resources: [cm.yaml]\npatches: []\n", "does not implement"),
        ("resources: [gone.yaml]\n", "does not exist"),
        ("configMapGenerator: [{name: b, literals: [A=1]}]\n", "disableNameSuffixHash"),
        ("labels: [{pairs: {a: b}, includeSelectors: true}]\n", "only pairs"),
        ("resources: [cm.yaml, cm.yaml]\n", "two objects"),
    ):
        (tmp_path / "kustomization.yaml").write_text(head + body)
        with pytest.raises(KustomizeError, match=problem):
            render(tmp_path)
