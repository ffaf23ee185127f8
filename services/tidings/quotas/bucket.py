"""The quotas bucket in NATS KV: limits (written by the admin API, followed by every publisher),
the day's counts (added to with compare-and-set), and the once-a-day notice markers.

Every write of a count names the revision it read (``Nats-Expected-Last-Subject-Sequence``):
two publishers adding at once cannot lose each other's count, the loser reads again and retries.
A notice marker is written with expected revision 0, which JetStream refuses when the key
exists: of several publishers crossing a threshold together, exactly one sends the notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError

from tidings.errors import TidingsError, Unavailable
from tidings.nats import follow_keys, keys_loaded
from tidings.quotas.limits import (
    DAY_KEY_TTL,
    TenantLimits,
    bucket_name,
    day_key,
    limit_key,
    sent_key,
)

log = logging.getLogger(__name__)

WRONG_LAST_SEQUENCE = 10071  # JSStreamWrongLastSequenceErrF: someone wrote the key meanwhile
_CAS_TRIES = 20
_DEL_OPS = ("DEL", "PURGE")

# Called with (tenant, entry or None when removed) for every change of a `limit.` key.
OnLimits = Callable[[str, TenantLimits | None], None]


class QuotaBucket:
    """Reads and writes the quotas bucket of one stream."""

    def __init__(self, *, stream: str) -> None:
        self.stream_name = stream
        self.bucket = bucket_name(stream)
        self.stream = f"KV_{self.bucket}"
        self.prefix = f"$KV.{self.bucket}."
        self._sub: Any = None
        self._loaded = asyncio.Event()
        self._on_limits: OnLimits | None = None

    # -- creating it (`tidings nats init`, the admin API) --------------------------------------

    async def ensure(self, js: JetStreamContext, *, like: api.StreamConfig | None = None) -> bool:
        """Create the bucket when missing (replicas and storage of ``like``); True if created."""
        try:
            await js.stream_info(self.stream)
            return False
        except NotFoundError:
            pass
        await js.create_key_value(
            api.KeyValueConfig(
                bucket=self.bucket,
                description="Tidings publish quotas (tidings quota): limits, daily counts",
                history=1,
                direct=True,  # counts and limits are read with direct gets (any replica)
                replicas=(like.num_replicas if like else None) or 1,
                storage=(like.storage if like else None) or api.StorageType.FILE,
            )
        )
        log.info("quota bucket created", extra={"bucket": self.bucket})
        return True

    # -- limits --------------------------------------------------------------------------------

    async def follow(self, js: JetStreamContext, on_limits: OnLimits, timeout: float) -> None:
        """Load every tenant's limits, then follow changes; returns once loaded.

        An ordered consumer on ``limit.>`` only: the counts change every second and no
        publisher needs the others' counts between its own merges.
        """
        await self.stop()
        self._on_limits = on_limits
        loaded = self._loaded = asyncio.Event()
        sub = self._sub = await follow_keys(
            js, stream=self.stream, subject=f"{self.prefix}limit.>", cb=self._on_msg
        )
        await keys_loaded(sub, loaded, timeout)

    @property
    def following(self) -> bool:
        return self._sub is not None and self._loaded.is_set()

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        tenant = msg.subject[len(self.prefix) + len("limit.") :]
        headers = msg.headers or {}
        entry: TenantLimits | None = None
        if headers.get("KV-Operation") not in _DEL_OPS and "Nats-Marker-Reason" not in headers:
            try:
                entry = TenantLimits.from_dict(orjson.loads(msg.data))
            except (orjson.JSONDecodeError, TidingsError) as exc:
                # Written by something other than the admin API: never trusted, never fatal.
                log.warning("quota entry ignored", extra={"tenant": tenant, "why": str(exc)})
            else:
                if entry.tenant != tenant:
                    log.warning("quota entry ignored", extra={"tenant": tenant, "why": "key"})
                    entry = None
        if self._on_limits is not None:
            self._on_limits(tenant, entry)
        if msg.metadata.num_pending == 0:
            self._loaded.set()

    async def put_limits(self, js: JetStreamContext, entry: TenantLimits) -> int:
        ack = await js.publish(self.prefix + limit_key(entry.tenant), orjson.dumps(entry.to_dict()))
        return int(ack.seq)

    async def delete_limits(self, js: JetStreamContext, tenant: str) -> int:
        """Back to the defaults (a delete marker, as ``KeyValue.delete`` writes)."""
        ack = await js.publish(
            self.prefix + limit_key(tenant), b"", headers={"KV-Operation": "DEL"}
        )
        return int(ack.seq)

    async def get_limits(self, js: JetStreamContext, tenant: str) -> TenantLimits | None:
        raw, _ = await self._get(js, limit_key(tenant))
        if not raw:
            return None
        return TenantLimits.from_dict(orjson.loads(raw))

    async def all_limits(self, js: JetStreamContext, timeout: float) -> dict[str, TenantLimits]:
        """Every tenant's own limits, read once (an ordered consumer, stopped after loading)."""
        found: dict[str, TenantLimits] = {}

        def keep(tenant: str, entry: TenantLimits | None) -> None:
            if entry is None:
                found.pop(tenant, None)
            else:
                found[tenant] = entry

        reader = QuotaBucket(stream=self.stream_name)
        try:
            await reader.follow(js, keep, timeout)
        finally:
            await reader.stop()
        return found

    # -- the day's counts ----------------------------------------------------------------------

    async def count(self, js: JetStreamContext, day: str, tenant: str) -> int:
        raw, _ = await self._get(js, day_key(day, tenant))
        return _count(raw)

    async def add(
        self, js: JetStreamContext, day: str, tenant: str, delta: int, *, cap: int | None = None
    ) -> tuple[int, bool]:
        """Add ``delta`` to the tenant's count of ``day``: ``(total, True)``; with ``cap``, only
        if the total stays within it, else ``(total now, False)`` and nothing is written."""
        key = day_key(day, tenant)
        for _ in range(_CAS_TRIES):
            raw, seq = await self._get(js, key)
            total = _count(raw)
            if cap is not None and delta > 0 and total + delta > cap:
                return total, False
            if delta == 0:
                return total, True
            headers = {"Nats-Expected-Last-Subject-Sequence": str(seq)}
            try:
                await js.publish(
                    self.prefix + key,
                    str(max(0, total + delta)).encode(),
                    headers=headers,
                    msg_ttl=DAY_KEY_TTL,
                )
            except APIError as exc:
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    continue  # another publisher added meanwhile: read again
                raise
            return max(0, total + delta), True
        raise Unavailable(f"the count of {key} kept changing; {_CAS_TRIES} tries")

    async def create_once(self, js: JetStreamContext, day: str, tenant: str, kind: str) -> bool:
        """Mark the day's notice of ``kind`` as sent: True for the one caller that created it."""
        try:
            await js.publish(
                self.prefix + sent_key(day, tenant, kind),
                b"1",
                headers={"Nats-Expected-Last-Subject-Sequence": "0"},
                msg_ttl=DAY_KEY_TTL,
            )
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return False
            raise
        return True

    async def _get(self, js: JetStreamContext, key: str) -> tuple[bytes, int]:
        """The key's value and revision (``b"", 0`` when it has none)."""
        try:
            msg = await js.get_msg(self.stream, subject=self.prefix + key, direct=True)
        except NotFoundError:
            return b"", 0
        headers = msg.headers or {}
        if headers.get("KV-Operation") in _DEL_OPS:
            return b"", int(msg.seq or 0)
        return msg.data or b"", int(msg.seq or 0)


def _count(raw: bytes) -> int:
    try:
        value = int(raw) if raw else 0
    except ValueError:
        return 0  # not written by a publisher: start over rather than fail every publish
    return max(0, value)
