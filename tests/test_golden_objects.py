"""The bytes in the bucket for the same input never change: a golden object per medium.

`examples/sample-messages.jsonl` goes through `sm ingest` and `sm run --once` to a folder; every
object's key and the SHA-256 of its exact bytes (the gzip object, not its decompressed JSON)
are pinned here. A refactor of encoding, gzip or the key layout that changes one byte fails.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "examples" / "sample-messages.jsonl"
# Values whose encoding is easy to change by accident: floats, big integers, escapes, non-BMP
# text, unsorted and nested keys, an empty campaign, NFD text.
EDGES = [
    {"message_id": "edge-1", "project_id": 12345, "medium": "push", "message_type": "blast",
     "campaign_id": 0, "template_id": 10**20, "recipient": {"device_token": "TOKEN-Ä"},
     "sent_at": "2026-11-27T17:02:00.123456+02:00",
     "provider": {"name": "fcm", "message_id": "f-1"},
     "content": {"platform": "android", "device_token": "TOKEN-Ä", "title": "z\u00e9\t\"q\"",
                 "body": "e\u0301 \ud83d\ude00 </script> \u2028",
                 "data": {"b": [1.5, -0.0, 1e300, 2.5e-8, True, None], "a": {"y": 1, "x": 2}}}},
    {"message_id": "edge-2", "project_id": "12345", "medium": "sms", "message_type": "triggered",
     "recipient": {"phone_number": "+15555550101", "user_id": "u-9"},
     "sent_at": "2026-11-27T17:03:00Z", "provider": {"name": "twilio", "message_id": "SM9"},
     "content": {"from": "+15555550199", "to": "+15555550101", "body": "x" * 3000}},
]

GOLDEN = {
    "email/12345/b7e0d8372a47f54bbefeb251ab9ac1e9e6b2d1983263de10196101be3961ed23/1234567/demo-email-0001.json.gz":
        "49fc5cc9fe32d5b80e7a4bf6038ef58dda90f3ead8be51ae633d7603212bb2ee",
    "email/12345/bcab8abd827bdcdde4241c4dbd6459b261bb853faa281af0bbbe50c9354b1e12/unassociated/demo-email-0002.json.gz":
        "89f85fad3346b58997bc22e7789ceb26c35b3b80433915bf6dde0f49250d3465",
    "push/12345/1b5ac1b557c77c08c047d1348c23334831590474fffd9d0cf8446dea44f0d905/spring-sale/demo-push-0001.json.gz":
        "e711352f29c13a5f8b608e5d54f843c8af07fcbf1ca9c2dc5fd3186d91e51f36",
    "push/12345/b52f16a2901c7f1c277ff056ddbaeb5bf992b41d4f340e808e80a2fa528e7864/0/edge-1.json.gz":
        "1199806e1dcfe6782a98ef42b7a00d531668966406ff792d0b636be7e2a710b9",
    "sms/12345/086cd6f120b8c934031754b9cc9c2f4b48bcc64eaf1b2825896325d761f4a4fa/unassociated/edge-2.json.gz":
        "e5274c561b97af4102d89c49856f3d98bfd74313b999dd3502456f8672ed53ca",
    "sms/12345/46bd5c18c57a0d2afb3c99493bdb71ac07396c10f6c51086284b3ddf97880bcf/unassociated/demo-sms-0001.json.gz":
        "b83ce9cbce4e4c80004358bed5a527e022a416983e40cdb89a23a827e700270f",
}


def test_sample_messages_give_the_pinned_objects(cli, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    assert cli("connect", f"file://{archive}/", "--project", "12345").exit_code == 0
    cli("ingest", str(SAMPLES))  # one line is bad on purpose (exit 1); the rest go in
    edges = "".join(json.dumps(message) + "\n" for message in EDGES)
    assert cli("ingest", "-", input=edges).exit_code == 0
    ran = cli("run", "--once")
    assert ran.exit_code == 0, ran.output
    objects = {str(path.relative_to(archive)): hashlib.sha256(path.read_bytes()).hexdigest()
               for path in sorted(archive.rglob("*.json.gz")) if "_sm" not in path.parts}
    assert objects == GOLDEN
