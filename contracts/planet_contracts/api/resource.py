"""The ``PlanetPipeline`` resource: API coordinates and the whole-object model."""

from __future__ import annotations

import re
from typing import Literal

import pydantic

from planet_contracts.api import rules
from planet_contracts.api.spec import PlanetPipelineSpec
from planet_contracts.api.status import PlanetPipelineStatus

GROUP = "planetgen.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "PlanetPipeline"
PLURAL = "planetpipelines"
SINGULAR = "planetpipeline"
SHORT_NAMES = ("pp", "planet")
CRD_NAME = f"{PLURAL}.{GROUP}"

#: Labels every child carries (DESIGN: names and contracts).
LABEL_PIPELINE = f"{GROUP}/pipeline"
LABEL_REVISION = f"{GROUP}/revision"
LABEL_COMPONENT = f"{GROUP}/component"
LABEL_ENGINE_KEY = f"{GROUP}/engine-key"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
#: On an InferenceService the graph no longer routes to: when it may be deleted (ISO 8601).
RETIRE_AFTER = f"{GROUP}/retire-after"
MANAGER = "planetgen"

#: What KServe accepts as an InferenceService or InferenceGraph name (its webhooks' IsvcNameFmt and
#: GraphNameFmt): a DNS-1035 label, so no dots and no leading digit, unlike other Kubernetes names.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
#: The longest pipeline name whose derived names all fit where KServe, Knative and Kubernetes want a
#: DNS-1035 label or a label value (63 characters at most). With N the pipeline's name and ``rev`` 10
#: hex characters (builders.revision.REVISION_LENGTH; tests/operator/test_api.py checks the two agree):
#:
#: - longest InferenceService: a canary, ``<N>-generate-<rev>`` = N + 1 + 8 + 1 + 10 = N + 20;
#: - Standard mode: KServe names the predictor's Deployment, Service and HPA/ScaledObject
#:   ``<isvc>-predictor`` (constants.PredictorServiceName, +10) and labels its pods
#:   ``app: isvc.<isvc>-predictor`` (constants.GetRawServiceLabel, +15);
#: - Knative mode: the Knative Service ``<isvc>-predictor`` has revisions ``<isvc>-predictor-00001``
#:   (+16), a name and a pod label value (``serving.knative.dev/revision``); no tag routes are asked
#:   for (canaries are InferenceServices of their own), so no ``latest-`` Services;
#: - the InferenceGraph ``<N>``: router Deployment and Service ``<N>``, pod label ``app: isvc.<N>``;
#:   ConfigMaps ``<N>-<rev>-<digest>`` and ControllerRevisions ``<N>-<rev>`` may be 253 long.
#:
#: The longest is ``<N>-generate-<rev>-predictor-00001`` = N + 20 + 16 <= 63, so N <= 27. Past 63,
#: Knative's kmeta.ChildName would hash some names, but KServe's Services and the pod labels would be
#: refused.
MAX_NAME_LENGTH = 63 - len("-generate-") - 10 - len("-predictor-00001")

#: Rules on ``metadata.name``: the CRD's root validations (``self`` is the object) and their twins in
#: :func:`planet_contracts.api.validation.parse` (``check`` gets the name), so both say the same words.
#: No ``fieldPath``: the API server takes only paths its schema declares, and metadata's are not.
NAME_RULES = (
    rules.Rule(
        cel=f"self.metadata.name.matches('{NAME_PATTERN}')",
        message="metadata.name must be a DNS-1035 label: lowercase letters, digits and '-', starting with a"
        " letter and ending with a letter or digit (KServe's rule for the InferenceServices named after it)",
        check=lambda name: re.fullmatch(NAME_PATTERN, name) is not None,
    ),
    rules.Rule(
        cel=f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
        message=f"metadata.name must be at most {MAX_NAME_LENGTH} characters: KServe and Knative derive"
        f" names up to {63 - MAX_NAME_LENGTH} longer from it (<name>-generate-<revision>-predictor-00001),"
        " each at most 63",
        check=lambda name: len(name) <= MAX_NAME_LENGTH,
    ),
)


class ObjectMeta(pydantic.BaseModel):
    """The metadata fields the operator reads; everything else passes through."""

    model_config = pydantic.ConfigDict(extra="allow", populate_by_name=True)

    #: Only non-empty here: NAME_RULES say what else a name needs, in the API server's words.
    name: str = pydantic.Field(min_length=1)
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    annotations: dict[str, str] = pydantic.Field(default_factory=dict)


class PlanetPipeline(pydantic.BaseModel):
    """A whole ``PlanetPipeline`` object as read from YAML or the API."""

    model_config = pydantic.ConfigDict(populate_by_name=True, extra="forbid")

    api_version: Literal["planetgen.io/v1alpha1"] = pydantic.Field(alias="apiVersion")
    kind: Literal["PlanetPipeline"]
    metadata: ObjectMeta
    spec: PlanetPipelineSpec
    status: PlanetPipelineStatus | None = None
