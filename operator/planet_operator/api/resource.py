"""The ``PlanetPipeline`` resource: API coordinates and the whole-object model."""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from planet_operator.api.spec import PlanetPipelineSpec
from planet_operator.api.status import PlanetPipelineStatus

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
MANAGER = "planetgen"


class ObjectMeta(pydantic.BaseModel):
    """The metadata fields the operator reads; everything else passes through."""

    model_config = pydantic.ConfigDict(extra="allow", populate_by_name=True)

    name: str = pydantic.Field(min_length=1, max_length=40, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
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

    def owner_reference(self) -> dict[str, Any]:
        """An ownerReference that makes children follow this object's lifetime."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.metadata.name,
            "uid": self.metadata.uid or "",
            "controller": True,
            "blockOwnerDeletion": True,
        }
