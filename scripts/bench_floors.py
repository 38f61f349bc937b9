"""The floors under issue 25's sender budgets: the CPU of the steps a message cannot skip.

`scripts/bench.py --budgets` calls `floors_round` in each of its rounds and prints, beside each
budget, what the required steps alone cost in the same round: whatever the rest of the code
did, a figure cannot be better than its floor. The steps, each timed over `count` distinct
messages (process CPU), their order turning from round to round:

- `deflate`: the message's gzip object, zlib's raw deflate at level 6 (SPEC 9.6 pins the bytes);
- `schema`: the medium's pydantic model over the message (the input contract, SPEC 2);
- `encode + hashes`: the canonical payload and the content hash (`encode_document`, orjson
  where byte-identical) and the payload's SHA-256 (the object's identity);
- `recipient hashes`: the key's hash and every identifier's (SPEC 3, 9.2), E.164 included;
- `E.164`: reading the phone number in E.164 (SPEC 9.2's search form), part of the line above;
- `strict decode`: a JSON line read by the decoder that refuses duplicate keys (`sm ingest`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from stored_messages_cli.message import encode_document, gzip_body, sha256_hex
from stored_messages_cli.message.decode import decode_json
from stored_messages_cli.message.recipients import e164, search_hashes

Make = Callable[[int, str], dict[str, Any]]


def _per_message(step: Callable[[Any], Any], inputs: list[Any]) -> float:
    """µs of process CPU per call of `step` over `inputs` (each once)."""
    started = time.process_time()
    for item in inputs:
        step(item)
    return (time.process_time() - started) / len(inputs) * 1e6


def _encode_and_hash(document: dict[str, Any]) -> None:
    payload, _ = encode_document(document)
    sha256_hex(payload)


def floors_round(make_email: Make, make_sms: Make, count: int, turn: int, name: str
                 ) -> dict[str, float]:
    """µs of CPU per message of each required step, for the email and the short SMS."""
    from stored_messages_cli.message.models import MESSAGE_MODELS  # pydantic, built once

    result: dict[str, float] = {}
    for kind, make in (("email", make_email), ("sms", make_sms)):
        raws = [make(index, f"{name}{kind}") for index in range(count)]
        model = MESSAGE_MODELS[raws[0]["medium"]]
        model.model_validate(raws[0])  # the schema is built on first use
        documents = [{k: v for k, v in raw.items() if k != "schema_version"} for raw in raws]
        payloads = [encode_document(document)[0] for document in documents]
        lines = [json.dumps(raw) for raw in raws]
        phones = [raw["recipient"].get("phone_number") for raw in raws]
        steps: list[tuple[str, Callable[[Any], Any], list[Any]]] = [
            ("deflate", gzip_body, payloads),
            ("schema", model.model_validate, raws),
            ("encode + hashes", _encode_and_hash, documents),
            ("recipient hashes", search_hashes, [raw["recipient"] for raw in raws]),
            ("strict decode", decode_json, lines),
        ]
        if all(phones):
            steps.append(("E.164", e164, phones))
        shift = turn % len(steps)
        for label, step, inputs in steps[shift:] + steps[:shift]:
            result[f"{kind}: {label}"] = _per_message(step, inputs)
    return result


def floor_figures(figures: dict[str, float]) -> dict[str, float]:
    """The three floors of a round, from `floors_round`'s steps and the round's raw baselines
    (`record_many email: raw` and `raw ingest: msg per CPU-s`, messages per CPU-second)."""
    email = [figures[f"email: {step}"] for step in ("deflate", "schema", "encode + hashes",
                                                    "recipient hashes")]
    raw_insert = 1e6 / figures["record_many email: raw"]
    raw_ingest = 1e6 / figures["raw ingest: msg per CPU-s"]  # json.loads + insert
    return {
        # above a raw durable insert, a lone record must still check, encode, hash, deflate
        "floor: record above raw": sum(figures[f"sms: {step}"] for step in (
            "deflate", "schema", "encode + hashes", "recipient hashes")),
        "floor: record_many": 1e6 / (raw_insert + sum(email)),
        # the raw ingest's plain json.loads stands in for the strict decoder (a lower bound)
        "floor: sm ingest": 1e6 / (raw_ingest + sum(email)),
    }
