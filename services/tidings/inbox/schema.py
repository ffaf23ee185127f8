"""The inbox's tables: each notification once, with its audience; per-user state sparsely beside.

A notification is stored once however many users may see it (a tenant-wide one reaches
thousands): who sees it is decided at read time from the caller's claims
(:mod:`tidings.inbox.visibility`). Per-user state is a row only where a user changed something
(read, seen, archived one notification), plus one row per user of "read / seen everything up to
``pk``" marks, so mark-all is one write, not one per notification (docs/decisions.md: "The
inbox store").

Changing a table means a new revision in ``migrations/versions`` (the metadata here is what
Alembic compares against; a test checks that the migrated schema equals it).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY (its rowid); PostgreSQL gets a BIGINT.
Pk = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Broadcasts belong to no tenant: stored with tenant '' so one index serves both kinds of row.
BROADCAST_TENANT = ""

notifications = Table(
    "notifications",
    metadata,
    # Insert order: the paging cursor and the read/seen marks (stream sequences restart when
    # the stream is recreated; pk never does).
    Column("pk", Pk, primary_key=True, autoincrement=True),
    Column("epoch", String(16), nullable=False),  # the stream's epoch (tidings.nats.stream_epoch)
    Column("seq", BigInteger, nullable=False),  # its stream sequence in that epoch
    Column("id", String(64), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("audience_kind", String(9), nullable=False),  # tenant, user, role, room, broadcast
    Column("audience_name", String(64), nullable=False),  # '' for tenant and broadcast
    Column("event", String(65), nullable=False),
    Column("domain", String(32), nullable=False),  # the event's domain: filters, preferences
    Column("time", DateTime(timezone=True), nullable=False),
    Column("source", String(128), nullable=False),
    Column("title", String(200), nullable=False),
    Column("message", Text, nullable=False),
    Column("severity", String(8), nullable=False),
    Column("data", Text, nullable=False),  # the JSON object as text
    Column("stored_at", DateTime(timezone=True), nullable=False),
    # Exactly once: a redelivered message (same epoch and seq) or a republished id is ignored.
    UniqueConstraint("epoch", "seq"),
    UniqueConstraint("id"),
    # Visibility: tenant and audience first, newest first within them. On PostgreSQL it also
    # carries what counts read (severity, domain; epoch and seq for the counted bound), so a
    # count is an index-only scan per audience, not one heap page per visible row (revision
    # 0003; docs/decisions.md: "Counts from the index").
    Index(
        "ix_notifications_visible",
        "tenant",
        "audience_kind",
        "audience_name",
        "pk",
        postgresql_include=["severity", "domain", "epoch", "seq"],
    ),
    # Retention by age: the old rows, without reading the young ones (revision 0002).
    Index(None, "stored_at"),
)

# One row per (user, notification) the user changed; absent = follow the user's marks.
inbox_state = Table(
    "inbox_state",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("user", String(64), primary_key=True),
    Column(
        "notification",
        Pk,
        ForeignKey("notifications.pk", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("read", Boolean, nullable=True),  # NULL: read iff pk <= the user's read mark
    Column("seen", Boolean, nullable=True),  # NULL: seen iff pk <= the user's seen mark
    Column("archived", Boolean, nullable=False, default=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "notification"),
)

# One row per user who marked all: every notification with pk <= the mark counts as read/seen.
inbox_marks = Table(
    "inbox_marks",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("user", String(64), primary_key=True),
    Column("read_upto", BigInteger, nullable=False, default=0),
    Column("seen_upto", BigInteger, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Messages of the stream that are not valid notifications: kept for an operator, never stored
# half in `notifications`; acked like the rest so they do not block the consumer.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("pk", Pk, primary_key=True, autoincrement=True),
    Column("epoch", String(16), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("subject", String(512), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("epoch", "seq"),
)


# How far each writer knows the stream to be stored without a gap (revision 0003): the
# consumer's ack floor when it last looked (every message up to it was committed, then acked).
# Counts include exactly what is stored up to the highest ``upto`` of the newest epoch and say
# so in their ``seq``, however many writers commit out of order (tidings.inbox.queries).
progress = Table(
    "inbox_progress",
    metadata,
    Column("writer", String(64), primary_key=True),
    Column("epoch", String(16), nullable=False),
    Column("upto", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Preferences (revision 0002): one row per (domain, channel) someone set; absent = not set.
# A tenant admin's defaults, then each user's overrides; what neither sets is on
# (tidings.inbox.preferences).
preference_defaults = Table(
    "inbox_preference_defaults",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("domain", String(32), primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

preferences = Table(
    "inbox_preferences",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("user", String(64), primary_key=True),
    Column("domain", String(32), primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Retention per tenant (revision 0002); a NULL column follows the global setting
# (TIDINGS_INBOX_RETENTION_*), 0 keeps without limit (tidings.inbox.retention).
retention = Table(
    "inbox_retention",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("max_age_days", Integer, nullable=True),
    Column("max_items", Integer, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
