"""What the etcd client remembers of its own writes (apiserver/etcd.py, OwnRevisions): only
revisions its transactions made, with exactly the keys they changed."""

from __future__ import annotations

from aetcd.rpc import rpc_pb2

from apiserver.etcd import OwnRevisions, _written_keys, delete_op, get_op, put_op


def deleted(count: int) -> rpc_pb2.ResponseOp:
    return rpc_pb2.ResponseOp(response_delete_range=rpc_pb2.DeleteRangeResponse(deleted=count))


PUT = rpc_pb2.ResponseOp(response_put=rpc_pb2.PutResponse())
RANGE = rpc_pb2.ResponseOp(response_range=rpc_pb2.RangeResponse())


def test_the_keys_a_branch_changed() -> None:
    assert _written_keys([put_op(b"/a/1", b"v"), put_op(b"/b/2", b"v")], [PUT, PUT]) == (
        b"/a/1", b"/b/2")
    assert _written_keys([delete_op(b"/a/1"), get_op(b"/c/3")], [deleted(1), RANGE]) == (
        b"/a/1",)


def test_a_branch_that_changed_nothing_made_no_revision() -> None:
    """etcd then answers with the last revision, which someone else's write may have made."""
    assert _written_keys([get_op(b"/a/1")], [RANGE]) is None
    assert _written_keys([delete_op(b"/a/1")], [deleted(0)]) is None
    assert _written_keys([], []) is None


def test_a_range_delete_or_a_strange_answer_proves_nothing() -> None:
    ranged = rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(
        key=b"/a/", range_end=b"/a0"))
    assert _written_keys([ranged], [deleted(3)]) is None
    assert _written_keys([put_op(b"/a/1", b"v")], []) is None


def test_a_revision_is_elsewhere_only_when_recorded_and_outside_the_prefix() -> None:
    own = OwnRevisions(capacity=2)
    own.record(10, (b"/registry/secrets/default/s",))
    own.record(11, (b"/registry/configmaps/default/c", b"/registry/pods/default/p"))
    assert own.elsewhere(10, b"/registry/configmaps/")
    assert not own.elsewhere(11, b"/registry/configmaps/")
    assert own.elsewhere(11, b"/registry/services/")
    assert not own.elsewhere(12, b"/registry/configmaps/"), "not ours: nothing is known"
    own.record(12, (b"/registry/leases/default/l",))
    assert not own.elsewhere(10, b"/registry/configmaps/"), "forgotten past its capacity"
    assert own.elsewhere(12, b"/registry/configmaps/")
