"""`sm serve`'s app on uvicorn in the test's own process (real HTTP on loopback), where the
test must reach into the server's spool or clock: back-pressure (429 + Retry-After), a spool
that cannot write (503: the file may not grow, as a full disk), the provider route with a
receiver, and a PostgreSQL spool."""

from __future__ import annotations

import asyncio
import copy
import http.client
import json
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stored_messages_cli.clock import FakeClock
from stored_messages_cli.serve.app import ServeOptions, build_app
from stored_messages_cli.serve.ingest import MESSAGES, BodyIngest
from stored_messages_cli.spool import Spool, Stored
from tests.support.fixtures.core import SMS_MESSAGE
from tests.support.serve_http import TOKEN, call, post, server_thread


def sms(message_id: str, **changes: Any) -> dict[str, Any]:
    message = copy.deepcopy(SMS_MESSAGE)
    message.update(message_id=message_id, **changes)
    return message


def options(**changes: Any) -> ServeOptions:
    return ServeOptions(**{"max_payload_bytes": 1 << 20, "max_queued": 1_000_000, **changes})


def connect(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)


def test_more_waiting_than_serve_max_queued_is_429_with_retry_after(tmp_path: Path) -> None:
    clock = FakeClock()
    with Spool(tmp_path / "spool.db", clock=clock) as spool:
        spool.record_many([sms(f"w-{n}") for n in range(3)])
        with server_thread(build_app(spool, options(max_queued=3), clock)) as port:
            conn = connect(port)
            assert post(conn, "/v1/messages", sms("w-3"))[0] == 202  # 3 waited: not over
            # the count is reused for a second: 4 wait now, but it still reads 3
            assert post(conn, "/v1/messages", sms("w-4"))[0] == 202
            clock.advance(1.5)
            status, document, headers = post(conn, "/v1/messages", sms("w-5"))
            assert status == 429 and headers["retry-after"] == "5"
            assert "serve_max_queued (3)" in document["error"]
            assert post(conn, "/v1/messages", [sms("w-6")])[0] == 429
            assert spool.message_state("12345", "w-5") is None
            assert spool.message_state("12345", "w-6") is None
            assert spool.report.waiting() == 5
            # events are never refused: confirmations are what let waiting messages go
            event = {"event": "send_failed", "message_id": "w-0", "project_id": 12345}
            assert post(conn, "/v1/events", event)[0] == 409  # answered (a conflict), not 429
            claimed = spool.queue.claim("me", "12345", 10, lease_seconds=60)
            spool.queue.settle("me", [Stored(c.row_id, c.key, "file:///x/") for c in claimed])
            assert spool.report.waiting() == 0
            clock.advance(-3600)  # set back: the count is read again, not frozen for an hour
            assert post(conn, "/v1/messages", sms("w-7"))[0] == 202


def test_a_spool_that_cannot_write_is_503_and_a_retry_lands(tmp_path: Path) -> None:
    clock = FakeClock()
    with Spool(tmp_path / "spool.db", clock=clock) as spool:
        spool.record(sms("before"))
        with server_thread(build_app(spool, options(), clock)) as port:
            conn = connect(port)
            with spool.lock:  # the disk is full: the file may not grow by one page
                pages = spool.conn.execute("PRAGMA page_count").fetchone()[0]
                spool.conn.execute(f"PRAGMA max_page_count = {pages}")
            big = [sms(f"full-{n}", content={"from": "+1", "to": "+15555550100",
                                             "body": secrets.token_hex(20_000)})
                   for n in range(20)]  # random: gzip cannot make them fit
            for body in (big[0], big):
                status, document, headers = post(conn, "/v1/messages", body)
                assert status == 503, document
                assert "is full" in document["error"] and headers["retry-after"] == "30"
                assert document["hint"]
            assert spool.message_state("12345", "full-0") is None
            status, document, _ = call(conn, "GET", "/healthz")
            assert status == 503 and document["status"] == "spool_unwritable"
            assert "is full" in document["error"]
            with spool.lock:  # room again
                spool.conn.execute("PRAGMA max_page_count = 1073741823")
            status, document, _ = post(conn, "/v1/messages", big)
            assert (status, document["accepted"]) == (202, 20)
            assert spool.message_state("12345", "full-19")["state"] == "queued"
            assert call(conn, "GET", "/healthz")[:2] == (200, {"status": "ok"})


