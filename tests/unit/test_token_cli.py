"""`kubelite token create`'s options: defaults from the data dir, durations, and bad values
refused with a usage error naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelite import pki
from kubelite.cli.local import build_parser
from kubelite.cli.token import TokenCreateSettings, TokenError, settings_from, token_secret


def parse(*args: str) -> TokenCreateSettings:
    return settings_from(build_parser().parse_args(["token", "create", *args]))


def test_defaults_are_the_data_dirs_token_and_admin_conf(tmp_path: Path) -> None:
    settings = parse("--data-dir", str(tmp_path))
    assert settings.admin_kubeconfig == tmp_path / "admin.conf"
    assert settings.ttl == pki.DEFAULT_BOOTSTRAP_TOKEN_TTL
    (tmp_path / "bootstrap-token").write_text("abcdef.0123456789abcdef\n")
    assert settings.read_token() == "abcdef.0123456789abcdef"


def test_durations_and_an_explicit_token() -> None:
    settings = parse("--ttl", "1h30m", "--timeout", "5s", "--token",
                     "abcdef.0123456789abcdef", "--print-join-command",
                     "--kubeconfig", "/x/admin.conf")
    assert (settings.ttl, settings.timeout) == (5400.0, 5.0)
    assert settings.read_token() == "abcdef.0123456789abcdef"
    assert settings.admin_kubeconfig == Path("/x/admin.conf")
    assert settings.print_join_command
    assert parse("--ttl", "0").ttl == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--token", "not-a-token"], "--token: must be ID.SECRET"),
    (["--ttl=-1h"], "argument --ttl: invalid duration"),
    (["--timeout", "0"], "--timeout: must be more than 0"),
])
def test_bad_values_are_usage_errors_naming_the_option(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_data_dir_without_a_token_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="run `kubelite init` first"):
        parse("--data-dir", str(tmp_path)).read_token()


def test_the_secret_is_a_bootstrap_token_for_authentication_and_signing() -> None:
    secret = token_secret("abcdef.0123456789abcdef", 0)
    assert (secret.metadata.namespace, secret.metadata.name) == (
        "kube-system", "bootstrap-token-abcdef")
    assert secret.type == "bootstrap.kubernetes.io/token"
    assert secret.data["token-secret"] == b"0123456789abcdef"
    assert secret.data["usage-bootstrap-authentication"] == b"true"
    assert "expiration" not in secret.data
    assert "expiration" in token_secret("abcdef.0123456789abcdef", 60).data
