# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device clock against the provisioning API's: checked before anything is minted or
rotated, because a certificate made on a clock that is ahead is refused as "not valid yet"
(and the next run would try again, forever), and one made on a clock that is behind expires
early."""
from __future__ import annotations

import datetime
import email.utils

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, ClockError

UTC = datetime.timezone.utc
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def describe_span(span):
    """'340 days', '3 hours', '1 minute' for a timedelta or a number of seconds."""
    seconds = abs(span.total_seconds() if isinstance(span, datetime.timedelta) else span)
    name, size = next((unit for unit in _UNITS if seconds >= unit[1]), _UNITS[-1])
    count = int(round(seconds / size))
    return "%d %s%s" % (count, name, "" if count == 1 else "s")


def check_clock(client, now, max_skew):
    """Raise ClockError when ``now`` (the device clock) is more than ``max_skew`` seconds away
    from the server's; returns the skew in seconds, or None when the server's time is unknown."""
    try:
        server = client.server_date()
    except ApiError:
        return None  # the server cannot be asked: the request that follows says why, in its own words
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
