"""One validated settings object, the single source of truth for a :class:`Tracker`.

Adapters read ``ARKTRACK_*`` from the environment (or a Flask ``app.config``) and hand the
values over; every error names the setting the way its source spells it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .links import URL_SAFE

DEFAULT_STORAGE = "sqlite:///arktrack.db"
# Shorter keys are guessable or placeholders left in by accident ("secret", "changeme").
MIN_SECRET_LENGTH = 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Keyword argument -> environment variable, so errors can name what the user actually set.
ENV_NAMES = {
    "secret_key": "ARKTRACK_SECRET_KEY",
    "base_url": "ARKTRACK_BASE_URL",
    "storage": "ARKTRACK_STORAGE",
    "trusted_proxies": "ARKTRACK_TRUSTED_PROXIES",
}


@dataclass(frozen=True)
class Settings:
    secret_keys: tuple[str, ...]
    base_url: str
    path_prefix: str
    trusted_proxies: tuple[Network, ...]


def validate(
    *,
    secret_key: str | Sequence[str] | None,
    base_url: str | None,
    trusted_proxies: str | Sequence[str] = (),
    names: Mapping[str, str] | None = None,
) -> Settings:
    """Check the settings and return them normalised. ``names`` maps each keyword to the
    name shown in errors (the environment variable, when that is where a value came from)."""
    name = {key: key for key in ENV_NAMES} | dict(names or {})
    return Settings(
        secret_keys=_secret_keys(secret_key, name["secret_key"]),
        base_url=_base_url(base_url, name["base_url"]),
        path_prefix=urlsplit(base_url or "").path.rstrip("/"),
        trusted_proxies=_networks(trusted_proxies, name["trusted_proxies"]),
    )


def from_mapping(
    config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Collect ``ARKTRACK_*`` values by keyword name: ``config`` (a Flask ``app.config``,
    where a list of keys may stand for a comma-separated string) first, then the
    environment. Settings found in neither are left out."""
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for key, env_name in ENV_NAMES.items():
        value = config.get(env_name) if config is not None else None
        if value is None:
            value = environ.get(env_name)
        if value is not None:
            found[key] = value
    return found


def split_list(value: str | Sequence[str]) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; a sequence passes through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


def _secret_keys(value: str | Sequence[str] | None, name: str) -> tuple[str, ...]:
    if value is None or value == "":
        raise ConfigError(
            name,
            "is required: a long random string (python -c "
            "'import secrets; print(secrets.token_urlsafe(32))')",
        )
    if not isinstance(value, (str, list, tuple)):
        raise ConfigError(name, f"must be a string or a list of strings, got {value!r}")
    keys = split_list(value) if isinstance(value, str) else list(value)
    if not keys:
        raise ConfigError(name, "needs at least one key")
    for key in keys:
        if not isinstance(key, str):
            raise ConfigError(name, f"keys must be strings, got {type(key).__name__}")
        if len(key) < MIN_SECRET_LENGTH:
            raise ConfigError(name, f"each key needs at least {MIN_SECRET_LENGTH} characters")
    return tuple(keys)


def _base_url(value: str | None, name: str) -> str:
    if not value:
        raise ConfigError(
            name,
            "is required: the public URL where /o and /c are served, "
            "e.g. https://track.example.com",
        )
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a URL string, got {value!r}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigError(name, f"is not a valid URL ({exc}): {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, f"must be an absolute http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ConfigError(name, f"must not carry a query or fragment, got {value!r}")
    if not value.isascii():
        hint = (
            f"write the host as {_ascii_host(parts.hostname)!r}"
            if not parts.hostname.isascii()
            else "percent-encode the path"
        )
        raise ConfigError(name, f"must be ASCII: {hint}, got {value!r}")
    if not URL_SAFE.fullmatch(value):
        raise ConfigError(
            name,
            "may hold only letters, digits and -_.~:/%[]@+!$()*,; (tracking links go into "
            f"HTML attributes as they are), got {value!r}",
        )
    return value.rstrip("/")


def _ascii_host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return "its punycode (xn--) form"


def _networks(value: str | Sequence[str] | None, name: str) -> tuple[Network, ...]:
    if value is not None and not isinstance(value, (str, list, tuple)):
        raise ConfigError(name, f"must be a string or a list of addresses, got {value!r}")
    networks = []
    for item in split_list(value or ()):
        if not isinstance(item, str):
            raise ConfigError(name, f"{item!r} is not an IP address or network")
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(name, f"{item!r} is not an IP address or network") from None
    return tuple(networks)
