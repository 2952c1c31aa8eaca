"""The HTTP API's front process: reads served from the store, everything else forwarded.

The control plane's event loop and interpreter also serve xDS, so during a connection storm
(a thousand proxies getting their first configuration) a request waits behind that work.
``pilotfish server`` therefore starts this worker, a process of its own (its own event loop
and interpreter), which listens on the API port and:

- answers ``GET`` of a config kind (a list or one object, not ``?watch``) itself, from its
  own connection to the same store (SQLite in WAL mode lets readers in other processes see
  every committed write; PostgreSQL is shared anyway), after the same authentication and
  role check as the control plane's, with the same handlers (``ApiServer``);
- forwards every other request unchanged (writes, watches, proxy status and config, tokens,
  the CA, metrics, health, the dashboard's routes, and any request it cannot authenticate,
  so refusals read the same) to the control plane's API over a Unix socket only its user
  can reach, adding the caller's address (``X-Forwarded-For``) for the audit log.

Writes still go through the control plane, so a commit reaches xDS exactly as before.

The worker exits when its standard input closes (the control plane is gone, even after
SIGKILL) or on SIGTERM; the control plane (:class:`ApiWorker`) restarts it when it dies.
It prints ``ready`` once it listens; a failure to start (the port taken, the store
unreadable) is printed on stderr and exits with status 1.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import shutil
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from pilotfish.api import kinds
from pilotfish.apiserver.app import (
    FORWARDED_FOR,
    PRINCIPAL,
    ApiServer,
    ApiSettings,
    error_response,
)
from pilotfish.apiserver.auth import forbidden, load_or_create_admin_token
from pilotfish.apiserver.status import status_body
from pilotfish.config.store import Store, open_store
from pilotfish.errors import PilotfishError

log = logging.getLogger("pilotfish.apiserver.worker")

#: Hop-by-hop headers (RFC 9110) and those aiohttp recomputes; never copied across the hop.
_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
        FORWARDED_FOR,
    )
)
#: The last lines a worker logged.
Lines = collections.deque[str]
#: The first line the worker prints once it listens.
READY_LINE = "ready"
#: How long the control plane waits for a worker to listen (it imports the API's modules).
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker needs, passed as JSON in its one argument (no secrets: it reads the
    admin token from the data directory)."""

    store_url: str
    data_dir: str
    host: str
    port: int
    #: The control plane's API, a Unix socket.
    upstream: str
    log_level: str = "info"
    #: TLS (``--api-tls``): the certificate chain and key files; reloaded on SIGHUP.
    tls_cert: str = ""
    tls_key: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        return cls(**json.loads(text))


