"""Deleting refresh cookies that this app never set: cookie tossing from a sibling subdomain.

A page on ``evil.example.com`` can set ``refresh_token`` for ``Domain=example.com``, with a path of its
choosing. Browsers then send it to ``app.example.com`` beside the app's own cookie (first, when its
path is longer), to log the user out or to fix them into the attacker's session. The app's own cookie
is host-only (no ``Domain``) at exactly one path, so every other (domain, path) of that name is a
cookie this app did not set, and deleting it is always safe. A browser keys cookies by name, domain
and path, so the deletion names each parent domain (a sibling host can set cookies for those only)
and each path that is sent to the endpoints reading the cookie. A host with no parent domain
(``localhost``, an IP address) has no siblings, and gets no deletions.

Names with the ``__Host-`` prefix need none of this: browsers refuse such cookies with a ``Domain`` or
a path other than ``/`` (see SECURITY.md, *Cookie tossing*).
"""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers
from starlette.responses import Response

from .settings import SameSite, Settings


def delete_planted_cookies(response: Response, settings: Settings, headers: Headers, root_path: str) -> None:
    """Adds to ``response`` a deletion of each refresh cookie a sibling host could have planted:
    for every parent domain of the request's host, at every path sent to the refresh and logout
    endpoints, except the app's own cookie. Call it before the app's own ``Set-Cookie`` is added."""
    name = settings.cookie_name
    if name.startswith("__Host-"):
        return
    own = (settings.cookie_domain, settings.refresh_cookie_path(root_path))
    endpoints = [f"{root_path}{settings.prefix}/refresh", f"{root_path}{settings.prefix}/logout"]
    for domain in parent_domains(headers.get("host", "")):
        for path in _paths_sent_to(endpoints):
            if (domain, path) != own:
                _delete(response, settings, name, domain, path, settings.cookie_samesite)


def delete_planted_page_cookies(response: Response, settings: Settings, host: str, path: str) -> None:
    """Adds to ``response`` a deletion of each page cookie a sibling host could have planted and the
    browser sent with a request for ``path``: for every parent domain of ``host``, at every path
    sent to ``path``. The app's own page cookies are host-only, so none of these deletions can
    touch them (a ``__Host-`` name needs none: browsers refuse such a cookie with a ``Domain``)."""
    for name in (settings.page_cookie_name, settings.page_access_cookie_name):
        if name.startswith("__Host-"):
            continue
        for domain in parent_domains(host):
            for cookie_path in _paths_sent_to([path]):
                _delete(response, settings, name, domain, cookie_path, "lax")


def parent_domains(host: str) -> list[str]:
    """The parent domains of ``host`` (a Host header, port allowed) with at least two labels: the
    ``Domain`` values its sibling hosts may set cookies for. None for an IP address or a host of one
    or two labels. A public suffix (``co.uk``) may be among them; browsers ignore a cookie for it,
    so deleting one is harmless."""
    if host.startswith("["):  # an IPv6 literal
        return []
    hostname = host.rsplit(":", 1)[0].rstrip(".").lower()
    try:
        ipaddress.ip_address(hostname)
        return []
    except ValueError:
        pass
    labels = hostname.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels) - 1)]


def _paths_sent_to(endpoints: list[str]) -> list[str]:
    """Every cookie path a browser sends with a request to one of ``endpoints``: ``/`` and each
    whole-segment prefix, with and without its trailing slash (RFC 6265 section 5.1.4)."""
    paths = ["/"]
    for endpoint in endpoints:
        segments = endpoint.strip("/").split("/")
        for end in range(1, len(segments) + 1):
            prefix = "/" + "/".join(segments[:end])
            paths += [prefix, prefix + "/"] if end < len(segments) else [prefix]
    return list(dict.fromkeys(paths))


def _delete(
    response: Response, settings: Settings, name: str, domain: str, path: str, samesite: SameSite
) -> None:
    """A ``Set-Cookie`` that deletes cookie ``name`` set for ``domain`` at ``path``."""
    response.set_cookie(
        name,
        "",
        max_age=0,
        path=path,
        domain=domain,
        secure=settings.cookie_secure,
        httponly=True,
        samesite=samesite,
    )
