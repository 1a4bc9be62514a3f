"""The server's database: API keys (hashed) and one usage row per request.

SQLite by default (WAL journal, full sync: a row is on disk when its commit returns); any
SQLAlchemy URL works, e.g. postgresql://... so that several server replicas share keys and usage.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (Column, Float, Integer, MetaData, String, Table, create_engine, event, func, insert, select,
                        update)

metadata = MetaData()
api_keys = Table(
    "api_keys", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("max_concurrency", Integer),  # None: the server's default
    Column("rpm", Integer),
)
usage = Table(
    "usage", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("day", String(10), nullable=False, index=True),
    Column("key_id", String(64), index=True),
    Column("model", String(200)),
    Column("task_id", String(64)),
    Column("endpoint", String(100)),
    Column("status", Integer, nullable=False),
    Column("error_code", String(16)),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("latency_ms", Float, nullable=False, default=0.0),
)


@dataclass
class KeyRecord:
    id: str
    name: str
    created_at: float
    revoked_at: float | None
    max_concurrency: int | None
    rpm: int | None


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def database_url(db: str) -> str:
    """A SQLAlchemy URL from --db: a URL is kept, anything else is a SQLite file path."""
    if "://" in db:
        return db
    path = Path(db).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class Store:
    def __init__(self, db: str):
        self.url = database_url(db)
        self.engine = create_engine(self.url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    # -- keys ----------------------------------------------------------------------------------

    def create_key(self, secret_key: bytes, name: str = "", max_concurrency: int | None = None,
                   rpm: int | None = None) -> str:
        """A new key `id.secret`. The secret is derived from the server secret, so the server can check
        the SDKs' JWTs (HMAC-signed with it) without storing it; the database keeps only its hash."""
        key_id = secrets.token_hex(16)
        secret = derive_secret(secret_key, key_id)
        with self.engine.begin() as conn:
            conn.execute(insert(api_keys).values(id=key_id, name=name, secret_sha256=sha256(secret),
                                                 created_at=time.time(), max_concurrency=max_concurrency, rpm=rpm))
        return f"{key_id}.{secret}"

    def revoke_key(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                  .values(revoked_at=time.time()))
        return result.rowcount > 0

    def keys(self) -> list[KeyRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [KeyRecord(r.id, r.name, r.created_at, r.revoked_at, r.max_concurrency, r.rpm) for r in rows]

    def active_key(self, key_id: str) -> tuple[KeyRecord, str] | None:
        """(the key, its secret's sha256) if it exists and is not revoked."""
        with self.engine.connect() as conn:
            r = conn.execute(select(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))).first()
        if r is None:
            return None
        return KeyRecord(r.id, r.name, r.created_at, r.revoked_at, r.max_concurrency, r.rpm), r.secret_sha256

    def has_active_keys(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(api_keys)
                                .where(api_keys.c.revoked_at.is_(None))).scalar() > 0

    # -- usage ---------------------------------------------------------------------------------

    def record(self, **row) -> None:
        now = time.time()
        row.setdefault("created_at", now)
        row.setdefault("day", datetime.fromtimestamp(row["created_at"], timezone.utc).strftime("%Y-%m-%d"))
        with self.engine.begin() as conn:
            conn.execute(insert(usage).values(**row))

    def usage_by_key_and_day(self, since_day: str | None = None) -> list[dict]:
        query = (select(usage.c.key_id, usage.c.day, func.count().label("requests"),
                        func.sum(usage.c.prompt_tokens).label("prompt_tokens"),
                        func.sum(usage.c.completion_tokens).label("completion_tokens"),
                        func.sum(usage.c.cached_tokens).label("cached_tokens"),
                        func.sum(usage.c.cost_usd).label("cost_usd"),
                        func.sum((usage.c.status >= 400).cast(Integer)).label("errors"))
                 .group_by(usage.c.key_id, usage.c.day).order_by(usage.c.day, usage.c.key_id))
        if since_day:
            query = query.where(usage.c.day >= since_day)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def usage_rows(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(usage).order_by(usage.c.id))]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def derive_secret(secret_key: bytes, key_id: str) -> str:
    return hmac.new(secret_key, key_id.encode(), hashlib.sha256).hexdigest()[:32]


def load_secret_key(path: Path, create: bool) -> bytes | None:
    """The server secret that API-key secrets are derived from (kept out of the database, mode 0600)."""
    path = Path(path).expanduser()
    if path.is_file():
        return bytes.fromhex(path.read_text().strip())
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(key.hex())
    return key
