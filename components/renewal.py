"""Certificate renewal you can see in a plan: a replacement trigger keyed on the date.

A generated certificate carries `replacement_trigger=renewal_window(validity)`: the
label changes every half validity, so the first `pulumi up` in a new window replaces
the certificate (the plan shows it as a replace with the trigger as the reason). With
`pulumi up` run at least once per half validity, no certificate gets older than its
validity. This replaces terraform-provider-tls' `early_renewal_hours`, which only works
through plan modification in the Pulumi bridge (pulumi-tls #39) and cannot be tested
offline.

RANCHER_HA_TODAY (YYYY-MM-DD) pins the date, for tests and reproducible renders.
"""

from __future__ import annotations

import datetime
import os
from typing import Optional

EPOCH = datetime.date(2026, 1, 1)


def today() -> datetime.date:
    pinned = os.environ.get("RANCHER_HA_TODAY")
    return datetime.date.fromisoformat(pinned) if pinned else datetime.date.today()


def renewal_window(validity_hours: int, on: Optional[datetime.date] = None) -> str:
    """A label that changes every validity/2, e.g. 'renew-2026-07-02' (the window's start)."""
    period = datetime.timedelta(hours=validity_hours) // 2
    day = on or today()
    index = (day - EPOCH) // period
    start = EPOCH + index * period
    return f"renew-{start.isoformat()}"
