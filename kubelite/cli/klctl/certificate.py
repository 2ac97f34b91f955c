"""``certificate approve|deny NAME...``: decide CertificateSigningRequests, as kubectl does.

The decision is a condition in the request's status (Approved or Denied, reasons
KubectlApprove and KubectlDeny). A request already carrying the same decision is left as it
is (``--force`` writes it again); a request cannot be both approved and denied.
"""

from __future__ import annotations

import argparse

from kubelite.api import certificates as csrs
from kubelite.api.errors import Conflict
from kubelite.api.registry import by_message
from kubelite.cli.klctl.batch import for_each_object
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import Commands
from kubelite.cli.printers.formats import resource_name
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

DECISIONS = {
    "approve": (csrs.APPROVED, "KubectlApprove", "This CSR was approved by klctl certificate"
                                                 " approve.", "approved"),
    "deny": (csrs.DENIED, "KubectlDeny", "This CSR was denied by klctl certificate deny.",
             "denied"),
}
"""Per verb: the condition, its reason and message, and the word of the output line."""
UPDATE_ATTEMPTS = 5
"""Writes of one decision before a request that keeps changing is an error."""


async def cmd_certificate(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if args.action not in DECISIONS:
        raise CliError(f'unknown command "{args.action}" for "klctl certificate"; supported:'
                       " approve, deny")
    if not args.names:
        raise CliError(f"one or more CSRs must be specified as <name> (klctl certificate"
                       f" {args.action} NAME...)")
    kind, reason, message, word = DECISIONS[args.action]
    opposite = csrs.DENIED if kind == csrs.APPROVED else csrs.APPROVED
    rtype = by_message(v1.CertificateSigningRequest)

    async def decide(name: str) -> str:
        for _ in range(UPDATE_ATTEMPTS):
            csr = await client.get(v1.CertificateSigningRequest, name)
            if csrs.condition(csr, opposite) is not None:
                raise CliError(f'certificatesigningrequest "{name}" is already {opposite}:'
                               " Approved and Denied conditions are mutually exclusive")
            decided = csrs.condition(csr, kind) is not None
            if not decided:
                csrs.add_condition(csr, kind, reason, message)
            if not decided or args.force:
                # The approval subresource's write, through the status path.
                try:
                    await client.update_status(csr)
                except Conflict:
                    continue
            return f"{resource_name(rtype, name)} {word}"
        raise CliError(f"could not update {resource_name(rtype, name)}: it kept changing")

    return await for_each_object(args.names, ctx, decide)


def register(commands: Commands) -> None:
    p = commands.add_parser("certificate", help="approve or deny certificate signing requests:"
                            " certificate approve|deny NAME...")
    p.add_argument("action", metavar="approve|deny")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--force", action="store_true",
                   help="update the request even if it already carries the decision")
    p.set_defaults(handler=cmd_certificate)
