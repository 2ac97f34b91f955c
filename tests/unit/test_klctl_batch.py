"""klctl verbs over several objects: each object's line or error, the others go on, exit 1 if
any failed; a lost server ends the command."""

from __future__ import annotations

import pytest

from kubelite.api.errors import ApiError, NotFound, Unavailable
from kubelite.cli.klctl.batch import for_each_object
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError, ObjectFailed

CTX = Context("127.0.0.1:6443", 30.0, False)


async def test_each_object_gets_its_line_and_a_failure_does_not_stop_the_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def act(name: str) -> str | None:
        if name == "gone":
            raise NotFound(f'configmaps "{name}" not found')
        if name == "clash":
            raise ObjectFailed("error: 'a' already has a value (1), and --overwrite is false")
        if name == "quiet":
            return None
        return f"configmap/{name} patched"

    code = await for_each_object(["a", "gone", "quiet", "clash", "b"], CTX, act)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.splitlines() == ["configmap/a patched", "configmap/b patched"]
    assert captured.err.splitlines() == [
        'Error from server (NotFound): configmaps "gone" not found',
        "error: 'a' already has a value (1), and --overwrite is false",
    ]


async def test_all_done_is_exit_status_0(capsys: pytest.CaptureFixture[str]) -> None:
    async def act(name: str) -> str:
        return f"{name} scaled"

    assert await for_each_object(["a", "b"], CTX, act) == 0
    assert capsys.readouterr().out.splitlines() == ["a scaled", "b scaled"]


async def test_a_lost_server_ends_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    async def act(name: str) -> str:
        seen.append(name)
        raise Unavailable("API server unavailable: connection refused")

    with pytest.raises(Unavailable):
        await for_each_object(["a", "b"], CTX, act)
    assert seen == ["a"]
    assert capsys.readouterr().err == ""


async def test_cli_errors_end_the_command_unless_reported_per_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def act(name: str) -> str:
        if name == "bad":
            raise CliError('error validating "bad.yaml": kind is required')
        return f"{name} created"

    with pytest.raises(CliError):
        await for_each_object(["bad", "good"], CTX, act)
    assert capsys.readouterr().out == ""

    code = await for_each_object(["bad", "good"], CTX, act, report_cli_errors=True)
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.splitlines() == ["good created"]
    assert captured.err.splitlines() == ['error: error validating "bad.yaml": kind is required']


async def test_api_errors_in_the_verbs_own_words(capsys: pytest.CaptureFixture[str]) -> None:
    async def act(name: str) -> str:
        raise NotFound(f'namespaces "{name}" not found')

    def words(name: str, e: ApiError) -> str:
        return f"error: creating {name}: {e.message}"

    assert await for_each_object(["x"], CTX, act, error_text=words) == 1
    assert capsys.readouterr().err.splitlines() == ['error: creating x: namespaces "x" not found']
