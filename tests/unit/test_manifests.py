"""kubelite.api.manifests: reading YAML/JSON manifest files as kubectl does."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kubelite.api.convert import ConversionError, from_dict
from kubelite.api.errors import KubeliteError
from kubelite.api.manifests import STDIN_SOURCE, ManifestError, load_documents, load_paths

MANIFESTS = Path(__file__).parent / "manifests"

NS_A = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n"
NS_B = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n"


def names(docs: list[dict[str, object]]) -> list[object]:
    return [d["metadata"]["name"] for d in docs]  # type: ignore[index]


# ---------------------------------------------------------------------------- documents


def test_multi_document_yaml_skips_empty_documents() -> None:
    text = f"---\n# just a comment\n---\n{NS_A}---\n---\n{NS_B}...\n"
    assert names(load_documents(text, "x.yaml")) == ["a", "b"]


def test_empty_text_has_no_documents() -> None:
    assert load_documents("", "x.yaml") == []
    assert load_documents("# nothing\n", "x.yaml") == []


def test_list_kinds_are_expanded_in_order() -> None:
    text = """
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: a}}
- apiVersion: v1
  kind: List
  items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: b}}
- {apiVersion: v1, kind: Namespace, metadata: {name: c}}
"""
    assert names(load_documents(text, "list.yaml")) == ["a", "b", "c"]


def test_typed_lists_from_kubectl_get_are_expanded() -> None:
    text = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "NamespaceList",
            "metadata": {"resourceVersion": "12"},
            "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}],
        }
    )
    assert names(load_documents(text, "list.json")) == ["a"]


def test_list_item_that_is_not_a_mapping() -> None:
    with pytest.raises(ManifestError, match=r"items\[0\] of a List is a string"):
        load_documents("apiVersion: v1\nkind: List\nitems: [oops]\n", "l.yaml")


def test_json_object_and_json_stream() -> None:
    one = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    two = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}})
    assert names(load_documents(one, "a.json")) == ["a"]
    assert names(load_documents(f"{one}\n{two}\n", "ab.json")) == ["a", "b"]


def test_bad_json_reports_json_position() -> None:
    with pytest.raises(ManifestError) as info:
        load_documents('{\n  "apiVersion": "v1",\n  "kind" "Namespace"\n}\n', "ns.json")
    assert info.value.line == 3
    assert str(info.value).startswith("error parsing ns.json: line 3, column 10: ")


def test_flow_style_yaml_starting_with_a_brace_still_loads() -> None:
    docs = load_documents("{apiVersion: v1, kind: Namespace, metadata: {name: a}}\n", "f.yaml")
    assert names(docs) == ["a"]


def test_not_yaml_reports_line_and_column() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: name: x\n"
    with pytest.raises(ManifestError) as info:
        load_documents(text, "deploy.yaml")
    error = info.value
    assert isinstance(error, KubeliteError)
    assert (error.source, error.line, error.column) == ("deploy.yaml", 3, 15)
    assert str(error).startswith("error parsing deploy.yaml: line 3, column 15: mapping values")


def test_tabs_are_not_yaml_indentation() -> None:
    with pytest.raises(ManifestError, match=r"^error parsing t.yaml: line 2"):
        load_documents("metadata:\n\tname: x\n", "t.yaml")


def test_document_that_is_a_list_of_strings() -> None:
    text = f"{NS_A}---\n- one\n- two\n"
    with pytest.raises(ManifestError) as info:
        load_documents(text, "list.yaml")
    assert info.value.line == 6
    assert "document 2 is a list, not a mapping" in str(info.value)


def test_document_that_is_a_scalar() -> None:
    with pytest.raises(ManifestError, match="document 1 is a string"):
        load_documents("hello world\n", "hello.yaml")


def test_duplicate_keys_are_an_error() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n"
    with pytest.raises(ManifestError) as info:
        load_documents(text, "dup.yaml")
    assert info.value.line == 5
    assert "'name' already defined at line 4, column 3" in str(info.value)


def test_merge_keys_may_be_overridden() -> None:
    text = (
        "base: &base {a: '1', b: '2'}\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n"
        "data:\n  <<: *base\n  b: '3'\n"
    )
    (doc,) = load_documents(text, "merge.yaml")
    assert doc["data"] == {"a": "1", "b": "3"}


# ---------------------------------------------------------------------------- YAML 1.1 scalars


def test_scalar_resolution() -> None:
    text = """
