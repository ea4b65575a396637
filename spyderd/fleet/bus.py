"""Connection settings for the NATS bus, shared by the exporter, stitcher and spyderctl.

nats-py is imported lazily by the callers: a host without `fleet.url` never loads it.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from dataclasses import dataclass
from typing import Any

from spyderd.common.config import FleetConfig, load_config


@dataclass(frozen=True, slots=True)
class BusConfig:
    url: str = ""
    name: str = ""
    user: str = ""
    password: str = ""
    token: str = ""
    creds: str = ""  # a NATS .creds file (JWT + nkey seed)
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @classmethod
    def from_section(cls, sec: FleetConfig) -> BusConfig:
        """The connection part of the config's `fleet:` section."""
        return cls(**{k: str(getattr(sec, k) or "") for k in cls.__slots__})

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for nats.connect: reconnect forever, credentials, TLS."""
        opts: dict[str, Any] = {"servers": [u.strip() for u in self.url.split(",") if u.strip()],
                                "name": f"spyderd:{self.name}", "max_reconnect_attempts": -1,
                                "reconnect_time_wait": 0.5, "connect_timeout": 2,
                                "allow_reconnect": True}
        if self.user:
            opts.update(user=self.user, password=self.password)
        if self.token:
            opts["token"] = self.token
        if self.creds:
            opts["user_credentials"] = self.creds
        if self.tls_ca or self.tls_cert:
            ctx = ssl.create_default_context(cafile=self.tls_ca or None)
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key or None)
            opts["tls"] = ctx
        return opts


async def ensure_stream(js, duplicate_window: float = 120.0) -> None:
    """Create the SPYDER stream if it is missing (hosts without the right just use it)."""
    from nats.js.errors import NotFoundError

    from spyderd.fleet import messages as m

    try:
        await js.stream_info(m.STREAM)
    except NotFoundError:
        await js.add_stream(name=m.STREAM, subjects=[f"{m.PREFIX}.>"],
                            duplicate_window=duplicate_window, storage="file")


async def ensure_peers(js):
    """The key-value bucket where the stitcher keeps peer edges (conn id -> other end)."""
    from nats.js.errors import BucketNotFoundError, NotFoundError

    from spyderd.fleet import messages as m

    try:
        return await js.key_value(m.PEERS_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(bucket=m.PEERS_BUCKET, history=1)


def secret_problem(config_path: str, sec: FleetConfig) -> str:
    """Why the broker credentials are not safe where they are ('' when they are):
    a password or token in a world-readable config, or a world-readable .creds file."""

    def world_readable(path: str) -> bool:
        try:
            return bool(os.stat(path).st_mode & 0o004)
        except OSError:
            return False

    if (sec.password or sec.token) and world_readable(config_path):
        return (f"{config_path} holds fleet credentials but is world-readable "
                f"(chmod 640 {config_path}; group spyder)")
    if sec.creds and world_readable(sec.creds):
        return f"credentials file {sec.creds} is world-readable (chmod 600)"
    return ""


def bus_from_config(path: str | None) -> BusConfig | None:
    """The `fleet:` section of a spyderd config as a BusConfig; None when fleet.url is unset."""
    sec = load_config(path).fleet
    if not sec.url:
        return None
    return BusConfig.from_section(dataclasses.replace(sec, name=sec.name or os.uname().nodename))
