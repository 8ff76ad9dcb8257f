"""The `mcp-asgi` command: run a server from a file or module, or open it in the MCP Inspector.

mcp-asgi run server.py                       # stdio, for desktop clients
mcp-asgi run server.py:mcp --transport http  # Streamable HTTP at http://127.0.0.1:8000/mcp
mcp-asgi run pkg.module:make_server --transport sse -- --their-own-flag
mcp-asgi run app.py:app --transport http     # a FastAPI/Starlette app (MCP mounted in it), as it is
mcp-asgi dev server.py                       # HTTP + the MCP Inspector
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_asgi.runner import TRANSPORTS, RunError, run

DEFAULT_NAMES = ("mcp", "server", "app")
# The name a file is imported under, so its `if __name__ == "__main__":` block does not run.
FILE_MODULE_NAME = "mcp_asgi_target"


class CLIError(Exception):
    """A one-line problem with what to do about it; printed without a traceback."""


@dataclass
class AppTarget:
    """An ASGI app named in the file (FastAPI, Starlette, ...): served as it is, over HTTP only."""

    name: str
    app: Any
    # (path, MCP app) for each MCP server mounted in it, and the names of the file's servers.
    mounted: list[tuple[str, Any]] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.name} is an ASGI app ({type(self.app).__name__})"


# Loading the server.
def split_spec(spec: str) -> tuple[str, str | None]:
    """`file.py:obj` or `package.module:obj` -> (target, obj); a Windows drive colon is not a separator."""
    target, sep, name = spec.rpartition(":")
    if sep and name.isidentifier() and target and not (len(target) == 1 and target.isalpha()):
        return target, name
    return spec, None


def _is_file_target(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target


def import_target(target: str, *, debug: bool = False) -> Any:
    """Import a file (under a private module name) or a dotted module; errors become CLIError."""
    if _is_file_target(target):
        path = Path(target)
        if not path.is_file():
            where = "a directory, not a file" if path.is_dir() else "not found"
            raise CLIError(f"{target}: {where}; give the path to your server's .py file (relative to {os.getcwd()})")
        path = path.resolve()
        # Sibling imports in the file work as when it is run with `python file.py`.
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(FILE_MODULE_NAME, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[FILE_MODULE_NAME] = module
        loader = lambda: spec.loader.exec_module(module)  # noqa: E731
        what = str(target)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        if importlib.util.find_spec(target.split(".")[0]) is None:
            raise CLIError(
                f"no module named {target!r}; check the spelling, "
                f"or pass a file path such as {target.replace('.', '/')}.py"
            )
        loader = None
        what = target
    try:
        if loader is not None:
            loader()
            return module
        return importlib.import_module(target)
    except SystemExit:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (run with --log-level debug for the traceback)"
        raise CLIError(f"importing {what} failed: {type(exc).__name__}: {exc}; fix the error in it{hint}") from None


def find_server(module: Any, name: str | None, target: str) -> Any:
    """The MCPServer (or ASGI app) the spec names, or the first of `mcp`, `server`, `app`; factories are called.

    With none of those names, the file's only MCP server is used; several are listed.
    """
    from mcp_asgi.server import MCPServer

    servers = _servers_in(module)
    if name is not None:
        if not hasattr(module, name):
            raise CLIError(f"{target} has no object named {name!r}; check the name after ':'")
        candidates = [name]
    else:
        candidates = [n for n in DEFAULT_NAMES if hasattr(module, n)]
        if not candidates and len(servers) == 1:
            candidates = list(servers)
        elif not candidates:
            if servers:
                raise CLIError(f"{target} defines several MCP servers; {_name_one(target, servers)}")
            raise CLIError(
                f"no server object found in {target}: define `mcp = MCPServer(...)` in it, "
                f"or name the object: {target}:my_server"
            )
    wrong: list[str] = []
    for candidate in candidates:
        found = _as_target(getattr(module, candidate), candidate, wrong)
        if isinstance(found, AppTarget):
            found.servers = [n for n in servers if n != candidate]
            return found
        if isinstance(found, MCPServer):
            _warn_if_mounted(module, candidate, found, target)
            return found
    others = f"; or {_name_one(target, servers)}" if servers else ""
    raise CLIError(
        f"{target}: {'; '.join(wrong)}, not an MCPServer; "
        f"point at your server with {target}:name (an MCPServer or a function returning one){others}"
    )


def _as_target(obj: Any, name: str, wrong: list[str]) -> Any:
    """The MCPServer or AppTarget `obj` stands for, or None (with why in `wrong`)."""
    from mcp_asgi.http_app import MCPApp
    from mcp_asgi.server import MCPServer

    if isinstance(obj, MCPServer):
        return obj
    if isinstance(obj, MCPApp):
        return obj.mcp_server
    if _is_asgi_app(obj):
        return AppTarget(name, obj, mounted=list(_mounted_mcp_apps(obj)))
    if callable(obj) and not inspect.isclass(obj) and _takes_no_arguments(obj):
        made = obj()
        if inspect.iscoroutine(made):
            made = _await(made)
        if isinstance(made, MCPServer):
            return made
        wrong.append(f"{name}() returned {type(made).__name__}")
        return None
    wrong.append(f"{name} is {_describe(obj)}")
    return None


def _servers_in(module: Any) -> dict[str, Any]:
    """The module's MCP servers by the first global name each is bound to (an MCPApp counts as its server)."""
    from mcp_asgi.http_app import MCPApp
    from mcp_asgi.server import MCPServer

    found: dict[str, Any] = {}
    for key, value in vars(module).items():
        server = value.mcp_server if isinstance(value, MCPApp) else value
        if isinstance(server, MCPServer) and not key.startswith("_") and server not in found.values():
            found[key] = server
    return found


