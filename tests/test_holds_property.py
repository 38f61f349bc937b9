"""A property of overlapping cases (hypothesis, on a folder destination): after any sequence of
cases opened and released, an object's store hold is on exactly when an open case covers it,
and the log has one `hold` entry per (case, object) applied and one `release` entry per
(case, object) released."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.evidence.holds import apply_holds, case_filters, open_case, release_case
from stored_messages_cli.message import sha256_hex
from stored_messages_cli.spool import Spool
from tests.support.fixtures.core import connected_folder

PROJECT = "12345"
CAMPAIGNS = ("a", "b", "c")
OBJECTS = 6  # object i is in campaign CAMPAIGNS[i % 3]

# a step: ("open", campaign) or ("release", campaign); a case per campaign, opened once
steps = st.lists(st.tuples(st.sampled_from(["open", "release"]), st.sampled_from(CAMPAIGNS)),
                 max_size=8)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_a_hold_is_on_exactly_while_an_open_case_covers_the_object(
        plan: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        destination = connected_folder(f"file://{root / 'archive'}/")
        keys = []
        for index in range(OBJECTS):
            key = f"email/{PROJECT}/h/{CAMPAIGNS[index % 3]}/m-{index}.json.gz"
            body = gzip.compress(b"{}", mtime=0)
            destination.put(key, body, sha256_hex(b"{}"))
            keys.append(key)
        with Spool(root / "spool.db", clock=FakeClock()) as spool:
            spool.index.add_learnt([
                ((PROJECT, f"m-{i}", "email", "blast", CAMPAIGNS[i % 3], "h",
                  "2026-11-01T09:00:00Z", key, "ab" * 32, None, destination.url, None), ["h"])
                for i, key in enumerate(keys)])
            opened: set[str] = set()
            released: set[str] = set()
            for action, campaign in plan:
                if action == "open" and campaign not in opened:
                    open_case(spool, destination, campaign, PROJECT,
                              case_filters(campaign_id=campaign))
                    opened.add(campaign)
                elif action == "release" and campaign in opened - released:
                    release_case(spool, campaign)
                    released.add(campaign)
                apply_holds(spool, {PROJECT: destination}, workers=2)
            covering = opened - released
            for index, key in enumerate(keys):
                assert destination.legal_hold(key, None) == (CAMPAIGNS[index % 3] in covering)
            outcomes = [o for _m, o, _k in spool.evidence.open_outcomes(PROJECT)]
            per_case = OBJECTS // len(CAMPAIGNS)
            assert outcomes.count("hold") == per_case * len(opened)
            assert outcomes.count("release") == per_case * len(released)
        destination.close()
