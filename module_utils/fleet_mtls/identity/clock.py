# -*- coding: utf-8 -*-
"""The device clock against the provisioning API's: checked before anything is minted or
rotated, because a certificate made on a clock that is ahead is refused as "not valid yet"
(and the next run would try again, forever), and one made on a clock that is behind expires
early."""
from __future__ import annotations

import datetime
import email.utils

from ansible.module_utils.fleet_mtls.errors import ClockError

UTC = datetime.timezone.utc
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def describe_span(span):
    """'340 days', '3 hours', '1 minute' for a timedelta or a number of seconds."""
    seconds = abs(span.total_seconds() if isinstance(span, datetime.timedelta) else span)
    name, size = next((unit for unit in _UNITS if seconds >= unit[1]), _UNITS[-1])
    count = int(round(seconds / size))
    return "%d %s%s" % (count, name, "" if count == 1 else "s")


def server_date(client):
    """The server's time (an aware datetime), or None when it cannot be had."""
    reader = getattr(client, "server_date", None)
    if reader is not None:
        return reader()
    return _server_date_of_any_answer(client)


def _server_date_of_any_answer(client):
    # TODO(lead): ProvisioningClient.server_date() is being written in the API client's branch
    # (a cheap request that reserves nothing, with clear TLS errors); drop this stand-in once it
    # is merged. Any answer carries a Date header, so a HEAD of the API root is enough.
    try:
        resp = client.session.head(client.base + "/", timeout=client.timeout, allow_redirects=False,
                                   verify=client.verify)
    except Exception:  # noqa: BLE001 - unknown server time: the requests that follow say why
        return None
    with resp:
        value = resp.headers.get("Date")
    try:
        when = email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        return None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def check_clock(client, now, max_skew):
    """Raise ClockError when ``now`` (the device clock) is more than ``max_skew`` seconds away
    from the server's; returns the skew in seconds, or None when the server's time is unknown."""
    server = server_date(client)
    if server is None:
        return None
    skew = (now - server).total_seconds()
    if abs(skew) <= max_skew:
        return skew
    raise ClockError(
        "the device clock is %s %s the provisioning API (server Date: %s): fix the clock (NTP); "
        "nothing was changed" % (describe_span(skew), "ahead of" if skew > 0 else "behind",
                                 email.utils.format_datetime(server.astimezone(UTC), usegmt=True))
    )
