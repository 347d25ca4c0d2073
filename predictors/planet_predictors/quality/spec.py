"""The verifier a pipeline spec asks for (the operator's models know nothing of the predictors)."""

from __future__ import annotations

import logging

from PIL import Image

from planet_contracts.api.spec import CompositionSpec, PlanetPipelineSpec
from planet_predictors.quality.region import Region
from planet_predictors.quality.verifier import Verdict, Verifier

log = logging.getLogger(__name__)


def region_of(spec: CompositionSpec) -> Region:
    """``spec.generation.composition`` as the verifier's :class:`Region`."""
    return Region(
        left=spec.left,
        right=spec.right,
        top=spec.top,
        bottom=spec.bottom,
        min_diameter=spec.min_diameter,
        max_diameter=spec.max_diameter,
    )


def verifier_of(spec: PlanetPipelineSpec, *, final: bool = True) -> Verifier | None:
    """The verifier for ``spec.generation``'s region, or None when ``verify`` is false.

    ``final``: the images are what the client gets. A native render that the pipeline's upscale
    chain goes on to sharpen is not judged on sharpness (the chain's output is).
    """
    generation = spec.generation
    if not generation.verify:
        return None
    # An upscale spec has at least one stage: its presence is the chain's.
    return Verifier(region_of(generation.composition), sharpness=final or spec.upscale is None)


def judge(verifier: Verifier | None, image: Image.Image, prompt: str) -> Verdict | None:
    """``verifier``'s verdict on ``image``, or None without one or when it fails (never the request)."""
    if verifier is None:
        return None
    try:
        return verifier.verify(image, prompt)
    except Exception:  # the verifier is advisory: an image it cannot measure is still served
        log.warning(
            "the verifier failed on a %dx%d image; answering without quality", *image.size, exc_info=True
        )
        return None