class Front:
    """The worker's application: local reads, forwarded everything else."""

    def __init__(self, store: Store, token: str, upstream: str) -> None:
        self.store = store
        self.api = ApiServer(store, ApiSettings(tokens=frozenset({token})))
        self._upstream = upstream
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        # No body limit here: the control plane applies its own (and says so) to what it
        # is forwarded.
        app = web.Application(client_max_size=0)
        r = app.router
        for prefix in ("/api/{version}", "/apis/{group}/{version}"):
            r.add_route("*", prefix + "/namespaces/{namespace}/{plural}", self.collection)
            r.add_route("*", prefix + "/namespaces/{namespace}/{plural}/{name}", self.item)
            r.add_route("*", prefix + "/{plural}", self.collection)
            r.add_route("*", prefix + "/{plural}/{name}", self.item)
        r.add_route("*", "/{tail:.*}", self.forward)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def collection(self, request: web.Request) -> web.StreamResponse:
        return await self._read(request, self.api.collection)

    async def item(self, request: web.Request) -> web.StreamResponse:
        return await self._read(request, self.api.item)

    async def _read(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """``handler`` answers a read of a config kind by an allowed caller; anything else
        (other methods, watches, other paths, callers to refuse) is forwarded."""
        if not self._answers(request):
            return await self.forward(request)
        try:
            return await handler(request)
        except PilotfishError as e:
            return error_response(request, e)

    def _answers(self, request: web.Request) -> bool:
        if request.method != "GET" or request.query.get("watch") in ("true", "1"):
            return False
        info = request.match_info
        try:
            kinds.by_path(info.get("group", ""), info["version"], info["plural"])
        except PilotfishError:
            return False  # not a config kind: the control plane answers (or refuses) it
        principal = self.api.auth.authenticate(request.headers.get("Authorization"))
        if principal is None:
            return False
        if forbidden(principal, request.method, request.path, info["plural"]) is not None:
            return False
        request[PRINCIPAL] = principal
        return True

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """``request`` sent on to the control plane's API, its answer streamed back."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self._upstream),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers[FORWARDED_FOR] = request.remote or ""
        response: web.StreamResponse | None = None
        try:
            async with self._session.request(
                request.method,
                f"http://control-plane{request.rel_url}",
                headers=headers,
                data=request.content if request.body_exists else None,
                allow_redirects=False,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for k, v in upstream.headers.items():
                    if k.lower() not in _HOP:
                        response.headers.add(k, v)
                if upstream.content_length is not None:
                    response.content_length = upstream.content_length
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, OSError) as exc:
            if response is not None:
                # A stream (a watch) the control plane ended: end it here too.
                log.debug("forwarded response ended: %s", exc)
                return response
            log.debug("the control plane's API did not answer: %s", exc)
            return web.json_response(
                status_body(
                    503,
                    "ServiceUnavailable",
                    "the control plane is not answering (starting or stopping)",
                ),
                status=503,
            )


def _tls_context(config: WorkerConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key or config.tls_cert)
    return context


async def run(config: WorkerConfig) -> None:
    """Serve until stdin closes or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Ctrl-C in a terminal reaches the whole group: the control plane stops this worker.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    tls = _tls_context(config)
    if tls is not None:

        def reload() -> None:
            try:
                tls.load_cert_chain(config.tls_cert, config.tls_key or config.tls_cert)
            except (OSError, ssl.SSLError) as exc:
                log.error("the API worker could not reload its certificate: %s", exc)

        loop.add_signal_handler(signal.SIGHUP, reload)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    orphaned = False

    async def parent_gone() -> None:
        nonlocal orphaned
        while await reader.read(4096):
            pass
        orphaned = True
        stop.set()

    watcher = asyncio.create_task(parent_gone())
    store = open_store(config.store_url)
    try:
        token = load_or_create_admin_token(Path(config.data_dir))
        front = Front(store, token, config.upstream)
        runner = web.AppRunner(front.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port, shutdown_timeout=2.0, ssl_context=tls)
        await site.start()
        print(READY_LINE, flush=True)
        await stop.wait()
        await runner.cleanup()
    finally:
        watcher.cancel()
        store.close()
        if orphaned:
            # The control plane died without removing its socket's private directory.
            remove_socket_dir(Path(config.upstream))


#: The prefix of the private directory of the control plane's API socket.
SOCKET_DIR_PREFIX = "pilotfish-api-"


def remove_socket_dir(sock: Path) -> None:
    """Remove the directory ``sock`` is in, when it is one the control plane made for it."""
    if sock.parent.name.startswith(SOCKET_DIR_PREFIX):
        shutil.rmtree(sock.parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config = WorkerConfig.from_json(args[0])
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[api worker]: %(message)s",
    )
    try:
        asyncio.run(run(config))
    except (OSError, PilotfishError) as exc:
        print(f"the API worker did not start on {config.host}:{config.port}: {exc}",
              file=sys.stderr, flush=True)  # fmt: skip
        return 1
    return 0


# ---------------------------------------------------------------------------- supervision


class ApiWorkerError(PilotfishError):
    """The API worker did not start."""


class ApiWorker:
    """Runs the worker for the control plane: started with it, restarted when it dies,
    stopped with it. ``start`` raises :class:`ApiWorkerError` (with the worker's reason)
    when the first start fails."""

    def __init__(self, config: WorkerConfig, *, restart_delay: float = 0.5) -> None:
        self.config = config
        self.restart_delay = restart_delay
        self.proc: asyncio.subprocess.Process | None = None
        #: How many times the worker was restarted after dying.
        self.restarts = 0
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._launched: tuple[asyncio.subprocess.Process, asyncio.Task[None], Lines] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def launch(self) -> None:
        """Start the worker's process without waiting for it to listen (it imports its
        modules meanwhile, on another CPU when there is one); ``start`` waits."""
        if self.proc is None:
            self._launched = await self._exec()

    async def start(self) -> None:
        """Launch the worker if not yet, wait until it listens, then watch over it."""
        await self.launch()
        launched, self._launched = self._launched, None
        assert launched is not None
        await self._ready(*launched)
        self._supervisor = asyncio.create_task(self._supervise(), name="api-worker")

    async def _spawn(self) -> None:
        await self._ready(*await self._exec())

    async def _exec(self) -> tuple[asyncio.subprocess.Process, asyncio.Task[None], Lines]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-P",
            "-m",
            "pilotfish.apiserver.worker",
            self.config.to_json(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        # Its log lines go where the control plane's go; the last ones explain a failure.
        last: Lines = collections.deque(maxlen=5)
        relay = asyncio.create_task(_relay(proc.stderr, last), name="api-worker-log")
        self._tasks.add(relay)
        relay.add_done_callback(self._tasks.discard)
        return proc, relay, last

    async def _ready(
        self, proc: asyncio.subprocess.Process, relay: asyncio.Task[None], last: Lines
    ) -> None:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if line.decode().strip() != READY_LINE:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(relay, 2.0)
            raise ApiWorkerError(
                last[-1] if last else f"the API worker exited with status {proc.returncode}"
            )
        log.info("API worker (pid %d) serves %s:%d", proc.pid, self.config.host, self.config.port)

    async def _supervise(self) -> None:
        while not self._stopping:
            proc = self.proc
            assert proc is not None
            code = await proc.wait()
            if self._stopping:
                return
            log.error(
                "the API worker (pid %d) exited with status %s; starting it again", proc.pid, code
            )
            while not self._stopping:
                await asyncio.sleep(self.restart_delay)
                try:
                    await self._spawn()
                    self.restarts += 1
                    break
                except (ApiWorkerError, OSError) as exc:
                    log.error("the API worker did not start again: %s", exc)

    def reload_certificate(self) -> None:
        """Make the worker load its certificate files again (after a rotation)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGHUP)

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _relay(stream: asyncio.StreamReader, last: Lines) -> None:
    out = sys.stderr.buffer
    while line := await stream.readline():
        out.write(line)
        out.flush()
        if line.strip():
            last.append(line.decode(errors="replace").strip())


if __name__ == "__main__":
    sys.exit(main())
