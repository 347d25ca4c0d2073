"""Structured prompts: ordered attributes rendered through the pipeline's template."""

from __future__ import annotations

import re
from collections.abc import Mapping

from planet_contracts.api.spec import PromptAttribute, PromptSpec
from planet_predictors.serving import text as texts
from planet_predictors.serving.errors import BadRequest

#: The reference "ethereal planets" prompt, used when the pipeline config defines none.
ETHEREAL_PLANETS = PromptSpec(
    template="{color} planet with {atmosphere}, {moons}, {sky}",
    attributes=[
        PromptAttribute(
            name="color",
            values=["deep blue", "crimson", "emerald", "golden", "violet", "pearl white", "amber", "teal"],
            default="deep blue",
        ),
        PromptAttribute(
            name="atmosphere",
            values=[
                "frosted cloudy zones",
                "swirling storm bands",
                "glowing auroras",
                "thin hazy rings",
                "crystalline ice fields",
                "volcanic ash clouds",
            ],
            default="frosted cloudy zones",
        ),
        PromptAttribute(
            name="moons",
            values=["no moons", "one small moon", "two moons", "a ring of moonlets"],
            default="no moons",
        ),
        PromptAttribute(
            name="sky",
            values=["distant stars dark sky", "nebula sky", "twin suns", "galaxy core backdrop"],
            default="distant stars dark sky",
        ),
    ],
)


def default_vocabulary() -> list[str]:
    """Every phrase the built-in template can produce (the tiny tokenizer learns its merges here)."""
    return [ETHEREAL_PLANETS.template, *(v for a in ETHEREAL_PLANETS.attributes for v in a.values)]


class PromptBuilder:
    """Turns a request's ``prompt`` (attribute object or free text) into the text the model sees."""

    def __init__(self, spec: PromptSpec | None) -> None:
        self.spec = spec if spec is not None else ETHEREAL_PLANETS
        self.attributes = {a.name: a for a in self.spec.attributes}

    @property
    def max_free_text_length(self) -> int:
        """Longest free-text prompt accepted."""
        return self.spec.max_free_text_length

    def render(self, prompt: object, *, field: str) -> str:
        """Render or raise :class:`BadRequest` naming ``field`` and what is allowed."""
        if isinstance(prompt, str):
            return self._free_text(prompt, field=field)
        if isinstance(prompt, Mapping):
            return self._structured(prompt, field=field)
        raise BadRequest(field, "must be an object of attributes or a string of free text")

    def contrast(self, prompt: object) -> list[str]:
        """The values of ``contrast`` attributes a structured ``prompt`` did not pick (after render)."""
        if not isinstance(prompt, Mapping):
            return []
        unpicked: list[str] = []
        for name, attribute in self.attributes.items():
            picked = prompt.get(name, attribute.default)
            if attribute.contrast and picked is not None:
                unpicked += [v for v in attribute.values if v != picked]
        return unpicked

    def _free_text(self, text: str, *, field: str) -> str:
        text = " ".join(texts.checked(text, field).split())
        if not text:
            raise BadRequest(field, "must not be empty")
        if len(text) > self.max_free_text_length:
            raise BadRequest(field, f"{len(text)} characters; the limit is {self.max_free_text_length}")
        return text

    def _structured(self, prompt: Mapping[object, object], *, field: str) -> str:
        unknown = [k for k in prompt if k not in self.attributes]
        if unknown:
            raise BadRequest(
                f"{field}.{unknown[0]}", f"unknown attribute; allowed: {', '.join(self.attributes)}"
            )
        slots: dict[str, str] = {}
        for name, attribute in self.attributes.items():
            value = prompt.get(name, attribute.default)
            if value is None:
                if attribute.required:
                    raise BadRequest(f"{field}.{name}", f"required; allowed: {_allowed(attribute)}")
                slots[name] = ""
                continue
            if not isinstance(value, str) or value not in attribute.values:
                shown = f'"{value}"' if isinstance(value, str) else type(value).__name__
                raise BadRequest(
                    f"{field}.{name}", f"unsupported value {shown[:80]}; allowed: {_allowed(attribute)}"
                )
            slots[name] = value
        text = self.spec.template.format(**slots)
        # Optional attributes left empty leave ", ," or double spaces behind.
        text = re.sub(r"\s*,(\s*,)+", ",", text)
        return " ".join(text.split()).strip(" ,")


def _allowed(attribute: PromptAttribute) -> str:
    values = attribute.values
    shown = ", ".join(f'"{v}"' for v in values[:12])
    return shown + (f" (and {len(values) - 12} more)" if len(values) > 12 else "")
