from __future__ import annotations

import ipaddress

import pytest

from arktrack.clientip import client_ip

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        pytest.param("203.0.113.5", None, PROXIES, "203.0.113.5", id="direct"),
        pytest.param("203.0.113.5", "1.2.3.4", PROXIES, "203.0.113.5", id="untrusted-peer-lies"),
        pytest.param("10.0.0.2", "198.51.100.1", PROXIES, "198.51.100.1", id="one-proxy"),
        pytest.param(
            "10.0.0.2",
            "6.6.6.6, 198.51.100.1, 10.0.0.9",
            PROXIES,
            "198.51.100.1",
            id="spoofed-left-part-ignored",
        ),
        pytest.param("10.0.0.2", "10.0.0.7, 10.0.0.9", PROXIES, "10.0.0.7", id="all-trusted"),
        pytest.param(
            "10.0.0.2", "garbage, 198.51.100.1", PROXIES, "198.51.100.1", id="garbage-left"
        ),
        pytest.param("10.0.0.2", "198.51.100.1, garbage", PROXIES, "10.0.0.2", id="garbage-right"),
        pytest.param("::1", "2001:db8::1", PROXIES, "2001:db8::1", id="ipv6"),
        pytest.param("10.0.0.2", "198.51.100.1", (), "10.0.0.2", id="no-trusted-proxies"),
        pytest.param(None, "198.51.100.1", PROXIES, None, id="no-peer"),
    ],
)
def test_client_ip(
    peer: str | None,
    forwarded: str | None,
    trusted: tuple[ipaddress.IPv4Network, ...],
    expected: str | None,
) -> None:
    assert client_ip(peer, forwarded, trusted) == expected
