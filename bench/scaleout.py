"""API server scale-out: creates/s and gets/s at concurrency 64 through one API server and
through two (separate processes over the same etcd, one client spreading its calls round
robin over both), in the same run.

The two sides take turns in chunks (``--rounds``), as bench/api.py's sides do, so load from
elsewhere on the machine falls on both alike. Each side has an etcd of its own (the two API
servers of side two share theirs), so both create the same names. Prints one JSON object:
``one_*`` and ``two_*`` rates, ``ratio_two_to_one_*`` (1.0: no gain; 2.0: linear), CPU ms
per operation of the client, the API server(s) and etcd on each side
(``cpu_ms_per_op_{side}_{figure}_{process}``) and ``ratio_two_to_one_cpu_efficiency_*`` (the
quotient of the sums: below 1.0 when two servers spend more CPU per operation than one), and
the machine's cores and load average.

With two cores, the client, the API servers and etcd share them: two servers can gain only
what one server left of the cores idle, and the one client process may be the limit first.

Usage: python -m bench.scaleout [--ops N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.api import NAMESPACE, Side, chunks, grpc_operations, ratio
from bench.harness import apiserver_process, child_serving, temporary_etcd
from bench.proxy import cpu_seconds
from kubelite import daemon
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

CONCURRENCY = 64
FIGURES = ("creates_per_s", "gets_per_s")
SIDES = {"one": 1, "two": 2}
"""Each side's name and its count of API servers."""


@dataclass
class ServersSide(Side):
    """A side served by several API server processes: their CPU adds up as the server's."""

    other_server_pids: tuple[int, ...] = ()

    def cpu_now(self) -> dict[str, float]:
        now = super().cpu_now()
        now["server"] += sum(cpu_seconds(pid) for pid in self.other_server_pids)
        return now


def etcd_pid(endpoint: str) -> int | None:
    """The pid of the etcd serving ``endpoint`` (host:port) on this machine, if one does."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if argv and Path(argv[0].decode(errors="replace")).name == "etcd" and any(
                endpoint.encode() in arg for arg in argv):
            return int(entry.name)
    return None


async def take_turns(sides: Sequence[Side], ops: int, rounds: int) -> None:
    """Every figure at CONCURRENCY on each side, in ``rounds`` chunks that take turns (A B,
    B A, A B, ...)."""
    for figure in FIGURES:
        key = f"{figure}_c{CONCURRENCY}"
        for r, count in enumerate(chunks(ops, rounds)):
            for side in sides if r % 2 == 0 else list(reversed(sides)):
                await side.run(key, side.operations(figure, CONCURRENCY, r), CONCURRENCY,
                               count)


async def measure(etcd_endpoint: str, ops: int, rounds: int) -> dict[str, float]:
    """Creates/s and gets/s at concurrency 64 through one API server over the etcd at
    ``etcd_endpoint`` (plaintext) and through two over an etcd of their own, taking turns;
    their ratios (two to one) and the CPU ms per operation of each side's client, server(s)
    and etcd."""
    with ExitStack() as stack:
        # Each side its own etcd: one side's writes never move the other's revision, which
        # would keep its consistent reads from its caches (apiserver/consistent_read.py).
        endpoints = {"one": etcd_endpoint,
                     "two": stack.enter_context(temporary_etcd()).endpoint}
        addresses = {
            name: [stack.enter_context(apiserver_process(endpoints[name], "--insecure"))
                   for _ in range(count)]
            for name, count in SIDES.items()}
        clients = {name: ApiClient(",".join(servers)) for name, servers in addresses.items()}
        try:
            sides: list[Side] = []
            for name, servers in addresses.items():
                client = clients[name]
                await client.create(v1.Namespace(metadata=v1.ObjectMeta(name=NAMESPACE)))
                pids = [child_serving(address) for address in servers]
                sides.append(ServersSide(name, grpc_operations(client), FIGURES, pids[0],
                                         etcd_pid(endpoints[name]),
                                         other_server_pids=tuple(pids[1:])))
            await take_turns(sides, ops, rounds)
        finally:
            for client in clients.values():
                await client.close()
    result: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}
    for side in sides:
        result.update({k: round(v, 1) for k, v in side.rates().items()})
        for key, spent in side.cpu_ms_per_op().items():
            cpu[f"{side.name}_{key}"] = spent
            for process, ms in spent.items():
                result[f"cpu_ms_per_op_{side.name}_{key}_{process}"] = ms
    for figure in FIGURES:
        name = figure.removesuffix("_per_s")
        key = f"{figure}_c{CONCURRENCY}"
        result[f"ratio_two_to_one_{name}_c{CONCURRENCY}"] = ratio(result[f"two_{key}"],
                                                                  result[f"one_{key}"])
        result[f"ratio_two_to_one_cpu_efficiency_{name}_c{CONCURRENCY}"] = ratio(
            sum(cpu[f"one_{name}_c{CONCURRENCY}"].values()),
            sum(cpu[f"two_{name}_c{CONCURRENCY}"].values()))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", type=int, default=8000, help="operations per measurement")
    p.add_argument("--rounds", type=int, default=4,
                   help="chunks each measurement is cut into, the sides taking turns")
    a = p.parse_args()
    if a.ops <= 0:
        p.error(f"--ops: must be greater than 0, got {a.ops}")
    if not 0 < a.rounds <= a.ops:
        p.error(f"--rounds: must be between 1 and --ops ({a.ops}), got {a.rounds}")
    result: dict[str, object] = {"benchmark": "scaleout", "ops_per_measurement": a.ops,
                                 "rounds": a.rounds, "concurrency": CONCURRENCY,
                                 "cores": os.cpu_count() or 0,
                                 "load_average_before": [round(v, 2) for v in os.getloadavg()]}

    async def run() -> None:
        with temporary_etcd() as etcd:
            result.update(await measure(etcd.endpoint, a.ops, a.rounds))

    daemon.run(run())
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
