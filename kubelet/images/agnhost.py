"""kubelite's test image, after Kubernetes' agnhost: ``python -m kubelet.images.agnhost CMD``.

Subcommands (standard library only; every one exits 0 promptly on SIGTERM or SIGINT):

``serve-hostname [--port 9376] [--tcp] [--udp] [--host 0.0.0.0]``
    Answers the pod's name (env HOSTNAME, which the kubelet sets to it; else the host name):
    over HTTP on any path, or with ``--tcp`` on each TCP connection, which it then closes;
    ``--udp`` also answers each UDP datagram on the same port.
``netexec [--http-port 8080] [--host 0.0.0.0]``
    HTTP: ``/`` (the time), ``/hostname``, ``/echo?msg=X``, ``/healthz`` and ``/readyz`` (200,
    or 500 after ``/fail-healthz`` / ``/fail-readyz`` until ``/heal`` / ``/heal-readyz``),
    ``/exit?code=N`` (answers, then exits with N).
``exit --code N [--after SECONDS]``
    Exits with N, after SECONDS if given.
``pause``
    Waits for a signal, then exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs, urlsplit

_stop = threading.Event()


def _default_host() -> str:
    """The pod's IP when the kubelet says it: on the process runtime several nodes share one
    host, so a pod binds its node's address rather than 0.0.0.0 (a pod network namespace
    would make 0.0.0.0 private; without one it would collide across local nodes)."""
    return os.environ.get("KUBELITE_POD_IP", "0.0.0.0")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop.set()


def _install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def hostname() -> str:
    return os.environ.get("HOSTNAME") or socket.gethostname()


def _say(message: str) -> None:
    print(message, flush=True)


def _serve_in_background(server: socketserver.BaseServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


def _wait_for_signal() -> int:
    _stop.wait()
    _say("received a signal, exiting")
    return 0


class _ReusableUDPServer(socketserver.ThreadingUDPServer):
    allow_reuse_address = True
    daemon_threads = True


class _ReusableTCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _text_handler(routes: Callable[[BaseHTTPRequestHandler], tuple[int, str]]
                  ) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            code, body = routes(self)
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:
            _say(f"{self.address_string()} {format % args}")

    return Handler


def serve_hostname(args: argparse.Namespace) -> int:
    name = hostname()
    servers: list[socketserver.BaseServer] = []
    if args.tcp:
        class TCPHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(name.encode())

        servers.append(_ReusableTCPServer((args.host, args.port), TCPHandler))
    else:
        class HTTPServer(ThreadingHTTPServer):
            daemon_threads = True

        servers.append(HTTPServer((args.host, args.port), _text_handler(lambda _: (200, name))))
    if args.udp:
        class UDPHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                _, sock = self.request
                sock.sendto(name.encode(), self.client_address)

        servers.append(_ReusableUDPServer((args.host, args.port), UDPHandler))
    for server in servers:
        _serve_in_background(server)
    protocols = "TCP" if args.tcp else "HTTP"
    _say(f"serve-hostname: serving {name!r} on {args.host}:{args.port} over {protocols}"
         + (" and UDP" if args.udp else ""))
    return _wait_for_signal()


class _Health:
    def __init__(self) -> None:
        self.healthy = True
        self.ready = True


def netexec(args: argparse.Namespace) -> int:
    health = _Health()

    def routes(request: BaseHTTPRequestHandler) -> tuple[int, str]:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        path = url.path
        if path == "/":
            return 200, f"NOW: {datetime.datetime.now(datetime.UTC).isoformat()}"
        if path == "/hostname":
            return 200, hostname()
        if path == "/echo":
            return 200, query.get("msg", [""])[0]
        if path == "/healthz":
            return (200, "ok") if health.healthy else (500, "unhealthy")
        if path == "/readyz":
            return (200, "ok") if health.ready else (500, "not ready")
        if path == "/fail-healthz":
            health.healthy = False
            return 200, "healthz will fail"
        if path == "/heal":
            health.healthy = True
            return 200, "healthz will succeed"
        if path == "/fail-readyz":
            health.ready = False
            return 200, "readyz will fail"
        if path == "/heal-readyz":
            health.ready = True
            return 200, "readyz will succeed"
        if path == "/exit":
            try:
                code = int(query.get("code", ["0"])[0])
            except ValueError:
                return 400, "code must be an integer"
            # Answer first, then exit from another thread once the reply is out.
            threading.Timer(0.05, _exit_now, args=(code,)).start()
            return 200, f"exiting with {code}"
        return 404, f"unknown path {path}"

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server((args.host, args.http_port), _text_handler(routes))
    _serve_in_background(server)
    _say(f"netexec: serving HTTP on {args.host}:{args.http_port}")
    return _wait_for_signal()


def _exit_now(code: int) -> None:
    _say(f"exiting with code {code}")
    sys.stdout.flush()
    os._exit(code)


def exit_(args: argparse.Namespace) -> int:
    if args.after > 0 and _stop.wait(args.after):
        return 0  # signalled before it was time
    return int(args.code)


def pause(args: argparse.Namespace) -> int:
    _say("paused")
    return _wait_for_signal()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agnhost", description="kubelite's test image")
    sub = p.add_subparsers(dest="command", required=True)
    sh = sub.add_parser("serve-hostname", help="answer the pod name")
    sh.add_argument("--port", type=int, default=9376)
    sh.add_argument("--tcp", action="store_true", help="raw TCP instead of HTTP")
    sh.add_argument("--udp", action="store_true", help="also answer UDP datagrams")
    sh.add_argument("--host", default=_default_host())
    sh.set_defaults(run=serve_hostname)
    ne = sub.add_parser("netexec", help="HTTP endpoints for tests")
    ne.add_argument("--http-port", type=int, default=8080)
    ne.add_argument("--host", default=_default_host())
    ne.set_defaults(run=netexec)
    ex = sub.add_parser("exit", help="exit with a code")
    ex.add_argument("--code", type=int, default=0)
    ex.add_argument("--after", type=float, default=0.0, help="seconds to wait first")
    ex.set_defaults(run=exit_)
    pa = sub.add_parser("pause", help="wait for a signal")
    pa.set_defaults(run=pause)
    return p


def main(argv: list[str] | None = None) -> int:
    _install_signal_handlers()
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
