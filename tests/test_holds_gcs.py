"""Legal holds end to end on gcp-storage-emulator (taught GCS's temporary hold rule by the
session's fixture): `sm hold create` places temporary holds on the matching objects, `sm run`
holds a later match at upload, release lifts them, and a held object refuses deletion."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core.exceptions import Forbidden

from tests.support.fixtures.core import jsonl

PROJECT = "12345"


def test_temporary_holds_follow_the_case_on_gcs(
        cli: Callable[..., Any], gcs_client: Any, gcs_bucket: str,
        make_message: Callable[..., dict[str, Any]]) -> None:
    assert cli("connect", f"gs://{gcs_bucket}/archive/", "--project", PROJECT,
               "--allow-insecure-endpoint").exit_code == 0
    first = [make_message(message_id="g-1", campaign_id="spring"),
             make_message(message_id="g-2", campaign_id="autumn")]
    assert cli("ingest", input=jsonl(*first)).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    created = cli("--json", "hold", "create", "spring", "--project", PROJECT,
                  "--campaign", "spring")
    assert created.exit_code == 0, created.output
    assert cli("ingest", input=jsonl(make_message(message_id="g-3", campaign_id="spring"))
               ).exit_code == 0
    assert cli("run", "--once").exit_code == 0
    keys = {f["message_id"]: f["key"] for f in json.loads(cli("--json", "find").stdout)}
    bucket = gcs_client.bucket(gcs_bucket)

    def held() -> dict[str, bool]:
        return {m: bool(bucket.get_blob(k).temporary_hold) for m, k in keys.items()}

    assert held() == {"g-1": True, "g-2": False, "g-3": True}
    shown = json.loads(cli("--json", "hold", "show", "spring").stdout)
    assert (shown["objects"], shown["pending"]) == (2, 0)
    with pytest.raises(Forbidden):  # GCS's 403 for an object under a temporary hold
        bucket.blob(keys["g-1"]).delete()
    assert bucket.get_blob(keys["g-1"]) is not None
    assert cli("hold", "release", "spring").exit_code == 0
    assert held() == {"g-1": False, "g-2": False, "g-3": False}
    audit = cli("--json", "audit")
    assert audit.exit_code == 0, audit.output
    project = json.loads(audit.stdout)["projects"][0]
    assert (project["holds"], project["releases"]) == (2, 2)