class RecordingReceiver:
    """A WebhookReceiver that keeps what it was given and answers 200."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes, dict[str, str], str, bool]] = []

    def receive(self, provider: str, project_id: str, body: bytes, headers: Mapping[str, str],
                url: str) -> tuple[int, dict[str, Any]]:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        self.calls.append((provider, project_id, body, dict(headers), url, on_loop))
        return 200, {"received": len(body)}


def test_provider_webhooks_reach_the_receiver_off_the_event_loop(tmp_path: Path) -> None:
    clock = FakeClock()
    receiver = RecordingReceiver()
    with Spool(tmp_path / "spool.db", clock=clock) as spool:
        app = build_app(spool, options(max_payload_bytes=1000, token=TOKEN.encode()), clock,
                        receiver=receiver)
        with server_thread(app) as port:
            conn = connect(port)
            body = b'{"Type": "Notification",\r\n "x": "\xc3\xa9"}'
            status, document, _ = call(conn, "POST", "/v1/providers/ses/12345?a=1", body,
                                       {"Content-Type": "text/plain", "X-Amz-Sns-Message-Type":
                                        "Notification"})
            assert (status, document) == (200, {"received": len(body)})  # no token needed
            provider, project_id, received, headers, url, on_loop = receiver.calls[0]
            assert (provider, project_id, received) == ("ses", "12345", body)
            assert headers["x-amz-sns-message-type"] == "Notification"
            assert all(name == name.lower() for name in headers)
            assert url == f"http://127.0.0.1:{port}/v1/providers/ses/12345?a=1"
            assert on_loop is False
            assert call(conn, "POST", "/v1/providers/ses/12345", b"x" * 1001)[0] == 413
            assert len(receiver.calls) == 1
            # ingest stays behind the token on TCP
            assert post(conn, "/v1/messages", sms("p-1"))[0] == 401


def test_a_postgresql_spool_through_the_server(postgres_spool_url: str) -> None:
    clock = FakeClock()
    with Spool(postgres_spool_url, clock=clock) as spool:
        with server_thread(build_app(spool, options(), clock)) as port:
            conn = connect(port)
            assert post(conn, "/v1/messages", sms("pg-1"))[1]["accepted"] == 1
            assert post(conn, "/v1/messages", sms("pg-1"))[1]["duplicate"] == 1
            status, document, _ = post(conn, "/v1/messages",
                                       [sms(f"pg-b{n}") for n in range(50)] + ["{bad"])
            assert (status, document["accepted"], document["errors"]) == (
                202, 50, [{"line": 51, "reason": document["errors"][0]["reason"]}])
            changed = sms("pg-1", content={"from": "+1", "to": "+2", "body": "other"})
            assert post(conn, "/v1/messages", changed)[0] == 409
            assert spool.report.waiting() == 51


LINE_KINDS = st.lists(st.sampled_from(["new", "again", "bad_json", "blank", "spaces",
                                       "event", "bad_id"]), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=LINE_KINDS)
def test_json_lines_answer_with_each_bad_lines_own_number(tmp_path_factory: Any,
                                                          kinds: list[str]) -> None:
    """Whatever mix of lines is posted, each rejected line is named by its own number and
    every good one is accepted once (a repeat is a duplicate)."""
    lines, bad, new = [], [], 0
    for number, kind in enumerate(kinds, start=1):
        if kind == "new" or (kind == "again" and new == 0):
            lines.append(json.dumps(sms(f"h-{number}")))
            new += 1
        elif kind == "again":
            lines.append(json.dumps(sms("h-" + str(next(
                n for n, k in enumerate(kinds, start=1) if k in ("new", "again"))))))
        elif kind == "blank":
            lines.append("")
        else:
            lines.append({"bad_json": "{oops", "spaces": "  \t",
                          "event": json.dumps({"event": "sent", "message_id": "h-1",
                                               "project_id": 12345,
                                               "sent_at": "2026-11-27T17:01:00Z"}),
                          "bad_id": json.dumps(sms("bad/id"))}[kind])
            bad.append(number)
    body = ("\n".join(lines) + "\n").encode()
    with Spool(tmp_path_factory.mktemp("h") / "spool.db", clock=FakeClock()) as spool:
        result = BodyIngest(spool).post(MESSAGES, body, json_lines=True)
    document = result.document
    if not any(line.strip() for line in lines):
        assert result.status == 400 and "empty" in document["error"]
        return
    assert [e["line"] for e in document["errors"]] == bad
    assert document["accepted"] == new
    assert document["accepted"] + document["duplicate"] + document["rejected"] == len(
        [line for line in lines if line])
    assert result.status == (202 if new else 422)


def test_gathered_single_messages_each_get_their_own_answer(tmp_path: Path) -> None:
    """One group (one transaction) holding a new message, a duplicate, a conflict, an
    invalid one, an event and an empty body: each is answered as if posted alone, and the
    good ones are committed beside the bad."""
    with Spool(tmp_path / "spool.db", clock=FakeClock()) as spool:
        spool.record(sms("g-old"))
        bodies = [json.dumps(sms("g-new")).encode(), json.dumps(sms("g-old")).encode(),
                  json.dumps(sms("g-old", content={"from": "+1", "to": "+2", "body": "b"}))
                  .encode(), b'{"message_id": "g-bad"}',
                  json.dumps({"event": "sent", "message_id": "g-old", "project_id": 12345,
                              "sent_at": "2026-11-27T17:01:00Z"}).encode(), b"  ",
                  json.dumps(sms("g-new2")).encode()]
        answers = BodyIngest(spool).post_each(bodies)
        assert [a.status for a in answers] == [202, 202, 409, 422, 422, 400, 202]
        assert answers[0].document["accepted"] == 1 and answers[1].document["duplicate"] == 1
        assert "POST it to /v1/events" in answers[4].document["errors"][0]["reason"]
        assert spool.message_state("12345", "g-new")["state"] == "queued"
        assert spool.message_state("12345", "g-new2")["state"] == "queued"
        assert spool.message_state("12345", "g-bad") is None
        kept = [(r["source"], r["line"]) for r in spool.report.rejected_lines(10)]
        assert kept.count(("serve /v1/messages", 1)) == 3  # conflict, invalid, event


def test_answers_on_tcp_do_not_wait_for_a_delayed_ack(tmp_path: Path) -> None:
    """40 requests in a row on one keep-alive TCP connection: with Nagle on the server's
    socket each answer's body waited ~40 ms for the client's delayed ACK (1.6 s)."""
    clock = FakeClock()
    with Spool(tmp_path / "spool.db", clock=clock) as spool:
        with server_thread(build_app(spool, options(), clock)) as port:
            conn = connect(port)
            call(conn, "GET", "/healthz")
            started = time.perf_counter()
            for _ in range(40):
                assert call(conn, "GET", "/healthz")[0] == 200
            assert time.perf_counter() - started < 1.2


class SlowReceiver:
    """A WebhookReceiver that takes a while and counts how many calls overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0

    def receive(self, provider: str, project_id: str, body: bytes, headers: Mapping[str, str],
                url: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.3)
        with self.lock:
            self.now -= 1
        return 200, {"size": len(body)}


