"""Who is connected where: N clients over M tenant rooms, each client also in its own user room.

Client ``i`` belongs to tenant room ``i % rooms`` and is user ``u<i>``. Publishes go to tenant
rooms round-robin (the fan-out case) and, with ``user_share`` > 0, that fraction to user rooms
(one receiver each). Every system gets the same layout, in its own naming.
"""

from __future__ import annotations

from dataclasses import dataclass

TENANT_SLOT, USER_SLOT = 0, 1  # the "s" field of a delivery: which of a client's rooms


@dataclass(frozen=True, slots=True)
class Layout:
    clients: int
    rooms: int
    user_share: float = 0.0

    def __post_init__(self) -> None:
        if self.clients < 1 or not 1 <= self.rooms <= self.clients:
            raise ValueError("need clients >= rooms >= 1")
        if not 0.0 <= self.user_share <= 1.0:
            raise ValueError("user_share is a fraction between 0 and 1")

    def room_of(self, client: int) -> int:
        return client % self.rooms

    def room_size(self, room: int) -> int:
        return self.clients // self.rooms + (1 if room < self.clients % self.rooms else 0)

    def expected(self, tenant_sent: dict[int, int], user_sent: int) -> int:
        """Deliveries owed for what was published: tenant sends x members, + one per user send."""
        return sum(n * self.room_size(r) for r, n in tenant_sent.items()) + user_sent

    def owned(self, worker: int, workers: int) -> tuple[list[int], list[int]]:
        """Tenant rooms and users whose publishes one of ``workers`` publishers owns: each room
        has exactly one publisher, so its index stays gap-free and in order."""
        rooms = [r for r in range(self.rooms) if r % workers == worker]
        users = [u for u in range(self.clients) if u % workers == worker]
        return rooms, users

    def max_publishers(self, wanted: int) -> int:
        return max(1, min(wanted, self.rooms))
