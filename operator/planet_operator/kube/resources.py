"""The resources the operator reads and writes."""

from planet_contracts.api import resource as api
from planet_operator.kube.client import Resource

PIPELINES = Resource(group=api.GROUP, version=api.VERSION, plural=api.PLURAL)
INFERENCE_SERVICES = Resource(group="serving.kserve.io", version="v1beta1", plural="inferenceservices")
INFERENCE_GRAPHS = Resource(group="serving.kserve.io", version="v1alpha1", plural="inferencegraphs")
JOBS = Resource(group="batch", version="v1", plural="jobs")
CONFIG_MAPS = Resource(group="", version="v1", plural="configmaps")
CONTROLLER_REVISIONS = Resource(group="apps", version="v1", plural="controllerrevisions")
EVENTS = Resource(group="", version="v1", plural="events")

BY_KIND = {
    ("serving.kserve.io/v1beta1", "InferenceService"): INFERENCE_SERVICES,
    ("serving.kserve.io/v1alpha1", "InferenceGraph"): INFERENCE_GRAPHS,
    ("batch/v1", "Job"): JOBS,
    ("v1", "ConfigMap"): CONFIG_MAPS,
    ("apps/v1", "ControllerRevision"): CONTROLLER_REVISIONS,
}


def of(body: dict[str, object]) -> Resource:
    """The resource of a manifest, by apiVersion and kind."""
    return BY_KIND[(str(body["apiVersion"]), str(body["kind"]))]
