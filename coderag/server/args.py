"""``coderag serve``: its options, their checks, and the command itself.

Binding anything but a loopback address needs a token (``--token-file PATH`` or
``CODERAG_TOKEN``; never on the command line, where ``ps`` shows it). The port is bound first,
so that a port in use fails before the model loads; the service, the app and uvicorn are
imported then.

Standard library only at module level: ``coderag --help`` imports this.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import stat
import sys

from ..errors import CoderagError, UsageError
from .runtime import TOKEN_ENV, is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7878
MODEL_OPTIONS = ("model", "device", "dtype")

EPILOG = """examples:
  coderag serve                                  serve the repository around the current folder
  coderag serve ~/src/app ~/src/lib --port 7878  several repositories, one model
  (umask 077; openssl rand -hex 16 > ~/.coderag-token)
  coderag serve --host 0.0.0.0 --token-file ~/.coderag-token --allow-host myhost.lan
  curl -s localhost:7878/search -H 'Content-Type: application/json' \\
       -d '{"query": "retry failed uploads", "k": 5}'

While it runs, its URL and a per-start secret are in a private file in the user's runtime
folder ($XDG_RUNTIME_DIR/coderag/server-*.json, printed at start); `coderag search` and the
git hooks find it there (never in the repository) and ask the server instead of loading the
model. POST /refresh needs `-H "Authorization: Bearer <secret or token>"`.
"""


def add_arguments(p) -> None:
    p.description = (
        "Serve one or more repositories over a local HTTP JSON API: the model is loaded once "
        "and kept warm, and a watcher per repository keeps each index fresh."
    )
    p.epilog = EPILOG
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="repositories to serve (default: the git root around the current folder)",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to bind (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument(
        "--token-file",
        metavar="PATH",
        help=f"require the bearer token in this file (yours, not readable by others) on every "
        f"request (or env {TOKEN_ENV}); mandatory when binding a non-loopback address",
    )
    # not an option any more (ps shows it to every user); kept so that argparse does not read
    # `--token X` as an abbreviation of --token-file, and so that it gets a clear error
    p.add_argument("--token", nargs="?", const="", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser requests from this origin (repeatable; CORS is off by default; "
        "any other Origin is refused)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept requests whose Host header names NAME (repeatable; default: "
        "localhost, 127.0.0.0/8 and [::1] only, against DNS rebinding)",
    )
    p.add_argument("--no-watch", action="store_true", help="do not watch the files for changes")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=0,
        metavar="SECONDS",
        help="stop after this long without a request (default 0: never); the background "
        "server `coderag search` starts uses 900",
    )
    p.add_argument(
        "--max-memory",
        type=int,
        default=0,
        metavar="MB",
        help="stop (after the requests in flight) once the process uses more than this much "
        "memory (resident; default 0: no bound)",
    )
    p.add_argument(
        "--workers", type=int, default=4, help="threads that run searches and refreshes (default 4)"
    )
    p.add_argument(
        "--queue",
        type=int,
        default=64,
        help="requests that may wait for a worker before the server answers 503 (default 64)",
    )
    add_threads_argument(p)
    p.add_argument("--model", help="embedding model (default: the one each index was built with)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--dtype", help="float32, bfloat16, float16 (default: by device)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request and batch")


def run(args) -> int:
    token = user_token(args)
    check_bind(args.host, token)
    hosts, any_ip = host_policy(args.host, args.allow_host, token)
    _check_numbers(args)
    limit_model_threads(args.threads)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="coderag serve: %(message)s",
        stream=sys.stderr,
    )
    sock = bind(args.host, args.port)  # first: a port in use fails before the model loads
    try:
        from .app import serve
        from .service import Service

        service = Service.open(
            args.paths or [None],
            overrides=model_overrides(args),
            token=token,
            workers=args.workers,
            queue=args.queue,
            watch=not args.no_watch,
            verbose=args.verbose,
        )
        return serve(
            service,
            sock,
            args.host,
            cors_origins=args.cors_origin,
            hosts=hosts,
            any_ip=any_ip,
            idle_timeout=args.idle_timeout,
            max_memory_mb=args.max_memory,
        )
    finally:
        sock.close()


def user_token(args) -> str | None:
    """The user's token: from ``--token-file``, else ``CODERAG_TOKEN``; None without one.
    ``--token`` on the command line is refused."""
    if args.token is not None:
        raise UsageError(
            "--token is not accepted (other users see it in `ps`); use --token-file PATH "
            f"(a file only you can read) or set {TOKEN_ENV}"
        )
    token = read_token_file(args.token_file) if args.token_file else None
    return token or os.environ.get(TOKEN_ENV) or None


def _check_numbers(args) -> None:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if args.workers < 1 or args.queue < 0:
        raise UsageError("--workers must be at least 1 and --queue at least 0")
    if args.idle_timeout < 0 or args.max_memory < 0:
        raise UsageError("--idle-timeout and --max-memory must not be negative")


def model_overrides(args) -> dict:
    """The model options given on the command line (``--model``, ``--device``, ``--dtype``)."""
    return {k: v for k in MODEL_OPTIONS if (v := getattr(args, k, None))}


def add_threads_argument(p) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for the model (default 1: a one-query forward pass gains little from "
        "more, and on a busy machine extra threads make it many times slower)",
    )


def limit_model_threads(n: int) -> None:
    """Cap the math libraries' thread pools before torch is imported (it reads these once).

    Measured on the 2-core machine under load: a query embedding took 270-1350 ms with two
    OpenMP threads and 30 ms with one. A variable the user set wins."""
    if n < 1:
        raise UsageError("--threads must be at least 1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))


def check_bind(host: str, token: str | None) -> None:
    """Refuse to expose the index beyond this machine without a token."""
    if not token and not is_loopback(host):
        raise UsageError(
            f"binding {host} makes the index reachable from other machines; "
            f"pass --token-file PATH (or set {TOKEN_ENV}) to require a bearer token"
        )


def read_token_file(path: str) -> str:
    """The token in ``path``: a regular file of this user that group and others can neither
    read nor write (chmod 600), one line."""
    try:
        fd = os.open(os.path.expanduser(path), os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise UsageError(f"cannot read --token-file {path} ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"--token-file {path} is not a regular file")
        if st.st_uid != os.getuid():
            raise UsageError(f"--token-file {path} belongs to another user")
        if st.st_mode & 0o077:
            raise UsageError(
                f"--token-file {path} is open to group or others (mode "
                f"{stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
            )
        data = os.read(fd, 4097)
    finally:
        os.close(fd)
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or len(data) > 4096 or "\n" in token or "\r" in token:
        raise UsageError(f"--token-file {path} must hold one line: the token")
    return token


def host_policy(bind_host: str, extra=(), token: str | None = None) -> tuple[set[str], bool]:
    """The Host header names a request may carry besides the loopback ones, and whether any
    IP literal may (binding a wildcard address with a token: other machines reach it by
    address, and an IP literal cannot be rebound the way a DNS name can)."""
    names = set()
    for name in extra:
        n = name.strip().lower()
        if not n or any(c in n for c in "/ \t@?#") or (":" in n and not n.startswith("[")):
            raise UsageError(f"--allow-host takes a host name or address, got {name!r}")
        names.add(n)
    any_ip = False
    if token and not is_loopback(bind_host):
        h = bind_host.strip("[]").lower()
        if h in ("", "0.0.0.0", "::"):
            any_ip = True
        else:
            names.add(f"[{h}]" if ":" in h else h)
    return names, any_ip


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port), inheritable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
    # without it every keep-alive answer waits ~40 ms (Nagle against delayed ACKs)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise CoderagError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
