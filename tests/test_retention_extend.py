"""`sm retention extend` on moto's S3 with object lock (SPEC 9.4): a later retain-until date is
set on each matching version; an earlier one (or a past one) is a usage error that changes
nothing; a folder, which keeps no retention, says so.

moto's GetObjectRetention answers 500 for these objects, so the dates are read with
HeadObject (`ObjectLockRetainUntilDate`), which reports the same retention."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.fixtures.core import jsonl, mixed_messages
from tests.test_holds import PROJECT, locked_bucket  # noqa: F401 - the fixture

Invoke = Callable[..., Any]


def retained(s3_client: Any, bucket: str, keys: dict[str, str]) -> dict[str, datetime]:
    return {message_id: s3_client.head_object(Bucket=bucket, Key=key)[
        "ObjectLockRetainUntilDate"].astimezone(UTC) for message_id, key in keys.items()}


def test_extend_sets_a_later_date_and_never_a_shorter_one(
        cli: Invoke, locked_bucket: str, moto_endpoint: str,  # noqa: F811
        s3_client: Any) -> None:
    connected = cli("connect", f"s3://{locked_bucket}/archive/", "--project", PROJECT,
                    "--endpoint-url", moto_endpoint, "--allow-insecure-endpoint",
                    "--retention-days", "1", "--retention-mode", "governance")
    assert connected.exit_code == 0, connected.output
    made = mixed_messages(4, lambda i: f"r-{i}")
    for index, message in enumerate(made):
        message["campaign_id"] = "spring" if index < 2 else "autumn"
    assert cli("ingest", input=jsonl(*made)).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    keys = {f["message_id"]: f["key"] for f in json.loads(cli("--json", "find").stdout)}
    before = retained(s3_client, locked_bucket, keys)

    extended = cli("--json", "retention", "extend", "--project", PROJECT, "--campaign",
                   "spring", "--until", "2031-06-30")
    assert extended.exit_code == 0, extended.output
    assert json.loads(extended.stdout)["extended"] == 2
    after = retained(s3_client, locked_bucket, keys)
    end = datetime(2031, 6, 30, 23, 59, 59, tzinfo=UTC)
    assert {m: d.replace(microsecond=0) for m, d in after.items() if m in ("r-0", "r-1")} == {
        "r-0": end, "r-1": end}
    assert {m: after[m] for m in ("r-2", "r-3")} == {m: before[m] for m in ("r-2", "r-3")}
    modes = {s3_client.head_object(Bucket=locked_bucket, Key=keys[m])["ObjectLockMode"]
             for m in keys}
    assert modes == {"GOVERNANCE"}

    shorter = cli("retention", "extend", "--project", PROJECT, "--campaign", "spring",
                  "--until", "2030-01-01")
    assert shorter.exit_code == 2
    assert "never shortened" in shorter.output
    assert retained(s3_client, locked_bucket, keys) == after  # nothing changed

    past = cli("retention", "extend", "--project", PROJECT, "--until", "2001-01-01")
    assert past.exit_code == 2
    assert retained(s3_client, locked_bucket, keys) == after

    same = cli("--json", "retention", "extend", "--project", PROJECT, "--campaign", "spring",
               "--until", "2031-06-30")
    assert same.exit_code == 0, same.output
    assert (json.loads(same.stdout)["extended"], json.loads(same.stdout)["unchanged"]) == (0, 2)


def test_a_folder_keeps_no_retention_to_extend(cli: Invoke, tmp_path: Path,
                                               make_message: Callable[..., Any]) -> None:
    assert cli("connect", f"file://{tmp_path}/archive/", "--project", PROJECT).exit_code == 0
    assert cli("ingest", input=jsonl(make_message())).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    refused = cli("retention", "extend", "--project", PROJECT, "--until", "2031-01-01")
    assert refused.exit_code == 1
    assert "keeps no retention" in refused.output
    assert "not extended" not in refused.output  # refused before any object is tried
