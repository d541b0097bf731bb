"""The availability chart: 24 h, 7 d and 30 d, where one failed check shows red and slow answers amber."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import time_machine

from core.extensions import db
from inventory.models import Asset
from inventory.verification.charts import DEGRADED_COLOUR, FAIL_COLOUR, OK_COLOUR, node_chart_svg
from inventory.verification.summary import node_summary
from tests.inventory.verification.test_verification import OK, REFUSED, feed

END = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


def slices(svg: str, colour: str) -> int:
    """How many strip slices are drawn in ``colour``."""
    return len(re.findall(rf'<rect [^>]*fill="{colour}" class="slice-', svg))


def test_one_failed_check_among_thirty_days_of_checks_is_a_red_slice(app):
    every = timedelta(minutes=5)
    points = [(END - timedelta(days=30) + every * i, 12.0, True) for i in range(30 * 24 * 12)]
    failed_at = END - timedelta(days=12, minutes=2)
    points.append((failed_at, 3.0, False))
    points.append((END - timedelta(days=3), 900.0, True))  # one slow answer
    with app.app_context():
        svg = str(node_chart_svg(points, end=END, span=timedelta(days=30), threshold_ms=500))
    assert slices(svg, FAIL_COLOUR) == 1
    assert slices(svg, DEGRADED_COLOUR) == 1
    assert slices(svg, OK_COLOUR) > 100
    red = re.search(rf'<rect x="([\d.]+)" [^>]*width="([\d.]+)" [^>]*fill="{FAIL_COLOUR}"', svg)
    assert red and float(red.group(2)) >= 3, "a failure is at least 3 units wide at 30 days"
    assert "last 30 days" in svg and "8642 checks, 1 failed" in svg


def test_three_failures_out_of_ten_are_three_red_slices_not_a_sliver(app):
    points = [(END - timedelta(hours=20) + timedelta(hours=2) * i, 10.0, i not in (2, 5, 8))
              for i in range(10)]
    with app.app_context():
        svg = str(node_chart_svg(points, end=END, span=timedelta(hours=24), threshold_ms=500))
    assert slices(svg, FAIL_COLOUR) == 3 and slices(svg, OK_COLOUR) == 7


def test_the_node_page_offers_24_hours_7_days_and_30_days(app, make_node, login_as, client):
    asset_id = make_node("CT-01", 104)
    feed(app, asset_id, OK, END - timedelta(days=20))
    feed(app, asset_id, REFUSED, END - timedelta(days=5))
    with time_machine.travel(END, tick=False), app.app_context():
        month = str(node_summary(db.session.get(Asset, asset_id), "30d").chart_svg)
        week = str(node_summary(db.session.get(Asset, asset_id), "7d").chart_svg)
        day = str(node_summary(db.session.get(Asset, asset_id), "bogus").chart_svg)
    assert "2 checks, 1 failed" in month and "1 checks, 1 failed" in week and "No checks" in day
    with time_machine.travel(END, tick=False):
        login_as("technician", "pacs.sam")
        page = client.get("/assets/CT-01?range=7d").get_data(as_text=True)
    assert re.search(r'class="btn btn-outline-secondary active"\s+aria-current="true"\s+'
                     r'href="/assets/CT-01\?range=7d"', page)
    assert "/assets/CT-01?range=30d" in page and "/assets/CT-01?range=24h" in page
