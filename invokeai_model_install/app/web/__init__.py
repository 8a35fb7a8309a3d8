"""``invokeai-model-install web``: the model manager in the browser (docs/web.md).

This package's ``__init__`` stays light (argparse only): the CLI imports it to
register the subcommand, and Starlette/uvicorn are imported only when the
command runs, so the form and the other commands start no slower.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090


def register_subcommand(subparsers: Any) -> None:
    """Add ``web [--host H] [--port N] [--no-browser]`` (handler: :func:`cmd_web`)."""
    p = subparsers.add_parser(
        "web",
        help="manage models in the browser (a local web page)",
        description="Start the model manager on a local web page: list, edit, delete, convert and add models, "
        "with live progress. Prints the address to open (it carries a session token) and opens the browser. "
        "Ctrl-C stops it; a running install is cancelled with its partial downloads kept.",
    )
    p.add_argument("--host", default=DEFAULT_HOST, metavar="ADDR",
                   help="address to listen on (default 127.0.0.1: this machine only; anything else is reachable from the network)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="N", help="port to listen on (default 9090; 0 picks a free one)")
    p.add_argument("--no-browser", dest="no_browser", action="store_true", help="print the address but do not open a browser")
    p.set_defaults(handler=cmd_web)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 0 to 65535")
    return value


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def cmd_web(args: argparse.Namespace, layout: Any, catalog_path: Path | None) -> int:
    """Run the web manager until Ctrl-C; returns the exit status."""
    from invokeai_model_install.errors import RootError

    if not layout.exists():
        raise RootError(f"no InvokeAI root at {layout.root}",
                        f"run `invokeai-configure --root {layout.root}` first, or give --root DIR")
    return serve(layout, catalog_path=catalog_path, host=args.host, port=args.port, open_browser=not args.no_browser)


def _bind(host: str, port: int) -> socket.socket:
    from invokeai_model_install.errors import UsageError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}",
                         "choose another port with --port N (0 picks a free one)") from None
    sock.listen(128)
    return sock


def serve(layout: Any, *, catalog_path: Path | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          open_browser: bool = True, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Bind, print ``Model manager: URL`` (one line, flushed), serve until Ctrl-C/SIGTERM, then stop cleanly."""
    import uvicorn

    from invokeai_model_install.app.web.server import WebState, create_app

    out = out or sys.stdout
    err = err or sys.stderr
    if not _is_loopback(host):
        print(f"warning: listening on {host}: other machines can reach the model manager; "
              "anyone who has its address (with the token) can install and delete models", file=err, flush=True)
    sock = _bind(host, port)
    actual = sock.getsockname()[1]
    import secrets  # here, not at the top: the CLI imports this module for its parser on every start

    token = secrets.token_urlsafe(32)
    state = WebState(layout, token=token, host=host, port=actual, catalog_path=catalog_path)
    app = create_app(state)
    config = uvicorn.Config(app, log_level=os.environ.get("INVOKEAI_WEB_LOG_LEVEL", "warning"), access_log=False,
                            lifespan="off", timeout_graceful_shutdown=3)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.stopping.set()  # event streams end now, so the server does not wait for them
            super().handle_exit(sig, frame)
            # uvicorn re-raises caught signals after its shutdown; a re-raised SIGTERM would kill us before
            # the cleanup below (cancel the job, keep partials), so we stop the normal way instead
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    server = _Server(config)
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{actual}/?token={token}"
    import signal

    def _terminate(sig: int, frame: Any) -> None:  # SIGTERM before uvicorn takes over the signals: stop like Ctrl-C
        raise KeyboardInterrupt

    previous_term = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    try:  # a Ctrl-C from the moment the line is out stops the server the normal way
        print(f"Model manager: {url}", file=out, flush=True)
        if open_browser:
            import webbrowser

            threading.Timer(0.3, lambda: webbrowser.open(url)).start()
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it caught, after its clean shutdown
        pass
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        was_running = state.busy()
        state.shutdown()
        sock.close()
    if was_running:
        print(f"Stopped. The running install was cancelled; partial downloads are kept in {layout.partial_dir}.",
              file=err, flush=True)
    else:
        print("Stopped.", file=err, flush=True)
    return 0