def test_large_bodies_are_held_a_few_at_a_time_small_ones_never_wait(tmp_path: Path) -> None:
    from stored_messages_cli.serve.app import LARGE_BODIES, LARGE_BODY

    clock = FakeClock()
    with Spool(tmp_path / "spool.db", clock=clock) as spool:
        for size, most in ((LARGE_BODY + 1, LARGE_BODIES), (1000, 8)):
            receiver = SlowReceiver()
            app = build_app(spool, options(max_payload_bytes=4 << 20), clock,
                            receiver=receiver)
            with server_thread(app) as port:
                answers: list[int] = []

                def send(port: int = port, size: int = size,
                         answers: list[int] = answers) -> None:
                    answers.append(call(connect(port), "POST", "/v1/providers/ses/1",
                                        b"x" * size)[0])

                senders = [threading.Thread(target=send) for _ in range(8)]
                for sender in senders:
                    sender.start()
                for sender in senders:
                    sender.join(timeout=60)
            assert answers == [200] * 8
            assert receiver.most == most, (size, receiver.most)


def test_the_gatherer_groups_waiting_requests_and_fails_only_its_group() -> None:
    from stored_messages_cli.serve.gather import Gatherer
    from stored_messages_cli.serve.ingest import Answer

    groups: list[list[bytes]] = []

    def write(bodies: list[bytes]) -> list[Answer]:
        groups.append(bodies)
        if b"boom" in bodies:
            raise RuntimeError("the spool broke")
        time.sleep(0.05)  # a COMMIT: what arrives meanwhile waits for the next group
        return [Answer(202, {"body": body.decode()}) for body in bodies]

    async def scenario() -> list[Any]:
        gatherer = Gatherer(write)
        first = asyncio.ensure_future(gatherer.submit(b"a"))
        await asyncio.sleep(0.01)  # "a" is being written alone
        rest = [asyncio.ensure_future(gatherer.submit(b)) for b in (b"b", b"c", b"d")]
        done = await asyncio.gather(first, *rest)
        failed = await asyncio.gather(gatherer.submit(b"boom"), return_exceptions=True)
        after = await gatherer.submit(b"e")
        return [*done, *failed, after]

    results = asyncio.run(scenario())
    assert groups == [[b"a"], [b"b", b"c", b"d"], [b"boom"], [b"e"]]
    assert [r.document["body"] for r in results[:4]] == ["a", "b", "c", "d"]
    assert isinstance(results[4], RuntimeError)
    assert results[5].document == {"body": "e"}


def test_the_server_runs_on_httptools_and_uvloop_from_the_serve_extra() -> None:
    """The `serve` (and `test`) extra installs httptools and uvloop, and uvicorn picks them:
    the parser and loop the tests exercise are the ones `sm serve` ships with (they halve
    its CPU a single-message request, docs/performance.md). Fails in an environment set up
    before they were added: `pip install -e '.[test]'` again."""
    import importlib.util

    missing = [name for name in ("httptools", "uvloop") if importlib.util.find_spec(name) is None]
    assert not missing, f"{missing} not installed: pip install -e '.[test]' again"
    import uvicorn.protocols.http.httptools_impl as httptools_impl

    from stored_messages_cli.serve.server import make_server

    seen: dict[str, str] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["loop"] = type(asyncio.get_running_loop()).__module__
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    server = make_server(app)
    server.config.load()
    assert server.config.http_protocol_class is httptools_impl.HttpToolsProtocol
    with server_thread(app) as port:
        assert call(connect(port), "GET", "/")[0] == 200
    assert seen["loop"].startswith("uvloop"), seen
