"""The client's IP address, honouring ``X-Forwarded-For`` only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from .settings import Network


def client_ip(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]
) -> str | None:
    """Walk ``X-Forwarded-For`` from the right, the way the proxies appended it, past every
    trusted hop; the first untrusted address is the client. Anything left of it could have
    been written by the client itself, so it is never believed."""
    if not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            # A malformed hop breaks the chain; the last good address is all we know.
            return client
        client = hop
        if not _is_trusted(hop, trusted):
            return hop
    return client


def _is_trusted(address: str | None, trusted: Sequence[Network]) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
