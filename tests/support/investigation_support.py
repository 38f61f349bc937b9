"""Shared arrangements for the find / fetch / index rebuild tests.

Messages go in through the real pipeline (`sm connect`, `sm ingest`, `sm run --once`) to a
local folder or to moto's S3 over HTTP; tests then read and alter the stored bytes directly.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stored_messages_cli.cli.app import app
from tests.support.fixtures.core import jsonl


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256, computed here rather than with the code under test."""
    return hashlib.sha256(data).hexdigest()


def canonical(document: dict[str, Any]) -> bytes:
    """The payload encoding SPEC 3 prescribes, written out independently."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


@dataclass
class ArchiveTarget:
    """A destination the tests archive to, and raw access to its objects."""

    kind: str
    url: str
    connect_options: list[str]
    key_prefix: str
    root: Path | None = None
    s3_client: Any = None
    bucket: str | None = None
    extra_urls: dict[str, str] = field(default_factory=dict)

    def url_for(self, project: str) -> str:
        """The destination URL a project connects to (each project its own prefix/folder)."""
        return self.extra_urls.get(project, self.url)

    def prefix_for(self, project: str) -> str:
        """The key prefix of a project's destination."""
        if self.kind == "file":
            return ""
        return self.url_for(project).split("/", 3)[3]

    def read(self, key: str, project: str = "12345") -> bytes:
        """The raw object bytes stored under `key` (full key)."""
        if self.kind == "file":
            return (self._root(project) / key).read_bytes()
        return self.s3_client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def keys(self, project: str = "12345") -> list[str]:
        """Every message key of a project's destination, sorted."""
        if self.kind == "file":
            root = self._root(project)
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.json.gz"))
        pages = self.s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix_for(project))
        return sorted(o["Key"] for page in pages for o in page.get("Contents", [])
                      if o["Key"].endswith(".json.gz"))

    def overwrite(self, key: str, body: bytes, *, payload_sha256: str | None,
                  project: str = "12345") -> None:
        """Replace an object behind sm's back (what an attacker or a careless admin does)."""
        if self.kind == "file":
            (self._root(project) / key).write_bytes(body)
            return
        metadata = {"sm-payload-sha256": payload_sha256} if payload_sha256 else {}
        self.s3_client.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata)

    def _root(self, project: str) -> Path:
        assert self.root is not None
        return Path(self.url_for(project).removeprefix("file://"))


def build_target(kind: str, folder: Path, moto_endpoint: str | None = None) -> ArchiveTarget:
    """A local folder, or a new moto S3 bucket with a key prefix, to archive to.

    Project 777 goes to a folder / prefix of its own, as a second project would.
    """
    if kind == "file":
        root = folder / "archive"
        return ArchiveTarget("file", f"file://{root}/", [], "", root=root,
                             extra_urls={"777": f"file://{folder / 'archive-777'}/"})
    import boto3

    from tests.support.fixtures.s3 import block_public_access

    assert moto_endpoint is not None
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"sm-inv-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    block_public_access(client, bucket)  # as AWS does; sm connect refuses a public bucket
    return ArchiveTarget(
        "s3", f"s3://{bucket}/archive/",
        ["--endpoint-url", moto_endpoint, "--allow-insecure-endpoint"], "archive/",
        s3_client=client, bucket=bucket,
        extra_urls={"777": f"s3://{bucket}/other-project/"})


def target_for(request: pytest.FixtureRequest, folder: Path) -> ArchiveTarget:
    """The target a fixture parametrized with "file" / "s3" asks for."""
    endpoint = request.getfixturevalue("moto_endpoint") if request.param == "s3" else None
    return build_target(request.param, folder, endpoint)


Invoke = Callable[..., Any]


def cli_for(home: Path) -> Invoke:
    """Invoke `sm` in-process with `--home home`."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Any:
        return runner.invoke(app, ["--home", str(home), *args], input=input)

    return invoke


def connect(cli: Invoke, target: ArchiveTarget, project: str = "12345") -> None:
    """`sm connect` a project to its destination in `target`."""
    result = cli("connect", target.url_for(project), "--project", project,
                 *target.connect_options)
    assert result.exit_code == 0, result.output


def archive(cli: Invoke, target: ArchiveTarget, messages: list[dict[str, Any]]) -> None:
    """Connect every project the messages name, ingest them and run one archiving pass."""
    for project in sorted({str(m["project_id"]) for m in messages}):
        connect(cli, target, project)
    ingested = cli("ingest", "-", input=jsonl(*messages))
    assert ingested.exit_code == 0, ingested.output
    ran = cli("--json", "run", "--once")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["stored"] == len(messages)


def email(message_id: str, *, to: str = "Ann.Lee@Example.com", project: int | str = 12345,
          campaign: int | str | None = 111, message_type: str = "blast",
          sent_at: str = "2026-11-01T09:00:00Z", **content: Any) -> dict[str, Any]:
    """An email message to `to`."""
    body = {"from": "Shop <news@shop.example>", "to": to, "subject": f"About {message_id}",
            "html": f"<p>{message_id}</p>", "text": message_id, **content}
    message: dict[str, Any] = {
        "message_id": message_id, "project_id": project, "medium": "email",
        "message_type": message_type, "recipient": {"email": to}, "sent_at": sent_at,
        "content": body}
    if campaign is not None:
        message["campaign_id"] = campaign
    return message


def sms(message_id: str, *, user_id: str = "u-9", body: str = "Code 123456",
        sent_at: str = "2026-11-20T08:30:00.5Z", project: int | str = 12345) -> dict[str, Any]:
    """An SMS whose recipient is keyed by user id."""
    return {"message_id": message_id, "project_id": project, "medium": "sms",
            "message_type": "triggered", "recipient": {"user_id": user_id,
                                                       "phone_number": "+15555550100"},
            "sent_at": sent_at,
            "content": {"from": "+15555550199", "to": "+15555550100", "body": body}}


def push(message_id: str, *, token: str = "ABCDEF0123", body: str = "Sale",
         sent_at: str = "2026-11-30T23:59:59Z", campaign: str = "111") -> dict[str, Any]:
    """A push message whose recipient is keyed by device token."""
    return {"message_id": message_id, "project_id": "12345", "medium": "push",
            "message_type": "journey", "campaign_id": campaign,
            "recipient": {"device_token": token}, "sent_at": sent_at,
            "content": {"platform": "ios", "device_token": token, "title": "Hi",
                        "body": body}}


def gunzip(body: bytes) -> bytes:
    """The payload inside a stored object."""
    return gzip.decompress(body)
