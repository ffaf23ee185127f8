"""The inbox REST API's routes (``/v1/inbox/...``): list, one, counts, mark, mark-all,
preferences, erase. docs/inbox.md describes them; :mod:`tidings.inbox.openapi` is their
OpenAPI document (a test keeps the two in step).

The caller is the token's (tenant, user); what it may see is decided by the gateway's rule
(:mod:`tidings.inbox.visibility`) in every query, so an id of another tenant or user is
``not_found`` like an id that does not exist (never 403: no existence oracle). Each write runs
in one transaction and is then announced on NATS (:mod:`tidings.inbox.announce`), best effort.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.auth import Verifier
from tidings.auth.claims import Claims
from tidings.errors import (
    Forbidden,
    InvalidField,
    MissingField,
    NotFound,
    TidingsError,
    TooLarge,
    Unavailable,
)
from tidings.inbox import cursor, filters, preferences, queries, retention, state
from tidings.inbox.announce import Announcer
from tidings.inbox.api_metrics import ApiMetrics
from tidings.inbox.http import (
    caller,
    error_response,
    json_object,
    json_response,
    query_values,
    read_json,
)
from tidings.inbox.retention import Limits, TenantRetention
from tidings.inbox.store import Store, retrying
from tidings.subjects import check_id

log = logging.getLogger(__name__)

PREFIX = "/v1/inbox"
MAX_IDS = 1000
LIMIT_KEYS = ("max_age_days", "max_items")
MAX_BODY_BYTES = 128 * 1024  # 1,000 ids of 64 characters fit
Handler = Callable[[Request, Claims], Awaitable[Response]]


def _flags(body: Mapping[str, Any], *, only_true: bool) -> dict[str, bool]:
    changes: dict[str, bool] = {}
    for flag in state.FLAGS:
        if flag not in body:
            continue
        value = body[flag]
        if not isinstance(value, bool) or (only_true and value is not True):
            raise InvalidField("must be true" if only_true else "must be a boolean", field=flag)
        changes[flag] = value
    if not changes:
        raise MissingField("give at least one of read, seen, archived", field="read")
    return changes


def _ids(value: object) -> list[str]:
    if not isinstance(value, list):
        raise InvalidField("must be an array of notification ids", field="ids")
    if not value:
        raise InvalidField("give at least one id", field="ids")
    if len(value) > MAX_IDS:
        raise TooLarge(f"{len(value)} ids; at most {MAX_IDS} per request", field="ids")
    return [check_id(v, field=f"ids[{i}]") for i, v in enumerate(value)]


def _limit(values: Mapping[str, list[str]]) -> int:
    texts = values.get("limit", [])
    if not texts:
        return filters.DEFAULT_LIMIT
    text = texts[0]
    if len(texts) > 1 or not text.isdigit() or not 1 <= int(text) <= filters.MAX_LIMIT:
        raise InvalidField(f"must be one integer from 1 to {filters.MAX_LIMIT}", field="limit")
    return int(text)


class InboxApi:
    """The routes, over a store, the token verifier and the NATS announcer."""

    def __init__(
        self,
        store: Store,
        verifier: Verifier,
        announcer: Announcer,
        metrics: ApiMetrics,
        *,
        admin_role: str,
        limits: Limits | None = None,
    ) -> None:
        self.limits = limits or Limits()  # the global retention limits (the writer's settings)
        self.store = store
        self.verifier = verifier
        self.announcer = announcer
        self.metrics = metrics
        self.admin_role = admin_role

    def routes(self) -> list[Route]:
        p = PREFIX
        table: list[tuple[str, str, str, Handler]] = [
            ("GET", f"{p}/notifications", "list", self.listing),
            ("GET", f"{p}/notifications/{{id}}", "get", self.get),
            ("GET", f"{p}/counts", "counts", self.counts),
            ("POST", f"{p}/state", "state", self.mark),
            ("POST", f"{p}/mark-all", "mark_all", self.mark_all),
            ("GET", f"{p}/preferences", "preferences", self.preferences),
            ("PUT", f"{p}/preferences", "set_preferences", self.set_preferences),
            ("GET", f"{p}/preferences/defaults", "defaults", self.defaults),
            ("PUT", f"{p}/preferences/defaults", "set_defaults", self.set_defaults),
            ("DELETE", f"{p}/users/{{user}}", "erase", self.erase),
            ("GET", f"{p}/retention", "retention", self.read_limits),
            ("PUT", f"{p}/retention", "set_retention", self.set_limits),
        ]
        return [
            Route(path, self.endpoint(name, handler), methods=[method], name=name)
            for method, path, name, handler in table
        ]

    def endpoint(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Authenticate, run, answer errors in the one JSON shape, count every outcome."""

        async def run(request: Request) -> Response:
            started = time.perf_counter()
            try:
                claims = await caller(request, self.verifier)
                # The pool does not ping before each checkout: a dead connection costs one
                # retry instead (read_json keeps the body for it).
                response = await retrying(lambda: handler(request, claims))
                outcome = "ok"
            except TidingsError as exc:
                response, outcome = error_response(exc), exc.code.value
            except ClientDisconnect:
                response, outcome = Response(status_code=400), "disconnected"
            except (OSError, SQLAlchemyError) as exc:
                log.warning("inbox database error", extra={"route": name, "error": repr(exc)})
                down = Unavailable("the inbox database did not answer; retry")
                response, outcome = error_response(down), down.code.value
            except Exception:
                log.exception("inbox request failed", extra={"route": name})
                error = TidingsError("internal error; see the inbox API's log")
                response, outcome = error_response(error), error.code.value
            self.metrics.requests.labels(name, outcome).inc()
            self.metrics.request_seconds.labels(name).observe(time.perf_counter() - started)
            return response

        return run

    # -- reads ----------------------------------------------------------------------------------

    async def listing(self, request: Request, claims: Claims) -> Response:
        values = query_values(request)
        wanted = filters.build(values, allowed=filters.PAGING)
        limit = _limit(values)
        owner = f"{claims.tenant}\x00{claims.user}\x00{wanted.key()}"
        given = values.get("cursor", [])
        if len(given) > 1:
            raise InvalidField("give it once", field="cursor")
        before = cursor.decode(given[0], owner) if given else None
        async with self.store.reads.connect() as conn:  # two statements, each on its own
            muted = await preferences.muted_domains(conn, claims.tenant, claims.user)
            items, last = await queries.page(
                conn, claims, wanted, muted, limit=limit, before=before
            )
        following = cursor.encode(last, owner) if last is not None else None
        return json_response({"items": items, "next_cursor": following})

    async def get(self, request: Request, claims: Claims) -> Response:
        ident = request.path_params["id"]
        if request.query_params:
            raise InvalidField("takes no query parameters", field="query")
        async with self.store.reads.connect() as conn:
            found = await queries.one(conn, claims, ident) if _is_id(ident) else None
        if found is None:
            raise NotFound("no such notification in this inbox", field="id")
        return json_response(found)

    async def counts(self, request: Request, claims: Claims) -> Response:
        async with self.store.reads.connect() as conn:  # one statement, muting included
            return json_response(await queries.counts(conn, claims, None))

    # -- writes ---------------------------------------------------------------------------------

    async def mark(self, request: Request, claims: Claims) -> Response:
        body = json_object(
            await read_json(request, limit=MAX_BODY_BYTES), known=("ids", *state.FLAGS)
        )
        if "ids" not in body:
            raise MissingField("give the ids to mark", field="ids")
        ids = _ids(body["ids"])
        changes = _flags(body, only_true=False)
        async with self.store.engine.begin() as conn:
            changed = await state.mark(conn, claims, ids, changes)
            bell = await queries.bell(conn, claims)
        if changed:
            await self._announce(claims, bell, ids=changed, set_=changes)
        return json_response({"changed": changed, "counts": bell["counts"]})

    async def mark_all(self, request: Request, claims: Claims) -> Response:
        body = json_object(
            await read_json(request, limit=MAX_BODY_BYTES), known=("filter", *state.FLAGS)
        )
        changes = _flags(body, only_true=True)
        wanted = filters.from_json(body["filter"]) if "filter" in body else None
        async with self.store.engine.begin() as conn:
            muted = await preferences.muted_domains(conn, claims.tenant, claims.user)
            await state.mark_all(conn, claims, changes, wanted, muted)
            bell = await queries.bell(conn, claims)
        await self._announce(claims, bell, ids=[], set_=changes, all_=True)
        return json_response({"counts": bell["counts"]})

    # -- preferences ----------------------------------------------------------------------------

    async def preferences(self, request: Request, claims: Claims) -> Response:
        async with self.store.engine.connect() as conn:
            found = await preferences.read(conn, claims.tenant, claims.user)
        return json_response(found.as_json())

    async def set_preferences(self, request: Request, claims: Claims) -> Response:
        domains = await self._domains(request)
        async with self.store.engine.begin() as conn:
            found = await preferences.set_overrides(conn, claims.tenant, claims.user, domains)
            bell = await queries.bell(conn, claims)
        await self._announce(claims, bell, ids=[], set_={}, muted=True)
        return json_response(found.as_json())

    async def defaults(self, request: Request, claims: Claims) -> Response:
        async with self.store.engine.connect() as conn:
            found = await preferences.read_defaults(conn, claims.tenant)
        return json_response(found.as_json())

    async def set_defaults(self, request: Request, claims: Claims) -> Response:
        self._admin(claims, "set the tenant's preference defaults")
        domains = await self._domains(request)
        async with self.store.engine.begin() as conn:
            found = await preferences.set_defaults(conn, claims.tenant, domains)
        # Every user of the tenant (the caller too): the gateways ask each one's bell again.
        await self.announcer.tenant_changed(claims.tenant, "defaults")
        return json_response(found.as_json())

    async def erase(self, request: Request, claims: Claims) -> Response:
        self._admin(claims, "erase a user's inbox")
        user = check_id(request.path_params["user"], field="user")
        addressed = _erase_notifications(query_values(request))
        erased = Claims(claims.tenant, user)
        async with self.store.engine.begin() as conn:
            await preferences.erase_user(conn, claims.tenant, user, addressed=addressed)
            bell = await queries.bell(conn, erased)
        await self._announce(erased, bell, ids=[], set_={}, all_=True, muted=True)
        return Response(status_code=204, headers={"Cache-Control": "no-store"})

    # -- retention (the writer's job reads it at its next pass) ----------------------------------

    async def read_limits(self, request: Request, claims: Claims) -> Response:
        self._admin(claims, "read the tenant's retention")
        if request.query_params:
            raise InvalidField("takes no query parameters", field="query")
        async with self.store.engine.connect() as conn:
            found = await retention.read_retention(conn, claims.tenant)
        return json_response(self._retention_json(found))

    async def set_limits(self, request: Request, claims: Claims) -> Response:
        self._admin(claims, "set the tenant's retention")
        body = json_object(await read_json(request, limit=MAX_BODY_BYTES), known=LIMIT_KEYS)
        if not body:
            raise MissingField("give max_age_days and/or max_items", field="max_age_days")
        async with self.store.engine.begin() as conn:
            current = await retention.read_retention(conn, claims.tenant)
            given = {**current.as_json(), **body}
            found = await retention.set_retention(
                conn, claims.tenant, given["max_age_days"], given["max_items"]
            )
        return json_response(self._retention_json(found))

    def _retention_json(self, own: TenantRetention) -> dict[str, Any]:
        in_force = own.resolve(self.limits)
        effective = {"max_age_days": in_force.max_age_days, "max_items": in_force.max_items}
        return {**own.as_json(), "effective": effective}

    # -- helpers --------------------------------------------------------------------------------

    def _admin(self, claims: Claims, what: str) -> None:
        if self.admin_role not in claims.roles:
            raise Forbidden(f"only the role {self.admin_role!r} may {what}", field="roles")

    async def _domains(self, request: Request) -> Any:
        body = json_object(await read_json(request, limit=MAX_BODY_BYTES), known=("domains",))
        if "domains" not in body:
            shape = '{"domains": {domain: {channel: bool | null}}}'
            raise MissingField(f"give {shape}", field="domains")
        return body["domains"]

    async def _announce(
        self,
        claims: Claims,
        bell: dict[str, Any],
        *,
        ids: list[str],
        set_: Mapping[str, bool],
        all_: bool = False,
        muted: bool = False,
    ) -> None:
        body: dict[str, Any] = {"counts": bell["counts"], "ids": ids, "set": dict(set_)}
        if all_:
            body["all"] = True
        if muted:
            body["muted"] = bell["muted"]
        await self.announcer.changed(claims.tenant, claims.user, body)


def _erase_notifications(values: Mapping[str, list[str]]) -> bool:
    """Whether an erase removes the notifications addressed to the user alone: ``erase`` (the
    default: they are that person's data) or ``keep`` (e.g. held for an audit)."""
    extra = sorted(set(values) - {"notifications"})
    if extra:
        raise InvalidField("unknown query parameter", field=extra[0][:64])
    given = values.get("notifications", ["erase"])
    if len(given) != 1 or given[0] not in ("erase", "keep"):
        raise InvalidField("must be erase or keep, once", field="notifications")
    return given[0] == "erase"


def _is_id(text: str) -> bool:
    try:
        check_id(text, field="id")
    except InvalidField:
        return False
    return True
