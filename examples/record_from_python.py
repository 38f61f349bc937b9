"""Record sent messages from a send pipeline (run: .venv/bin/python examples/record_from_python.py).

Uses $SM_HOME (or the platform folders), exactly like the `sm` command; run `sm run --once`
afterwards to archive what was recorded, and `sm status` to see it.
"""

from __future__ import annotations

from stored_messages_cli import InvalidMessage, MessageConflict, Spool


def rendered_email(message_id: str) -> dict:
    """A rendered email, before the provider has answered (no sent_at yet)."""
    return {
        "message_id": message_id,
        "project_id": 12345,
        "medium": "email",
        "message_type": "triggered",
        "template_id": 42,
        "recipient": {"email": "Ann.Lee@Example.com", "user_id": "u-881"},
        "content": {"from": "Shop <news@shop.example>", "to": "Ann.Lee@Example.com",
                    "subject": "Your receipt", "text": "Thanks for your order.\r\n"},
    }


def main() -> None:
    """Record, confirm, fail, and show how bad input and conflicts surface."""
    with Spool.open() as spool:
        # 1. Render, record (durable when it returns), send, then confirm.
        spool.record(rendered_email("example-receipt-1"))
        spool.confirm_sent(12345, "example-receipt-1", sent_at="2026-11-27T17:00:00Z",
                           provider={"name": "ses", "message_id": "0100018c2f-example"})

        # 2. Already confirmed when recorded: include sent_at.
        spool.record(dict(rendered_email("example-receipt-2"), sent_at="2026-11-27T17:00:01Z"))

        # 3. The provider refused it: it is discarded, never archived.
        spool.record(rendered_email("example-receipt-3"))
        spool.record_send_failure(12345, "example-receipt-3", reason="invalid address")

        # 4. A batch in one transaction (all or nothing).
        spool.record_many(dict(rendered_email(f"example-batch-{n}"),
                               sent_at="2026-11-27T17:00:02Z") for n in range(3))

        try:
            spool.record(dict(rendered_email("example-bad"), medium="fax"))
        except InvalidMessage as exc:
            print(f"rejected: {exc}")  # medium must be 'email', 'sms' or 'push'
        try:
            spool.record(dict(rendered_email("example-receipt-2"), template_id=43))
        except MessageConflict as exc:
            print(f"conflict: {exc}")
        print(spool.status()["counts"])


if __name__ == "__main__":
    main()