def _name_one(target: str, servers: dict[str, Any] | list[str]) -> str:
    names = list(servers)
    return f"name one of its MCP servers ({', '.join(names)}): {target}:{names[0]}"


def _is_asgi_app(obj: Any) -> bool:
    """An ASGI 3 application: `async (scope, receive, send)`, a function or an object's `__call__`."""
    from starlette.applications import Starlette

    if isinstance(obj, Starlette):
        return True
    if inspect.isclass(obj) or not callable(obj):
        return False
    call = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else type(obj).__call__
    if not inspect.iscoroutinefunction(call):
        return False
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 3


def _mounted_mcp_apps(app: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(path, MCP app) for each MCP app mounted in `app`, nested mounts included."""
    from starlette.routing import Mount

    from mcp_asgi.http_app import MCPApp

    if depth > 8:  # deeper nesting is unheard of; the bound also stops a mount cycle
        return
    for route in getattr(app, "routes", None) or ():
        if not isinstance(route, Mount):
            continue
        path = prefix + route.path
        if isinstance(route.app, MCPApp):
            yield path or "/", route.app
        else:
            yield from _mounted_mcp_apps(route.app, path, depth + 1)


def _warn_if_mounted(module: Any, name: str, server: Any, target: str) -> None:
    """Tell the user when the server is also mounted in an app of the file: they likely meant the app."""
    for key, value in vars(module).items():
        if key.startswith("_") or not _is_asgi_app(value):
            continue
        for path, mcp_app in _mounted_mcp_apps(value):
            if mcp_app.mcp_server is server:
                print(
                    f"mcp-asgi: warning: {name!r} is mounted at {path} in {key!r} ({type(value).__name__}) in this "
                    f"file; serving the MCP server alone, without {key}'s other routes and lifespan. To serve the "
                    f"whole app: mcp-asgi run {target}:{key} --transport http",
                    file=sys.stderr,
                    flush=True,
                )
                return


def _await(coroutine: Any) -> Any:
    """The result of an async factory; server objects are not bound to the loop that made them."""
    import anyio

    async def wait() -> Any:
        return await coroutine

    return anyio.run(wait)


def _describe(obj: Any) -> str:
    if inspect.isclass(obj):
        return f"the class {obj.__name__}"
    if callable(obj) and not _takes_no_arguments(obj):
        return "a function that needs arguments"
    return f"a {type(obj).__name__}"


def _takes_no_arguments(fn: Any) -> bool:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values()
    )


def load_server(spec: str, argv: Sequence[str] = (), *, debug: bool = False) -> Any:
    """Import SPEC with `sys.argv[1:]` set to `argv`, and return its MCPServer."""
    target, name = split_spec(spec)
    saved = sys.argv
    sys.argv = [target, *argv]
    try:
        module = import_target(target, debug=debug)
        return find_server(module, name, target)
    finally:
        sys.argv = saved


# Commands.
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-asgi", description="Serve MCP servers over stdio or HTTP.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def common(sub: argparse.ArgumentParser, transports: bool) -> None:
        sub.add_argument("spec", metavar="SPEC", help="file.py, file.py:obj or package.module:obj")
        if transports:
            sub.add_argument("--transport", "-t", choices=TRANSPORTS, default="stdio", help="default: stdio")
        sub.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1)")
        sub.add_argument("--port", "-p", type=int, default=8000, help="HTTP port (default 8000)")
        sub.add_argument("--path", default=None, help="endpoint path (default /mcp, or /sse for sse)")
        sub.add_argument("--message-path", default="/messages/", help="sse: where clients POST (default /messages/)")
        sub.add_argument("--log-level", "-l", default=None, choices=("debug", "info", "warning", "error", "critical"))
        sub.add_argument("--stateless", action="store_true", help="http: no sessions for 2025 clients")
        sub.add_argument("--json-response", action="store_true", help="http: answer with JSON, never SSE")
        sub.add_argument("--root-path", default=None, help="the path prefix a proxy in front strips")
        sub.add_argument(
            "--redis-url",
            default=None,
            metavar="URL",
            help="http/sse: share sessions and messages between workers through this Redis (needs mcp-asgi[redis])",
        )
        sub.add_argument(
            "--graceful-shutdown",
            type=float,
            default=None,
            metavar="SECONDS",
            help="http/sse: how long calls still running at SIGTERM may take before they get an error (default 5)",
        )

    common(commands.add_parser("run", help="serve a server (stdio by default)"), transports=True)
    common(commands.add_parser("dev", help="serve over HTTP and open the MCP Inspector"), transports=False)
    commands.add_parser("version", help="print the version")
    return parser


def _app_options(args: argparse.Namespace, transport: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.stateless or args.json_response:
        if transport not in ("http", "streamable-http"):
            raise CLIError("--stateless and --json-response apply to --transport http only")
        options.update(stateless=args.stateless, json_response=args.json_response)
    if transport == "sse":
        options["message_path"] = args.message_path
    if args.root_path:
        if transport == "stdio":
            raise CLIError("--root-path applies to the HTTP transports; add --transport http or sse")
        options["root_path"] = args.root_path
    if args.redis_url:
        if transport == "stdio":
            raise CLIError("--redis-url applies to the HTTP transports; add --transport http or sse")
        from mcp_asgi.redis import RedisBackend

        options["backend"] = RedisBackend(args.redis_url)
    if args.graceful_shutdown is not None:
        if transport == "stdio":
            raise CLIError("--graceful-shutdown applies to the HTTP transports; add --transport http or sse")
        if args.graceful_shutdown < 0:
            raise CLIError(f"--graceful-shutdown must be 0 seconds or more; got {args.graceful_shutdown:g}")
        options["graceful_shutdown"] = args.graceful_shutdown
    return options


def _serve(args: argparse.Namespace, server: Any, transport: str) -> None:
    if isinstance(server, AppTarget):
        _serve_app(args, server, transport)
        return
    options = _app_options(args, transport)
    if transport == "stdio":
        run(server, "stdio", log_level=args.log_level)
    else:
        run(
            server,
            transport,
            host=args.host,
            port=args.port,
            path=args.path,
            log_level=args.log_level,
            **options,
        )


def _serve_app(args: argparse.Namespace, target: AppTarget, transport: str) -> None:
    """Serve a FastAPI/Starlette/any ASGI app with uvicorn, as `uvicorn file:app` would."""
    import anyio
    import uvicorn

    from mcp_asgi import shutdown
    from mcp_asgi.runner import (
        GRACEFUL_SHUTDOWN_SECONDS,
        UVICORN_MARGIN_SECONDS,
        _say,
        _UvicornServer,
        bind_socket,
        configure_logging,
    )

    spec_target = split_spec(args.spec)[0]
    if transport not in ("http", "streamable-http"):
        servers = ""
        if target.servers:
            servers = f"; or serve an MCP server over {transport}: {_name_one(spec_target, target.servers)}"
        raise CLIError(f"{target.describe()}, which can only be served over HTTP: add --transport http{servers}")
    flags = (("--stateless", args.stateless), ("--json-response", args.json_response), ("--redis-url", args.redis_url))
    given = [flag for flag, on in flags if on]
    if args.path is not None and args.command == "run":
        given.insert(0, "--path")
    if given:
        raise CLIError(
            f"{' and '.join(given)} configure an MCP server, but {target.describe()}, served as it is; "
            f"set them where the app builds its MCP app, or point at the server ({spec_target}:name)"
        )
    grace = _app_options(args, transport).get("graceful_shutdown", GRACEFUL_SHUTDOWN_SECONDS)
    configure_logging(args.log_level)
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        target.app,
        host=args.host,
        port=port,
        log_level=args.log_level or "warning",
        root_path=args.root_path or "",
        timeout_graceful_shutdown=grace + UVICORN_MARGIN_SECONDS,
    )
    hooks = []
    for _, mcp_app in target.mounted:
        # End the mounted servers' open streams at shutdown, as `run()` does for a server alone.
        broker = getattr(getattr(mcp_app.state, "mcp_endpoint", None), "broker", None)
        if broker is not None:
            hooks.append(broker.close_all)
        hooks.append(mcp_app.mcp_server._hub.close)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{shown}:{port}{args.root_path or ''}"
    where = "".join(f"; MCP at {base}{path}" for path, _ in target.mounted)
    announcement = f"serving the ASGI app {target.name!r} ({type(target.app).__name__}) at {base}{where}"
    server = _UvicornServer(config, on_shutdown=hooks, announcement=announcement)

    async def serve() -> None:
        shutdown.configure(grace)
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()

    if not target.mounted:
        _say(f"note: no MCP server is mounted in {target.name!r}; serving it anyway")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve)


def _dev(args: argparse.Namespace, server: Any) -> None:
    npx = shutil.which("npx")
    if npx is None:
        raise CLIError(
            "npx not found on PATH; install Node.js (https://nodejs.org) to use the MCP Inspector, "
            f"or run `mcp-asgi run {args.spec} --transport http` and connect another client"
        )
    mounted = server.mounted if isinstance(server, AppTarget) else []
    path = args.path or (mounted[0][0] if mounted else "/mcp")
    url = f"http://{args.host}:{args.port}{path}"
    # `--yes`: npx would otherwise ask before installing the Inspector, and in a non-interactive
    # shell (an IDE task, CI) that question waits forever. No stdin either, so nothing else can ask.
    command = [npx, "--yes", "@modelcontextprotocol/inspector", "--transport", "http", "--server-url", url]
    print(f"mcp-asgi: starting the MCP Inspector for {url}", file=sys.stderr, flush=True)
    inspector = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        _serve(args, server, "http")
    finally:
        inspector.terminate()
        try:
            inspector.wait(5)
        except subprocess.TimeoutExpired:
            inspector.kill()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mcp-asgi` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` belongs to the server (its sys.argv[1:]), not to us.
    server_argv: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, server_argv = argv[:cut], argv[cut + 1 :]
    args = _parser().parse_args(argv)
    if args.command == "version":
        from mcp_asgi import __version__
        from mcp_asgi.protocol.versions import SUPPORTED_VERSIONS

        print(f"mcp-asgi {__version__} (Python {sys.version.split()[0]}; MCP {', '.join(SUPPORTED_VERSIONS)})")
        return 0
    try:
        server = load_server(args.spec, server_argv, debug=args.log_level == "debug")
        if args.command == "dev":
            _dev(args, server)
        else:
            _serve(args, server, args.transport)
    except (CLIError, RunError, ValueError) as exc:
        print(f"mcp-asgi: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
