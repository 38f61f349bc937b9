"""Benchmark: provider webhooks (SPEC 9.3) on one thread, SQLite spool in a temporary folder.

Printed, per second: SNS signature v2 checks alone (the RSA verify with a 2048-bit key and
the trust store read), `Receiver.receive` of signed SES "Delivery" notifications that each
confirm a message awaiting confirmation (verify, record, match, confirm: two transactions
per event), and evidence uploads to a folder with their log entries (`DeliveryEvidence`).

    .venv/bin/python scripts/bench_webhooks.py             # 500 events
    .venv/bin/python scripts/bench_webhooks.py --count 2000

It is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stored_messages_cli.clock import FakeClock  # noqa: E402
from stored_messages_cli.config.providers import SesSettings  # noqa: E402
from stored_messages_cli.destinations import open_destination  # noqa: E402
from stored_messages_cli.destinations.file import ensure_folder  # noqa: E402
from stored_messages_cli.evidence.delivery import DeliveryEvidence  # noqa: E402
from stored_messages_cli.spool import Spool  # noqa: E402
from stored_messages_cli.webhooks import Receiver  # noqa: E402
from stored_messages_cli.webhooks.ses import SesVerifier  # noqa: E402
from tests.support.fixtures.core import EMAIL_MESSAGE  # noqa: E402
from tests.support.provider_signing import SnsSigner, ses_event  # noqa: E402


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500)
    count = parser.parse_args().count
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        signer = SnsSigner(root / "sns")
        bodies = [json.dumps(signer.sign(ses_event("Delivery", f"ses-{i}", sns_id=f"sns-{i}"))
                             ).encode() for i in range(count)]
        verifier = SesVerifier(SesSettings(trust_store=str(signer.pem_path.parent)))
        started = time.perf_counter()
        for body in bodies:
            verifier.verify(body, {}, "", 1_800_000_000.0)
        report("SNS v2 verify", count, time.perf_counter() - started)

        clock = FakeClock()
        with Spool(root / "spool.db", clock=clock) as spool:
            messages = []
            for i in range(count):
                message = copy.deepcopy(EMAIL_MESSAGE)
                message.pop("sent_at")
                message["message_id"] = f"m-{i}"
                message["provider"] = {"name": "ses", "message_id": f"ses-{i}"}
                messages.append(message)
            spool.record_many(messages)
            receiver = Receiver(spool, {"12345": {"ses": SesSettings(
                trust_store=str(signer.pem_path.parent))}}, clock)
            started = time.perf_counter()
            for body in bodies:
                receiver.receive("ses", "12345", body, {}, "")
            report("receive (verify, record, confirm)", count, time.perf_counter() - started)

            url = f"file://{root / 'archive'}/"
            ensure_folder(url)
            uploader = DeliveryEvidence(spool, {"12345": open_destination(url)},
                                        uploads_per_turn=count, budget=3600.0)
            started = time.perf_counter()
            uploaded = uploader.upload_due()
            report(f"evidence upload to a folder ({uploaded})", uploaded,
                   time.perf_counter() - started)


def report(what: str, count: int, seconds: float) -> None:
    """One line: what, how many per second, milliseconds each."""
    print(f"{what:45s} {count / seconds:9.0f}/s  {1000 * seconds / max(count, 1):7.2f} ms each")


if __name__ == "__main__":
    main()
