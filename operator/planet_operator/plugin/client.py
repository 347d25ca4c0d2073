"""Kubernetes access for the plugin: kubeconfig loading like kubectl, and the calls it makes."""

from __future__ import annotations

import dataclasses
from typing import Any

from planet_contracts.api import resource

Body = dict[str, Any]
#: Seconds before a request gives up: a CLI should fail fast and say why.
TIMEOUT = 15.0


class PluginError(Exception):
    """A failure to report on one line (exit 2)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """Where to talk to: ``--kubeconfig``, ``--context``, ``--namespace`` (kubectl's flags)."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


class Cluster:
    """The few reads and writes the plugin needs, over the official client."""

    def __init__(self, target: Target) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=target.kubeconfig, context=target.context, client_configuration=configuration
            )
        except (config.ConfigException, OSError) as exc:
            raise PluginError(f"cannot load kubeconfig: {exc}") from exc
        # No client-side retries: a dead server should be reported now, not after minutes.
        configuration.retries = 0
        self.namespace = target.namespace or _context_namespace(target) or "default"
        self._api = client.ApiClient(configuration)
        self._custom = client.CustomObjectsApi(self._api)
        self._apps = client.AppsV1Api(self._api)
        self._batch = client.BatchV1Api(self._api)
        self._core = client.CoreV1Api(self._api)

    def close(self) -> None:
        """Release the connection pool."""
        self._api.close()  # type: ignore[no-untyped-call]

    def pipelines(self, *, all_namespaces: bool = False) -> list[Body]:
        """PlanetPipelines in the namespace (or every namespace), sorted by namespace and name."""
        if all_namespaces:
            reply = self._call(
                self._custom.list_cluster_custom_object, resource.GROUP, resource.VERSION, resource.PLURAL
            )
        else:
            reply = self._call(
                self._custom.list_namespaced_custom_object,
                resource.GROUP,
                resource.VERSION,
                self.namespace,
                resource.PLURAL,
            )
        items: list[Body] = list(reply.get("items") or [])
        return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def pipeline(self, name: str) -> Body:
        """One PlanetPipeline."""
        reply: Body = self._call(
            self._custom.get_namespaced_custom_object,
            resource.GROUP,
            resource.VERSION,
            self.namespace,
            resource.PLURAL,
            name,
        )
        return reply

    def annotate(self, name: str, annotations: dict[str, str | None]) -> Body:
        """Set (or, with None, remove) annotations on a pipeline with a merge patch."""
        reply: Body = self._call(
            self._custom.patch_namespaced_custom_object,
            resource.GROUP,
            resource.VERSION,
            self.namespace,
            resource.PLURAL,
            name,
            {"metadata": {"annotations": annotations}},
        )
        return reply

    def revisions(self, name: str) -> list[Body]:
        """The pipeline's ControllerRevisions, oldest first."""
        selector = f"{resource.LABEL_PIPELINE}={name}"
        reply = self._call(
            self._apps.list_namespaced_controller_revision, self.namespace, label_selector=selector
        )
        items = [self._api.sanitize_for_serialization(item) for item in reply.items]  # type: ignore[no-untyped-call]
        return sorted(items, key=lambda r: int(r.get("revision") or 0))

    def services(self, pipeline: str) -> list[Body]:
        """The pipeline's InferenceServices (by the label the operator sets on its children)."""
        reply = self._call(
            self._custom.list_namespaced_custom_object,
            "serving.kserve.io",
            "v1beta1",
            self.namespace,
            "inferenceservices",
            label_selector=f"{resource.LABEL_PIPELINE}={pipeline}",
        )
        return sorted(reply.get("items") or [], key=lambda o: str(o["metadata"]["name"]))

    def job(self, name: str) -> Body | None:
        """One Job, or None when there is none by that name."""
        from kubernetes.client.exceptions import ApiException

        try:
            job = self._batch.read_namespaced_job(name, self.namespace, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise PluginError(_api_message(exc)) from exc
        body: Body = self._api.sanitize_for_serialization(job)  # type: ignore[no-untyped-call]
        return body

    def pods(self, selector: str) -> list[Body]:
        """Pods by label selector, newest first."""
        reply = self._call(self._core.list_namespaced_pod, self.namespace, label_selector=selector)
        items = [self._api.sanitize_for_serialization(item) for item in reply.items]  # type: ignore[no-untyped-call]
        return sorted(items, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""), reverse=True)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, _request_timeout=TIMEOUT, **kwargs)
        except ApiException as exc:
            raise PluginError(_api_message(exc)) from exc
        except HTTPError as exc:
            raise PluginError(f"cannot reach the API server: {exc}") from exc


def _context_namespace(target: Target) -> str | None:
    """The current context's namespace, as kubectl would use it."""
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=target.kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError):
        return None
    chosen = next((c for c in contexts if c["name"] == target.context), None) if target.context else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def _api_message(exc: Any) -> str:
    """The Status message the server sent, or the HTTP reason."""
    import json

    try:
        status = json.loads(exc.body or "{}")
    except ValueError:
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    return str(message or f"{exc.status} {exc.reason}")
