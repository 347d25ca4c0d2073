"""The text check every parser shares (no kserve here: the engine builder imports the prompt builder)."""

from __future__ import annotations

from planet_predictors.serving.errors import BadRequest


def checked(value: object, field: str) -> str:
    """``value`` if it is a string that encodes as UTF-8 (JSON can spell lone surrogates, which do not).

    Refused here, at parse time, such a string would fail later in the tokenizer, inside a batch.
    """
    if not isinstance(value, str):
        raise BadRequest(field, "must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(field, f"not valid Unicode text (lone surrogate at character {exc.start})") from None
    return value
