"""`tidings dev`: a real nats-server, the stream, and the services as supervised children.

Each service is one row of a table (command, port, readiness URL; see :func:`services`), so the
gateway joins the stack by adding a row. The supervisor restarts a child that dies and stops
everything by PID on SIGINT/SIGTERM, so nothing outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from io import TextIOWrapper
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from tidings.auth import DEV_AUDIENCE, DEV_ISSUER, MIN_SECRET_BYTES, mint_token
from tidings.embedded import EmbeddedNats, port_in_use
from tidings.errors import DevConflict, InvalidField, StartFailed, TidingsError
from tidings.settings import AuthSettings, NatsSettings, Settings, StreamSettings
from tidings.units import split_list

if TYPE_CHECKING:  # nats-py and httpx load lazily: `tidings token` needs neither
    from tidings.nats import ProvisionReport

INFO_FILE = "dev.json"
SECRET_FILE = "jwt-secret"  # noqa: S105 (a file name)
SECRET_ENV = "TIDINGS_AUTH_JWT_SECRET"  # noqa: S105 (a variable name)

Log = Callable[[str], None]
T = TypeVar("T")


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while the stack was starting."""


@dataclass(frozen=True, slots=True)
class DevOptions:
    """What `tidings dev` was asked for (ports, data dir, the dev token's claims)."""

    dir: Path = Path(".tidings")
    host: str = "127.0.0.1"
    nats_port: int = 4222
    publisher_port: int = 8081
    gateway_port: int = 8080
    gateway_api_port: int = 8083
    demo_port: int = 8082
    tenant: str = "demo"
    user: str = "alice"
    roles: tuple[str, ...] = ("admin",)
    rooms: tuple[str, ...] = ("*",)
    token_ttl: float = 86400.0
    ready_timeout: float = 30.0
    stop_timeout: float = 10.0

    @property
    def nats_url(self) -> str:
        return f"nats://{self.host}:{self.nats_port}"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One supervised child: how to start it and how to tell it is ready."""

    name: str
    flag: str  # the `tidings dev` option that sets the port, named when the port is taken
    host: str
    port: int
    command: tuple[str, ...]
    env: Mapping[str, str]
    ready_path: str = "/readyz"
    info: Mapping[str, str] = field(default_factory=dict)  # extra dev.json fields (e.g. "ws")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _gateway_origins(options: DevOptions) -> str:
    """The gateway's Origin allow-list: the demo page's origins plus whatever the user set."""
    configured = os.environ.get("TIDINGS_GATEWAY_ALLOWED_ORIGINS", "")
    if "*" in split_list(configured):
        return configured
    hosts = (
        {options.host, "127.0.0.1", "localhost"}
        if options.host.startswith("127.")
        else {options.host}
    )
    demo = sorted(f"http://{h}:{options.demo_port}" for h in hosts)
    own = f"http://{options.host}:{options.gateway_port}"  # a page the gateway serves itself
    return ",".join(item for item in [configured, *demo, own] if item)


def services(options: DevOptions, *, secret: str) -> list[ServiceSpec]:
    """The children of the dev stack, one row each: a new service is one more row."""
    host, nats_url = options.host, options.nats_url
    gateway_ws = f"ws://{host}:{options.gateway_port}/ws"
    publisher_url = f"http://{host}:{options.publisher_port}"
    demo_command = (
        sys.executable, "-m", "tidings.demo", "--dir", str(options.dir),
        "--host", host, "--port", str(options.demo_port),
        "--gateway", gateway_ws, "--publisher", publisher_url,
    )  # fmt: skip
    return [
        ServiceSpec(
            name="publisher",
            flag="--publisher-port",
            host=host,
            port=options.publisher_port,
            command=(sys.executable, "-m", "tidings", "publisher"),
            env={
                "TIDINGS_NATS_URLS": nats_url,
                "TIDINGS_PUBLISHER_HOST": host,
                "TIDINGS_PUBLISHER_PORT": str(options.publisher_port),
                "TIDINGS_PUBLISHER_OUTBOX_DIR": str(options.dir / "outbox"),
            },
        ),
        ServiceSpec(
            name="gateway",
            flag="--gateway-port",
            host=host,
            port=options.gateway_port,
            command=(sys.executable, "-m", "tidings", "gateway"),
            env={
                "TIDINGS_NATS_URLS": nats_url,
                "TIDINGS_GATEWAY_HOST": host,
                "TIDINGS_GATEWAY_PORT": str(options.gateway_port),
                "TIDINGS_GATEWAY_API_PORT": str(options.gateway_api_port),
                SECRET_ENV: secret,  # the secret the dev token is signed with
                # Ctrl-C should not wait out a production-length drain.
                "TIDINGS_GATEWAY_DRAIN_SECONDS": os.environ.get(
                    "TIDINGS_GATEWAY_DRAIN_SECONDS", "1"
                ),
                # The demo page comes from its own server, so its WebSocket is cross-origin.
                "TIDINGS_GATEWAY_ALLOWED_ORIGINS": _gateway_origins(options),
            },
            info={"ws": gateway_ws, "api": f"http://{host}:{options.gateway_api_port}"},
        ),
        ServiceSpec(
            name="demo",
            flag="--demo-port",
            host=host,
            port=options.demo_port,
            command=demo_command,
            env={SECRET_ENV: secret},  # it mints dev tokens the gateway accepts
            ready_path="/healthz",
            info={"url": f"http://{host}:{options.demo_port}/demo/"},
        ),
    ]


# --- files under the dev dir -----------------------------------------------------------------


def check_secret(secret: str, *, field: str) -> str:
    """The gateway refuses HS256 secrets under 32 bytes; a token signed with one is useless."""
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        raise InvalidField(
            f"is {size} bytes; at least {MIN_SECRET_BYTES} are required", field=field
        )
    return secret


def load_secret(auth: AuthSettings, dev_dir: Path) -> str | None:
    """The JWT secret from ``TIDINGS_AUTH_JWT_SECRET`` or ``<dir>/jwt-secret``, if any."""
    if auth.jwt_secret is not None:
        return auth.jwt_secret.get_secret_value()
    path = dev_dir / SECRET_FILE
    if path.is_file():
        return check_secret(path.read_text(encoding="utf-8").strip(), field=str(path))
    return None


def ensure_secret(auth: AuthSettings, dev_dir: Path) -> str:
    """The dev secret, generated once into ``<dir>/jwt-secret`` (mode 0600) when none is set."""
    existing = load_secret(auth, dev_dir)
    if existing:
        return existing
    dev_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(dev_dir / SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return secret


def mint_dev_token(
    auth: AuthSettings,
    secret: str,
    *,
    tenant: str,
    user: str,
    roles: Sequence[str],
    rooms: Sequence[str],
    ttl: float,
) -> str:
    """An HS256 token that a gateway with these auth settings accepts (claim names, aud, iss)."""
    renamed: dict[str, Any] = {}
    for default, name, value in (
        ("sub", auth.user_claim, user),
        ("roles", auth.roles_claim, list(roles)),
        ("rooms", auth.rooms_claim, list(rooms)),
    ):
        if name != default:
            renamed[name], renamed[default] = value, None
    return mint_token(
        secret,
        tenant=tenant,
        user=user,
        roles=roles,
        rooms=rooms,
        ttl=ttl,
        audience=auth.audience or DEV_AUDIENCE,
        issuer=auth.issuer or DEV_ISSUER,
        tenant_claim=auth.tenant_claim,
        claims=renamed,
    )


def read_info(dev_dir: Path) -> dict[str, Any] | None:
    """What a running `tidings dev` wrote to ``<dir>/dev.json`` (``None`` if it is not running)."""
    try:
        info = json.loads((dev_dir / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _write_json(path: Path, body: Mapping[str, Any]) -> None:
    # Write then rename, so a reader never sees half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


async def provision(
    nats_settings: NatsSettings, stream_settings: StreamSettings
) -> ProvisionReport:
    """Connect and ensure the stream (what `tidings nats init` and `tidings dev` both do)."""
    from tidings.nats import connect, ensure_stream

    nc = await connect(nats_settings, within=max(3.0, 2 * nats_settings.connect_timeout))
    try:
        return await ensure_stream(nc.jetstream(), stream_settings)
    finally:
        await nc.close()


# --- children -------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Runs in the child before exec: if `tidings dev` is killed outright, SIGTERM the child."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """One child process of a :class:`ServiceSpec`, restartable, logging to ``<dir>/logs``."""

    def __init__(self, spec: ServiceSpec, log_dir: Path) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.backoff = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        env = {**os.environ, **self.spec.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.spec.command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
                preexec_fn=_die_with_parent,
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    def poll(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def reap(self, timeout: float) -> None:
        """Wait for the child to exit; SIGKILL it when ``timeout`` runs out."""
        if self.process is None:
            return
        try:
            self.process.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the stack ------------------------------------------------------------------------------


class DevStack:
    """nats-server plus the services, started together, supervised, and stopped together."""

    def __init__(
        self, options: DevOptions, settings: Settings, *, stop: threading.Event, log: Log
    ) -> None:
        self.options = options
        self.settings = settings
        self.stop_event = stop
        self.log = log
        self.dir = options.dir.resolve()
        self.nats = EmbeddedNats(self.dir / "nats", port=options.nats_port, host=options.host)
        self.children: list[Child] = []
        self.info: dict[str, Any] = {}
        self.report: ProvisionReport | None = None
        self._lock: TextIOWrapper | None = None

    @property
    def info_path(self) -> Path:
        return self.dir / INFO_FILE

    def start(self) -> dict[str, Any]:
        """Start everything and write ``dev.json``; on any failure, stop what started."""
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> dict[str, Any]:
        opts = self.options
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        secret = ensure_secret(self.settings.auth, self.dir)
        token = mint_dev_token(
            self.settings.auth,
            secret,
            tenant=opts.tenant,
            user=opts.user,
            roles=opts.roles,
            rooms=opts.rooms,
            ttl=opts.token_ttl,
        )
        specs = services(dataclasses.replace(opts, dir=self.dir), secret=secret)
        self._check_ports(
            [("NATS", "--nats-port", opts.nats_port)] + [(s.name, s.flag, s.port) for s in specs]
        )
        (self.dir / "logs").mkdir(exist_ok=True)
        self.nats.log_file = self.dir / "logs" / "nats-server.log"
        self.nats.start()
        nats_settings = self.settings.nats.model_copy(update={"urls": [self.nats.url]})
        self.report = asyncio.run(provision(nats_settings, self.settings.stream))
        self.children = [Child(spec, self.dir / "logs") for spec in specs]
        for child in self.children:
            child.start()
        for child in self.children:
            self._wait_ready(child)
        self.info = {
            "nats": {"url": self.nats.url},
            **{c.spec.name: {"url": c.spec.url, **c.spec.info} for c in self.children},
            "token": token,
            "claims": {
                "tenant": opts.tenant,
                "user": opts.user,
                "roles": list(opts.roles),
                "rooms": list(opts.rooms),
            },
            "dir": str(self.dir),
        }
        self._write_info()
        return self.info

    def _take_lock(self) -> None:
        lock = (self.dir / "dev.lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise DevConflict(
                f"another `tidings dev` is running with --dir {self.dir}; stop it or use another"
                " --dir"
            ) from None
        self._lock = lock

    def _check_ports(self, wanted: list[tuple[str, str, int]]) -> None:
        seen: dict[int, str] = {}
        for name, flag, port in wanted:
            if port in seen:
                raise DevConflict(
                    f"{name} and {seen[port]} both want port {port}; change it with {flag}"
                )
            seen[port] = name
            if port_in_use(port, self.options.host):
                raise DevConflict(
                    f"port {port} ({name}) is already in use on {self.options.host};"
                    f" choose another with {flag}{self._leftover_hint(name)}"
                )

    def _leftover_hint(self, name: str) -> str:
        # We hold the lock, so a dev.json here is from a `tidings dev` that was killed outright.
        pid = ((read_info(self.dir) or {}).get("pids") or {}).get(name.lower())
        return f" (a killed `tidings dev` may have left pid {pid} running)" if pid else ""

    def _wait_ready(self, child: Child) -> None:
        url = child.spec.url + child.spec.ready_path
        deadline = time.monotonic() + self.options.ready_timeout
        import httpx

        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.stop_event.is_set():
                    raise Interrupted
                code = child.poll()
                if code is not None:
                    raise StartFailed(
                        f"{child.spec.name} exited with code {code} before it was ready;"
                        f" end of {child.log_path}:\n{child.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(url).status_code == 200:
                        return
                self.stop_event.wait(0.1)
        raise StartFailed(
            f"{child.spec.name} was not ready at {url} after {self.options.ready_timeout:.0f}s;"
            f" end of {child.log_path}:\n{child.log_tail()}"
        )

    def _write_info(self) -> None:
        pids = {"supervisor": os.getpid()}
        if self.nats.process is not None:
            pids["nats"] = self.nats.process.pid
        pids.update({c.spec.name: c.pid for c in self.children if c.pid is not None})
        self.info["pids"] = pids
        _write_json(self.info_path, self.info)

    def supervise(self, *, tick: float = 0.2) -> None:
        """Restart whatever dies unexpectedly, until SIGINT/SIGTERM sets the stop event."""
        while not self.stop_event.wait(tick):
            if not self.nats.running:
                self.log(f"nats-server exited unexpectedly; restarting on port {self.nats.port}")
                try:
                    self.nats.start()
                except TidingsError as exc:
                    self.log(f"nats-server did not restart: {exc.reason}")
                    continue
                self._write_info()
            for child in self.children:
                self._check_child(child)

    def _check_child(self, child: Child) -> None:
        code = child.poll()
        if code is None:
            return
        now = time.monotonic()
        if child.restart_at is None:
            # Back off when it keeps dying right after a start (a crash loop), else restart now.
            uptime = now - child.started_at
            child.backoff = 0.0 if uptime > 10 else min(max(child.backoff * 2, 0.5), 10.0)
            child.restart_at = now + child.backoff
            self.log(
                f"{child.spec.name} (pid {child.pid}) exited with code {code};"
                f" restarting in {child.backoff:.1f}s (log: {child.log_path})"
            )
        if now >= child.restart_at:
            child.start()
            self.log(f"{child.spec.name} restarted (pid {child.pid})")
            self._write_info()

    def close(self) -> None:
        """Stop the children (SIGTERM, SIGKILL after the grace period), then nats-server."""
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + self.options.stop_timeout
        for child in self.children:
            child.reap(deadline - time.monotonic())
        self.nats.stop(timeout=self.options.stop_timeout)
        if self.info:  # only the dev.json this stack wrote (a stale one names leftover pids)
            with contextlib.suppress(FileNotFoundError):
                self.info_path.unlink()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def run(
    options: DevOptions,
    settings: Settings,
    *,
    log: Log,
    ready: Callable[[DevStack], None],
) -> None:
    """Start the stack, announce it, supervise it until a stop signal, then stop it all."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # SIGHUP too: closing the terminal must stop the stack as Ctrl-C does.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    stack = DevStack(options, settings, stop=stop, log=log)
    try:
        stack.start()
        ready(stack)
        stack.supervise()
    except Interrupted:
        pass
    finally:
        stack.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
