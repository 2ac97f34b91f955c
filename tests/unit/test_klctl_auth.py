"""What `klctl auth can-i` asks about: kubectl's forms of its RESOURCE argument."""

from __future__ import annotations

import pytest

from kubelite.cli.klctl.auth import Resource, can_i_target
from kubelite.cli.klctl.errors import CliError


@pytest.mark.parametrize(("text", "name", "subresource", "expected"), [
    ("pods", "", "", Resource("pods", "", True)),
    ("po", "web", "", Resource("pods", "", True, "", "web")),
    ("pods/log", "", "", Resource("pods", "", True, "log")),
    ("pods/web", "", "", Resource("pods", "", True, "", "web")),
    ("pods", "web", "exec", Resource("pods", "", True, "exec", "web")),
    ("deploy/scale", "", "", Resource("deployments", "apps", True, "scale")),
    ("deployments.apps", "", "", Resource("deployments", "apps", True)),
    ("nodes", "", "", Resource("nodes", "", False)),
    ("clusterroles", "", "", Resource("clusterroles", "rbac.authorization.k8s.io", False)),
    ("*", "", "", Resource("*", "*", True)),
])
def test_resource_forms(text: str, name: str, subresource: str, expected: Resource) -> None:
    assert can_i_target(text, name, subresource) == expected


def test_an_unknown_resource_is_asked_as_written_with_a_warning(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert can_i_target("widgets.example.com", "", "") == Resource("widgets", "example.com", True)
    assert "doesn't have a resource type 'widgets.example.com'" in capsys.readouterr().err


def test_a_name_twice_is_an_error() -> None:
    with pytest.raises(CliError):
        can_i_target("pods/web", "other", "")
