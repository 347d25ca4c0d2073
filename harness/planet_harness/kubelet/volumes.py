"""A pod's volumes as local folders: emptyDir, configMap, secret, projected, downwardAPI, PVC."""

from __future__ import annotations

import base64
import decimal
import math
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from planet_operator.kube import quantity


def _write(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _items(data: dict[str, bytes], items: list[dict[str, Any]] | None) -> dict[str, bytes]:
    if not items:
        return data
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


class Volumes:
    """Materialises one pod's volumes under ``root``; PVCs live in ``claims`` and outlive pods."""

    def __init__(self, api: k8s.CoreV1Api, *, root: Path, claims: Path) -> None:
        self.api = api
        self.root = root
        self.claims = claims

    def prepare(self, pod: dict[str, Any]) -> dict[str, Path]:
        """Every volume of ``pod`` by name, as a folder."""
        namespace = pod["metadata"]["namespace"]
        folders: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes", []):
            name = volume["name"]
            folder = self.root / name
            if "persistentVolumeClaim" in volume:
                folder = self._claim(namespace, volume["persistentVolumeClaim"]["claimName"])
            elif "emptyDir" in volume:
                folder.mkdir(parents=True, exist_ok=True)
            elif "configMap" in volume:
                _write(folder, self._config_map(namespace, volume["configMap"]))
            elif "secret" in volume:
                _write(folder, self._secret(namespace, volume["secret"]))
            elif "projected" in volume:
                for source in volume["projected"].get("sources", []):
                    _write(folder, self._projected(pod, source))
            elif "downwardAPI" in volume:
                _write(folder, self._downward(pod, volume["downwardAPI"].get("items", [])))
            else:
                raise NotImplementedError(f"volume {name}: {sorted(volume)} is not supported by this kubelet")
            folders[name] = folder
        return folders

    def _claim(self, namespace: str, claim: str) -> Path:
        """A bound claim's hostPath volume (what the provisioner made), else a folder of its own."""
        found = self.api.read_namespaced_persistent_volume_claim(claim, namespace)
        volume = found.spec.volume_name if found.spec is not None else None
        if volume:
            bound = self.api.read_persistent_volume(volume)
            if bound.spec is not None and bound.spec.host_path is not None:
                return Path(bound.spec.host_path.path)
        folder = self.claims / namespace / claim
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _config_map(self, namespace: str, source: dict[str, Any]) -> dict[str, bytes]:
        found = self.api.read_namespaced_config_map(source["name"], namespace)
        data = {k: v.encode() for k, v in (found.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (found.binary_data or {}).items()})
        return _items(data, source.get("items"))

    def _secret(self, namespace: str, source: dict[str, Any]) -> dict[str, bytes]:
        found = self.api.read_namespaced_secret(source["secretName"], namespace)
        data = {k: base64.b64decode(v) for k, v in (found.data or {}).items()}
        return _items(data, source.get("items"))

    def _projected(self, pod: dict[str, Any], source: dict[str, Any]) -> dict[str, bytes]:
        meta = pod["metadata"]
        if "serviceAccountToken" in source:
            spec = source["serviceAccountToken"]
            request = k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(
                    audiences=[spec["audience"]] if spec.get("audience") else [],
                    expiration_seconds=spec.get("expirationSeconds", 3607),
                    bound_object_ref=k8s.V1BoundObjectReference(
                        kind="Pod", api_version="v1", name=meta["name"], uid=meta["uid"]
                    ),
                )
            )
            account = pod["spec"].get("serviceAccountName", "default")
            token = self.api.create_namespaced_service_account_token(account, meta["namespace"], request)
            if token.status is None or not token.status.token:
                raise RuntimeError(f"TokenRequest for {account} returned no token")
            return {spec["path"]: token.status.token.encode()}
        if "configMap" in source:
            return self._config_map(meta["namespace"], source["configMap"])
        if "secret" in source:
            return self._secret(
                meta["namespace"], {**source["secret"], "secretName": source["secret"]["name"]}
            )
        if "downwardAPI" in source:
            return self._downward(pod, source["downwardAPI"].get("items", []))
        raise NotImplementedError(f"projected source {sorted(source)}")

    def _downward(self, pod: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for item in items:
            if "fieldRef" in item:
                out[item["path"]] = field(pod, item["fieldRef"]["fieldPath"]).encode()
        return out


def field(pod: dict[str, Any], path: str) -> str:
    """A downward-API field of the pod (``metadata.name``, ``metadata.labels['x']``, ``status.podIP``)."""
    if path.startswith(("metadata.labels[", "metadata.annotations[")):
        section, key = path.split("[", 1)
        return str(pod["metadata"].get(section.split(".")[1], {}).get(key.strip("]'\""), ""))
    value: Any = pod
    for part in path.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return str(value)


def resource_field(container: dict[str, Any], ref: dict[str, Any], allocatable: dict[str, str]) -> str:
    """A downward-API ``resourceFieldRef`` of ``container``, as the kubelet resolves it.

    An unset limit reads as the node's allocatable (the kubelet's ``MergeContainerResourceLimits``);
    the value is divided by ``divisor`` (default 1) and rounded up, so ``limits.cpu: 100m`` reads "1".
    """
    kind, _, name = str(ref["resource"]).partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "limits":
        value = allocatable.get(name)
    amount = quantity.parse(value) if value is not None else decimal.Decimal(0)
    divisor = quantity.parse(ref.get("divisor") or 1) or decimal.Decimal(1)
    if amount is None:
        raise ValueError(f"{ref['resource']}: {value!r} is not a quantity")
    return str(math.ceil(amount / divisor))
