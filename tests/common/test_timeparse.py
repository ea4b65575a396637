"""--since/--until values as journalctl takes them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from spyderd.common.timeparse import parse_span, parse_when
from spyderd.errors import ConfigError

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
MIDNIGHT = datetime.fromtimestamp(NOW).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.mark.parametrize(("text", "expected"), [
    ("-1h", NOW - 3600),
    ("-1h30min", NOW - 5400),
    ("-2 days", NOW - 2 * 86400),
    ("-1w 2d", NOW - 9 * 86400),
    ("+5min", NOW + 300),
    ("90s ago", NOW - 90),
    ("2 hours ago", NOW - 7200),
    ("in 10s", NOW + 10),
    ("-500ms", NOW - 0.5),
    ("now", NOW),
    ("today", MIDNIGHT.timestamp()),
    ("yesterday", (MIDNIGHT - timedelta(days=1)).timestamp()),
    ("tomorrow", (MIDNIGHT + timedelta(days=1)).timestamp()),
    ("yesterday 13:30", (MIDNIGHT - timedelta(days=1, hours=-13, minutes=-30)).timestamp()),
    ("12:30", (MIDNIGHT + timedelta(hours=12, minutes=30)).timestamp()),
    ("@1700000000.5", 1_700_000_000.5),
    ("2023-11-14T22:13:20Z", NOW),
    ("2023-11-14T23:13:20+01:00", NOW),
    ("2023-11-14 22:13:20 UTC", NOW),
    ("2023-11-14", datetime(2023, 11, 14).timestamp()),
    ("2023-11-14 08:00", datetime(2023, 11, 14, 8).timestamp()),
])
def test_accepted_forms(text, expected):
    assert parse_when(text, now=NOW) == pytest.approx(int(expected * 1e9), abs=1000)


@pytest.mark.parametrize("text", ["", "-1 fortnight", "someday", "25:00", "@x", "-h",
                                  "2023-13-01", "1h", "yesterday noon"])
def test_rejected_forms_say_what_is_expected(text):
    with pytest.raises(ConfigError, match="cannot parse time .*expected e.g. -1h"):
        parse_when(text, now=NOW)


def test_month_and_minute_units_differ():
    assert parse_span("1M") == 2_629_800 and parse_span("1m") == 60 and parse_span("1MIN") == 60


def test_spyderctl_takes_negative_times_as_values():
    from spyderd.ctl.cli import _glue_time_values, build_parser

    argv = ["findings", "--since", "-1h", "-U", "-5min", "--rule", "x"]
    args = build_parser().parse_args(_glue_time_values(argv))
    assert (args.since, args.until, args.rule) == ("-1h", "-5min", ["x"])
