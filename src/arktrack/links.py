"""Which links get tracked, and what a rewrite reports about each one.

The HTML and the plain-text rewriters find links in their own way, then apply the same
:class:`Options` to each, so both skip the same links for the same reasons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypedDict
from urllib.parse import urlsplit

from .errors import ConfigError

PixelPosition = Literal["end", "start"]

#: What a tracking URL may be made of: URL characters that need no escaping in an HTML
#: attribute, whatever its quoting, so that putting one in cannot break the markup.
URL_SAFE = re.compile(r"[A-Za-z0-9\-_.~:/%\[\]@+!$()*,;]+")

#: Why a link was left as written.
SkipReason = Literal[
    "clicks-off",  # track_clicks=False
    "opt-out",  # data-no-track or another provider's opt-out attribute
    "not-http",  # mailto:, tel:, sms:, javascript:, data:, ...
    "fragment",  # "#top"
    "relative",  # a relative link with no <base href> to resolve it against
    "empty",  # href="" or an href with no value
    "placeholder",  # an unrendered template tag such as {{ url }}
    "unsubscribe",  # recipients' way out must not depend on the tracker
    "excluded-domain",  # in exclude_domains
    "too-long",  # over 2,048 characters once tracked (Outlook's limit)
    "unencodable",  # undecodable bytes or NUL in the URL
    "already-tracked",  # a link of this tracker's: the body was rewritten before
]


@dataclass(frozen=True, slots=True)
class LinkReport:
    """One link a rewrite met: tracked (``tracking_url`` set) or skipped (``skipped``
    says why)."""

    #: Where the link goes, as a mail client would follow it: character references
    #: decoded, surrounding whitespace trimmed, resolved against ``<base href>``.
    destination: str
    tracking_url: str | None = None
    skipped: SkipReason | None = None

    @property
    def tracked(self) -> bool:
        return self.tracking_url is not None


@dataclass(frozen=True, slots=True)
class RewriteReport:
    """What a rewrite produced and did: ``text`` is the rewritten HTML or plain text."""

    text: str
    links: tuple[LinkReport, ...]
    #: Whether the open pixel was inserted.
    pixel: bool = False

    @property
    def tracked(self) -> tuple[LinkReport, ...]:
        return tuple(link for link in self.links if link.tracked)

    @property
    def skipped(self) -> tuple[LinkReport, ...]:
        return tuple(link for link in self.links if not link.tracked)


class MessageReport(NamedTuple):
    """What ``rewrite_message`` did to each body part; None for a part that is missing
    or could not be decoded, and was left as it was."""

    html: RewriteReport | None
    text: RewriteReport | None


# The openers of the placeholder syntaxes mailers' template languages use. A link holding
# one was not rendered yet: tracking it would freeze the placeholder into the signed URL.
# Openers alone are enough, and also catch a placeholder that a space cut in two
# ("https://x.example/?u={{ id }}" in plain text).
_PLACEHOLDER = re.compile(
    r"""
      \{\{ | \{%                  # Handlebars, Mustache, Jinja, Liquid, Django
    | \*\|                        # Mailchimp merge tags: *|UNSUB|*
    | %recipient[\w.]*%          # Mailgun recipient variables: %recipient.first%
    | %%[A-Za-z_]                 # Salesforce Marketing Cloud: %%emailaddr%%
    | %[A-Za-z_]+\.[\w.]+%         # other dotted %name.field% variables
    | %[a-z_]*unsubscribe_url%     # Mailgun's %unsubscribe_url% family
    | \[\[                        # [[x]]
    | <%                           # ERB, EJS, ASP, SendGrid's <%asm_..._url%>
    | \$\{                        # ${x}: JavaScript, FreeMarker, Thymeleaf
    """,
    re.VERBOSE,
)

# English first, then the words of the most common mail languages. False positives only
# leave a link untracked; a false negative could leave a recipient's way out depending on
# the tracker. Matched against casefolded text: with re.IGNORECASE the engine cannot skip
# ahead to the letters an alternative starts with, and every link paid 8 times as much.
_UNSUBSCRIBE = re.compile(
    r"unsub|opt[\s_-]?out|abmelden|abbestellen|d[ée]sabonn|d[ée]sinscri|"
    r"darse\s+de\s+baja|cancelar\s+(?:la\s+)?suscripci|disiscri|afmelden|uitschrijven"
)


def has_placeholder(value: str) -> bool:
    return _PLACEHOLDER.search(value) is not None


def is_unsubscribe(destination: str, text: str | None) -> bool:
    return _UNSUBSCRIBE.search(destination.casefold()) is not None or (
        text is not None and _UNSUBSCRIBE.search(text.casefold()) is not None
    )


_NOT_IN_A_DOMAIN = re.compile(r"[\s/:@?#]")


def _domains(value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError("exclude_domains", f"takes a list of domains, got {value!r}")
    domains = set()
    for domain in value:
        if not isinstance(domain, str) or _NOT_IN_A_DOMAIN.search(domain):
            raise ConfigError("exclude_domains", f"{domain!r} is not a domain name")
        try:
            normalized = normalize_domain(domain)
        except UnicodeError:
            raise ConfigError("exclude_domains", f"{domain!r} is not a domain name") from None
        if not normalized:
            raise ConfigError("exclude_domains", "holds an empty domain")
        domains.add(normalized)
    return frozenset(domains)


def normalize_domain(domain: str) -> str:
    """``"News.Example.COM."`` -> ``"news.example.com"``; an IDN in its ASCII form."""
    domain = domain.strip().rstrip(".").lower()
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    return domain


class RewriteOptions(TypedDict, total=False):
    """The per-call options of every ``rewrite_*`` function and method."""

    #: Insert the open pixel (HTML only). Default True.
    track_opens: bool
    #: Send links through the click redirect. Default True.
    track_clicks: bool
    #: Hosts whose links stay as written, each with its subdomains.
    exclude_domains: Iterable[str]
    #: Leave unsubscribe and opt-out links untracked. Default True.
    skip_unsubscribe: bool
    #: ``"end"`` puts the pixel before ``</body>``, ``"start"`` right after ``<body>``.
    pixel_position: PixelPosition


@dataclass(frozen=True, slots=True)
class Options:
    """:class:`RewriteOptions`, checked, with the skip rules they imply."""

    track_opens: bool = True
    track_clicks: bool = True
    exclude_domains: frozenset[str] = frozenset()
    skip_unsubscribe: bool = True
    pixel_position: PixelPosition = "end"

    @classmethod
    def of(cls, options: RewriteOptions) -> Options:
        if not options:
            return _DEFAULTS  # the usual call, and a tenth of the cost
        unknown = options.keys() - cls.__dataclass_fields__.keys()
        if unknown:
            raise TypeError(f"unknown rewrite option(s): {', '.join(sorted(unknown))}")
        flags: dict[str, bool] = {}
        for name in ("track_opens", "track_clicks", "skip_unsubscribe"):
            value = options.get(name, True)
            if not isinstance(value, bool):
                # bool("false") is True: a sensitive mail must not be tracked by a typo.
                raise ConfigError(name, f"must be True or False, got {value!r}")
            flags[name] = value
        position = options.get("pixel_position", "end")
        if position not in ("end", "start"):
            raise ConfigError("pixel_position", f'must be "end" or "start", got {position!r}')
        return cls(
            track_opens=flags["track_opens"],
            track_clicks=flags["track_clicks"],
            exclude_domains=_domains(options.get("exclude_domains", ())),
            skip_unsubscribe=flags["skip_unsubscribe"],
            pixel_position=position,
        )

    def skip_reason(self, destination: str, text: str | None = None) -> SkipReason | None:
        """Why an absolute http(s) destination without placeholders must not be tracked,
        or None."""
        if self.skip_unsubscribe and is_unsubscribe(destination, text):
            return "unsubscribe"
        if self.exclude_domains and self._is_excluded(destination):
            return "excluded-domain"
        return None

    def _is_excluded(self, destination: str) -> bool:
        try:
            host = urlsplit(destination).hostname
            if not host:
                return False
            host = normalize_domain(host)
        except (ValueError, UnicodeError):
            return False
        while True:
            if host in self.exclude_domains:
                return True
            _, dot, host = host.partition(".")
            if not dot:
                return False


_DEFAULTS = Options()
