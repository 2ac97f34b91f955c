"""Flag values as kubectl reads them, and the parsers of klctl's commands."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from kubelite import durations
from kubelite.cli.klctl.errors import CliError, UsageError
from kubelite.cli.klctl.output import err


def parse_duration(text: str, flag: str) -> float:
    """A Go duration (``5s``, ``1m30s``, ``250ms``; a bare number is seconds) given to ``flag``."""
    try:
        return durations.parse_duration(text)
    except ValueError as e:
        raise CliError(f'invalid argument "{text}" for "{flag}" flag: {e}') from None


def parse_bool(value: str | bool, flag: str) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("true", "1", "t", "yes"):
        return True
    if text in ("false", "0", "f", "no"):
        return False
    raise CliError(f'invalid argument "{value}" for "{flag}" flag: strconv.ParseBool: parsing'
                   f' "{value}": invalid syntax')


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        err(f"error: {message}")
        err(f"See '{self.prog} --help' for usage.")
        raise UsageError(message)


class Commands:
    """Sub-command parsers, each parsed on its own with options and arguments intermixed.

    argparse's subparsers cannot parse ``get pods -n ns web`` (a positional after an option);
    parse_intermixed_args can, but not through subparsers, so each command is its own parser
    and the global flags are accepted before or after the command.
    """

    def __init__(self) -> None:
        self.parsers: dict[str, Parser] = {}
        self.helps: dict[str, str] = {}

    def add_parser(self, name: str, help: str) -> Parser:
        p = Parser(prog=f"klctl {name}", description=help)
        add_globals(p, default=None)
        self.parsers[name] = p
        self.helps[name] = help
        return p


def add_globals(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("-s", "--server", default=default,
                   help="the address of the API server (host:port); with a kubeconfig, it"
                        " replaces only the address")
    p.add_argument("--kubeconfig", default=default,
                   help="the kubeconfig file (default: $KUBELITE_CONFIG, ~/.kubelite/config)")
    p.add_argument("--context", default=default,
                   help="the kubeconfig context to use (default: its current-context)")
    p.add_argument("--request-timeout", default=default,
                   help="how long to wait for a single request (e.g. 5s, 1m; 0: no limit)")


def add_namespace(p: argparse.ArgumentParser, all_namespaces: bool = True) -> None:
    p.add_argument("-n", "--namespace", help="the namespace of the objects")
    if all_namespaces:
        p.add_argument("-A", "--all-namespaces", action="store_true",
                       help="across all namespaces")


def add_files(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("-f", "--filename", action="append", default=[], required=required,
                   help="a file, a directory or - for standard input (repeatable)")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="process the directory given with -f recursively")
