"""The part of kustomize that deploy/k8s uses, so its tests render it without kustomize.

``render(folder)`` returns the objects ``kustomize build folder`` (``kubectl apply -k``)
would send, for kustomizations that use only:

- ``resources`` (YAML files, and folders holding a kustomization) and ``components``;
- ``namespace`` (every namespaced object);
- ``labels`` with ``pairs`` and ``includeTemplates`` (pod templates and a StatefulSet's
  volume claim templates); ``includeSelectors: true`` is not implemented;
- ``images`` (``name`` with ``newName``, ``newTag``, ``digest``) on every container and
  init container;
- ``configMapGenerator`` and ``secretGenerator`` from ``literals`` and ``envs`` files, with
  ``generatorOptions.disableNameSuffixHash: true`` (kustomize's hash suffix is not
  reproduced).

Anything else (a field, a generator option, a missing file, two objects with one name) is
a ``KustomizeError`` naming it, so a manifest that outgrows this subset fails its tests
instead of being half-read. On deploy/k8s (both kustomizations) the result was compared
with kustomize v5.8.1's (``kubectl kustomize``, kubectl 1.37.1): the same objects, field
for field.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION = "kustomization.yaml"
# apiVersion and kind of the two files this renderer reads.
KINDS = {
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
    "Component": "kustomize.config.k8s.io/v1alpha1",
}
FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "components",
    "images",
    "generatorOptions",
    "configMapGenerator",
    "secretGenerator",
}
# Kinds kustomize's namespace transformer leaves without a namespace.
CLUSTER_SCOPED = {
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
}
# Where a kind keeps its pod template.
POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

Object = dict[str, Any]


class KustomizeError(Exception):
    """The kustomization is wrong, or uses kustomize beyond this module's subset."""


def read_kustomization(folder: Path, kind: str = "Kustomization") -> dict[str, Any]:
    """``folder``'s kustomization.yaml, checked to be a ``kind`` using only known fields."""
    path = folder / KUSTOMIZATION
    if not path.is_file():
        raise KustomizeError(f"{folder} holds no {KUSTOMIZATION}")
    data = yaml.safe_load(path.read_text()) or {}
    if data.get("kind") != kind or data.get("apiVersion") != KINDS[kind]:
        raise KustomizeError(
            f"{path}: expected apiVersion {KINDS[kind]}, kind {kind} "
            f"(got {data.get('apiVersion')}, {data.get('kind')})"
        )
    unknown = set(data) - FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields this renderer does not implement: {sorted(unknown)}")
    return data


def referenced_files(folder: Path, kind: str = "Kustomization") -> set[Path]:
    """Every file a build of ``folder`` reads (kustomizations, manifests, env files)."""
    data = read_kustomization(folder, kind)
    files = {folder / KUSTOMIZATION}
    for entry in data.get("resources", []):
        path = folder / entry
        files |= referenced_files(path) if path.is_dir() else {path}
    for entry in data.get("components", []):
        files |= referenced_files(folder / entry, "Component")
    for generator in [*data.get("configMapGenerator", []), *data.get("secretGenerator", [])]:
        files |= {folder / env for env in generator.get("envs", [])}
    return {f.resolve() for f in files}


def render(folder: Path) -> list[Object]:
    """The objects ``kustomize build folder`` emits (in no particular order)."""
    objects = _build(folder, [], "Kustomization")
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if key in seen:
            raise KustomizeError(f"two objects are {key}")
        seen.add(key)
    return objects


