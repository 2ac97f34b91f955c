"""Go durations as klctl's and the scheduler's flags take them: one parser, each command's
own wording when a value is not a duration."""

from __future__ import annotations

import pytest

from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import parse_duration as klctl_duration
from kubelite.durations import parse_duration
from scheduler.__main__ import parse_args as scheduler_args


@pytest.mark.parametrize(("text", "seconds"), [
    ("5s", 5.0),
    ("1m30s", 90.0),
    ("250ms", 0.25),
    ("1.5h", 5400.0),
    ("1h1m1s", 3661.0),
    ("30m1h", 5400.0),
    ("500us", 0.0005),
    ("10µs", 1e-5),
    ("10μs", 1e-5),
    ("100ns", 1e-7),
    (".5s", 0.5),
    ("2", 2.0),
    ("1.5", 1.5),
    ("0", 0.0),
    (" 5s ", 5.0),
])
def test_go_durations_and_bare_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    "", "s", "5x", "5 s", "1m 30s", "5s5", "-5s", "-1", "1e3", "inf", "nan", "five",
])
def test_what_is_not_a_duration_is_refused_in_go_words(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == f'time: invalid duration "{text}"'


def test_klctl_names_the_flag_as_kubectl_does() -> None:
    assert klctl_duration("1m30s", "--timeout") == 90.0
    with pytest.raises(CliError) as caught:
        klctl_duration("soon", "--timeout")
    assert str(caught.value) == (
        'invalid argument "soon" for "--timeout" flag: time: invalid duration "soon"'
    )


def test_scheduler_flags_take_go_durations() -> None:
    _, settings, _ = scheduler_args(["--leader-elect-lease-duration", "1m30s",
                                     "--pod-initial-backoff", "500ms"])
    assert settings.leader_election is not None
    assert settings.leader_election.lease_duration == 90.0
    assert settings.queue.pod_initial_backoff == 0.5


def test_scheduler_refuses_a_bad_duration_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        scheduler_args(["--pod-max-backoff", " soon "])
    assert caught.value.code == 2
    assert ("argument --pod-max-backoff: invalid duration 'soon' (e.g. 15s, 500ms, 1m30s)"
            in capsys.readouterr().err)
