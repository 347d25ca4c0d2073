import pytest

from planet_operator.rollout import durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("2m30s", 150.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert durations.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "5d", "5mm", "1h 30m", "-5s", "5s!", "s5"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        durations.parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(60, "60s"), (2.5, "2500ms"), (0.0001, "1ms")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert durations.format_seconds(seconds) == text