def _build(folder: Path, accumulated: list[Object], kind: str) -> list[Object]:
    # kustomize's order: resources, then components (each sees what is accumulated so far),
    # then this kustomization's generators, then its transformers over all of it.
    data = read_kustomization(folder, kind)
    objects = list(accumulated)
    for entry in data.get("resources", []):
        path = folder / entry
        if path.is_dir():
            objects += _build(path, [], "Kustomization")
        elif path.is_file():
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        else:
            raise KustomizeError(f"{folder / KUSTOMIZATION}: resource {entry} does not exist")
    for entry in data.get("components", []):
        objects = _build(folder / entry, objects, "Component")
    objects += _generate(folder, data)
    if "namespace" in data:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = data["namespace"]
    for entry in data.get("labels", []):
        _label(objects, entry)
    for entry in data.get("images", []):
        _set_image(objects, entry)
    return objects


def _generate(folder: Path, data: dict[str, Any]) -> list[Object]:
    generators = [
        *(("ConfigMap", g) for g in data.get("configMapGenerator", [])),
        *(("Secret", g) for g in data.get("secretGenerator", [])),
    ]
    if not generators:
        return []
    options = data.get("generatorOptions", {})
    if options != {"disableNameSuffixHash": True}:
        raise KustomizeError(
            f"{folder / KUSTOMIZATION}: generators need generatorOptions "
            f"{{disableNameSuffixHash: true}} here (got {options})"
        )
    made = []
    for kind, generator in generators:
        unknown = set(generator) - {"name", "literals", "envs"}
        if unknown:
            raise KustomizeError(f"{folder / KUSTOMIZATION}: {kind} generator fields {unknown}")
        pairs: dict[str, str] = {}
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            pairs[key] = value
        for env in generator.get("envs", []):
            pairs.update(read_env_file(folder / env))
        obj: Object = {"apiVersion": "v1", "kind": kind, "metadata": {"name": generator["name"]}}
        if kind == "Secret":
            obj["type"] = "Opaque"
            pairs = {k: base64.b64encode(v.encode()).decode() for k, v in pairs.items()}
        obj["data"] = pairs
        made.append(obj)
    return made


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as kustomize reads an ``envs`` file: ``#`` lines and blank lines
    skipped, the value everything after the first ``=`` (no quotes removed)."""
    if not path.is_file():
        raise KustomizeError(f"env file {path} does not exist")
    pairs = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        key, equals, value = stripped.partition("=")
        if not equals:  # kustomize would read the value from its own environment
            raise KustomizeError(f"{path}:{number}: no '=' in {key!r}")
        pairs[key] = value
    return pairs


def _label(objects: list[Object], entry: dict[str, Any]) -> None:
    unknown = set(entry) - {"pairs", "includeTemplates", "includeSelectors"}
    if unknown or entry.get("includeSelectors"):
        raise KustomizeError(f"labels entry {entry}: only pairs and includeTemplates here")
    pairs = entry["pairs"]
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(pairs)
        if not entry.get("includeTemplates"):
            continue
        template = pod_template(obj)
        if template is not None:
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if obj["kind"] == "StatefulSet":
            for claim in obj["spec"].get("volumeClaimTemplates", []):
                claim.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def pod_template(obj: Object) -> dict[str, Any] | None:
    """The pod template of a workload (None for other kinds)."""
    path = POD_TEMPLATE_PATHS.get(obj["kind"])
    if path is None:
        return None
    node = obj
    for key in path:
        node = node[key]
    return node


def containers(obj: Object) -> list[dict[str, Any]]:
    """A workload's init containers and containers (none for other kinds)."""
    template = pod_template(obj)
    if template is None:
        return []
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def split_image(image: str) -> tuple[str, str]:
    """``registry:5000/name:tag`` -> (``registry:5000/name``, ``:tag``); digests likewise."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def _set_image(objects: list[Object], entry: dict[str, Any]) -> None:
    unknown = set(entry) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"images entry {entry}: fields {unknown}")
    for obj in objects:
        for container in containers(obj):
            name, suffix = split_image(container["image"])
            if name != entry["name"]:
                continue
            if "newTag" in entry:
                suffix = f":{entry['newTag']}"
            if "digest" in entry:
                suffix = f"@{entry['digest']}"
            container["image"] = entry.get("newName", name) + suffix