timestamp: 2024-05-01T10:00:00Z
date: 2024-05-01
sexagesimal: 1:30
equals: =
octal: 0644
hex: 0x1F
float: 0.5
yes_bool: yes
on_bool: on
quoted: "yes"
nothing: ~
"""
    (doc,) = load_documents(text, "s.yaml")
    assert doc == {
        "timestamp": "2024-05-01T10:00:00Z",
        "date": "2024-05-01",
        "sexagesimal": "1:30",
        "equals": "=",
        "octal": 420,
        "hex": 31,
        "float": 0.5,
        "yes_bool": True,
        "on_bool": True,
        "quoted": "yes",
        "nothing": None,
    }


def test_unquoted_yes_for_a_string_field_is_rejected_after_loading() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata:\n  enabled: yes\n"
    (doc,) = load_documents(text, "cm.yaml")
    with pytest.raises(ConversionError) as info:
        from_dict(doc)
    assert [str(e) for e in info.value.errors] == [
        "data[enabled]: Invalid type: true: expected string"
    ]


# ---------------------------------------------------------------------------- paths


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    def ns(name: str) -> str:
        return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"

    (tmp_path / "b.yml").write_text(ns("b"))
    (tmp_path / "a.yaml").write_text(ns("a1") + "---\n" + ns("a2"))
    (tmp_path / "c.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}})
    )
    (tmp_path / "notes.txt").write_text("not a manifest: [")
    sub = tmp_path / "ab"
    sub.mkdir()
    (sub / "z.yaml").write_text(ns("sub-z"))
    return tmp_path


def test_directory_reads_manifest_files_sorted_by_name(tree: Path) -> None:
    loaded = load_paths([str(tree)])
    assert [d["metadata"]["name"] for _, d in loaded] == ["a1", "a2", "b", "c"]
    assert [Path(s).name for s, _ in loaded] == ["a.yaml", "a.yaml", "b.yml", "c.json"]


def test_recursive_walks_subdirectories_in_name_order(tree: Path) -> None:
    loaded = load_paths([str(tree)], recursive=True)
    assert [d["metadata"]["name"] for _, d in loaded] == ["a1", "a2", "sub-z", "b", "c"]


def test_explicit_file_is_read_whatever_its_extension(tmp_path: Path) -> None:
    path = tmp_path / "manifest.txt"
    path.write_text(NS_A)
    assert load_paths([str(path)]) == [
        (
            str(path),
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "a"},
            },
        )
    ]


def test_paths_keep_command_line_order(tree: Path) -> None:
    loaded = load_paths([str(tree / "c.json"), str(tree / "b.yml")])
    assert [d["metadata"]["name"] for _, d in loaded] == ["c", "b"]


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(NS_A + "---\n" + NS_B))
    loaded = load_paths(["-"])
    assert [(s, d["metadata"]["name"]) for s, d in loaded] == [
        (STDIN_SOURCE, "a"),
        (STDIN_SOURCE, "b"),
    ]


def test_stdin_errors_name_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a: b: c\n"))
    with pytest.raises(ManifestError, match="^error parsing STDIN: line 1"):
        load_paths(["-"])


def test_missing_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ManifestError) as info:
        load_paths([missing])
    assert str(info.value) == f"error reading {missing}: the path does not exist"


def test_parse_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "deploy.yaml"
    bad.write_text("kind: Deployment\nspec:\n  replicas: [1\n")
    with pytest.raises(ManifestError) as info:
        load_paths([str(bad)])
    assert info.value.source == str(bad)
    assert str(info.value).startswith(f"error parsing {bad}: line ")


def test_utf8_bom_is_accepted_and_other_encodings_are_not(tmp_path: Path) -> None:
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + NS_A.encode())
    assert [d["metadata"]["name"] for _, d in load_paths([str(bom)])] == ["a"]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"data:\n  k: caf\xe9\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_paths([str(latin)])


def test_example_manifests_directory_loads() -> None:
    loaded = load_paths([str(MANIFESTS)])
    assert len(loaded) == len(list(MANIFESTS.glob("*.yaml")))
    for _, doc in loaded:
        from_dict(doc)
