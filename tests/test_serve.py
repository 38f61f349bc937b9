"""`sm serve` end to end (SPEC 9.3): a real `sm serve` process, on its Unix socket and on
loopback TCP with a bearer token, driven over HTTP by the standard library's client; every
outcome is checked against the spool's own rows."""

from __future__ import annotations

import copy
import http.client
import json
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stored_messages_cli.spool import Spool
from tests.support.fixtures.core import EMAIL_MESSAGE, SMS_MESSAGE
from tests.support.serve_http import (
    TOKEN,
    ServeProcess,
    UnixHTTPConnection,
    call,
    free_port,
    post,
    short_dir,
)

LIMIT = 256 * 1024  # SM_MAX_PAYLOAD_BYTES of the server under test


class Server:
    """The module's `sm serve`: where it listens and its home."""

    def __init__(self, home: Path, socket_path: Path, port: int, process: ServeProcess) -> None:
        self.home = home
        self.socket_path = socket_path
        self.port = port
        self.process = process

    def unix(self) -> UnixHTTPConnection:
        return UnixHTTPConnection(self.socket_path)

    def tcp(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def row(self, project_id: str, message_id: str) -> dict[str, Any] | None:
        with Spool(self.home / "spool.db") as spool:
            return spool.message_state(project_id, message_id)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    folder = short_dir()
    home = folder / "home"
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = free_port()
    socket_path = folder / "s.sock"
    process = ServeProcess(home, "--socket", str(socket_path), "--listen", f"127.0.0.1:{port}",
                           "--token-file", str(token_file), log=folder / "serve.log",
                           SM_MAX_PAYLOAD_BYTES=str(LIMIT))
    running = Server(home, socket_path, port, process)
    try:
        process.wait_ready(running.unix)
        yield running
    finally:
        code = process.stop()
        log = (folder / "serve.log").read_text()
        shutil.rmtree(folder, ignore_errors=True)
        assert code == 0, log


def sms(message_id: str, project_id: int = 12345, **changes: Any) -> dict[str, Any]:
    message = copy.deepcopy(SMS_MESSAGE)
    message.update(message_id=message_id, project_id=project_id, **changes)
    return message


def test_the_unix_socket_is_owner_only_and_answers_without_a_token(server: Server) -> None:
    mode = os.stat(server.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    status, document, _ = post(server.unix(), "/v1/messages", sms("unix-1"))
    assert (status, document["accepted"]) == (202, 1)
    assert server.row("12345", "unix-1")["state"] == "queued"


def test_a_message_posted_twice_is_a_duplicate_and_stored_once(server: Server) -> None:
    conn = server.unix()
    first = post(conn, "/v1/messages", sms("twice-1"))
    second = post(conn, "/v1/messages", sms("twice-1"))
    assert first[:2] == (202, {"accepted": 1, "duplicate": 0, "rejected": 0, "discarded": 0,
                               "errors": []})
    assert second[:2] == (202, {"accepted": 0, "duplicate": 1, "rejected": 0, "discarded": 0,
                                "errors": []})
    with Spool(server.home / "spool.db") as spool:
        assert spool.conn.execute("SELECT COUNT(*) FROM messages WHERE message_id = ?",
                                  ("twice-1",)).fetchone()[0] == 1


def test_a_conflicting_message_is_409_and_the_first_copy_stays(server: Server) -> None:
    conn = server.unix()
    assert post(conn, "/v1/messages", sms("conflict-1"))[0] == 202
    before = server.row("12345", "conflict-1")
    changed = sms("conflict-1", content={"from": "+15555550199", "to": "+15555550100",
                                         "body": "another text"})
    status, document, _ = post(conn, "/v1/messages", changed)
    assert status == 409
    assert document["rejected"] == 1 and document["errors"][0]["line"] == 1
    assert document["errors"][0]["reason"].startswith("conflict: ")
    assert server.row("12345", "conflict-1") == before


def test_json_lines_keep_the_line_numbers_sm_ingest_gives(server: Server) -> None:
    lines = [json.dumps(sms("lines-1")), "{not json", "", json.dumps(sms("lines-2")),
             json.dumps({"event": "sent", "message_id": "lines-1", "project_id": 12345,
                         "sent_at": "2026-11-27T17:01:00Z"}),
             json.dumps(sms("bad id/3")), "   "]
    status, document, _ = post(server.unix(), "/v1/messages", lines)
    assert status == 202
    assert (document["accepted"], document["rejected"]) == (2, 4)
    assert [e["line"] for e in document["errors"]] == [2, 5, 6, 7]
    assert "POST it to /v1/events" in document["errors"][1]["reason"]
    with Spool(server.home / "spool.db") as spool:
        kept = {(r["source"], r["line"]) for r in spool.report.rejected_lines(100)}
    assert {("serve /v1/messages", n) for n in (2, 5, 6, 7)} <= kept


def test_every_line_rejected_is_422_and_nothing_is_recorded(server: Server) -> None:
    status, document, _ = post(server.unix(), "/v1/messages",
                               ["[1, 2]", json.dumps(sms("x", medium="fax"))])
    assert status == 422
    assert (document["accepted"], document["duplicate"], document["rejected"]) == (0, 0, 2)
    assert server.row("12345", "x") is None
    single = post(server.unix(), "/v1/messages", {"message_id": "only-an-id"})
    assert single[0] == 422 and single[1]["errors"][0]["line"] == 1


def test_events_confirm_a_message_through_v1_events(server: Server) -> None:
    rendered = sms("confirm-1")
    del rendered["sent_at"]
    conn = server.unix()
    assert post(conn, "/v1/messages", rendered)[0] == 202
    assert server.row("12345", "confirm-1")["state"] == "awaiting_confirmation"
    event = {"event": "sent", "message_id": "confirm-1", "project_id": 12345,
             "sent_at": "2026-11-27T17:05:00Z", "provider": {"name": "twilio",
                                                               "message_id": "SM1"}}
    assert post(conn, "/v1/events", event)[:2] == (202, {
        "accepted": 1, "duplicate": 0, "rejected": 0, "discarded": 0, "errors": []})
    assert server.row("12345", "confirm-1")["state"] == "queued"
    assert post(conn, "/v1/events", event)[1]["duplicate"] == 1
    misplaced = post(conn, "/v1/events", sms("not-an-event"))
    assert misplaced[0] == 422 and "POST it to /v1/messages" in misplaced[1]["errors"][0][
        "reason"]
    assert server.row("12345", "not-an-event") is None


def test_a_body_over_max_payload_bytes_is_413_and_nothing_is_written(server: Server) -> None:
    big = sms("big-1", content={"from": "+1", "to": "+15555550100", "body": "x" * LIMIT})
    status, document, _ = post(server.unix(), "/v1/messages", big)
    assert status == 413 and "max_payload_bytes" in document["error"]
    assert server.row("12345", "big-1") is None
    # The same without Content-Length (chunked): counted as it arrives.
    conn = server.unix()
    conn.putrequest("POST", "/v1/messages")
    conn.putheader("Content-Type", "application/x-ndjson")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    line = (json.dumps(sms("chunk-1")) + "\n").encode()
    try:
        for _ in range(LIMIT // len(line) + 2):
            conn.send(b"%x\r\n%s\r\n" % (len(line), line))
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may stop reading once it has answered
    response = conn.getresponse()
    assert response.status == 413 and "max_payload_bytes" in json.loads(response.read())[
        "error"]
    assert server.row("12345", "chunk-1") is None


def test_tcp_needs_the_bearer_token(server: Server) -> None:
    conn = server.tcp()
    for token in (None, "wrong-token-0123456789", TOKEN[:-1], TOKEN + "x"):
        status, document, headers = post(conn, "/v1/messages", sms("tcp-1"), token=token)
        assert status == 401 and headers["www-authenticate"] == "Bearer", token
        assert "token" in document["error"]
    assert server.row("12345", "tcp-1") is None
    assert post(conn, "/v1/messages", sms("tcp-1"), token=TOKEN)[0] == 202
    assert server.row("12345", "tcp-1")["state"] == "queued"
    assert call(conn, "GET", "/healthz")[:2] == (200, {"status": "ok"})  # no token needed


def test_every_answer_is_json(server: Server) -> None:
    conn = server.unix()
    assert call(conn, "GET", "/nowhere")[:2] == (404, {"error": "no such endpoint"})
    assert call(conn, "GET", "/v1/messages")[0] == 405
    assert call(conn, "POST", "/v1/messages", b"",
                {"Content-Type": "application/json"})[0] == 400
    assert call(conn, "POST", "/v1/messages", b"a=b",
                {"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    status, document, _ = call(conn, "POST", "/v1/providers/ses/12345", b"{}",
                               {"Content-Type": "application/json"})
    assert (status, document) == (404, {"error": "provider webhooks are not configured"})
    # provider routes are not behind the token (test_serve_inprocess.py has a receiver)
    assert call(server.tcp(), "POST", "/v1/providers/ses/12345", b"{}")[0] == 404


def test_metrics_count_requests_per_endpoint_and_code(server: Server) -> None:
    conn = server.unix()
    post(conn, "/v1/messages", sms("metric-1"))
    post(conn, "/v1/messages", "{broken")
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    counts = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("sm_serve_requests_total{")}
    assert counts['sm_serve_requests_total{code="202",endpoint="/v1/messages"}'] >= 1
    assert counts['sm_serve_requests_total{code="422",endpoint="/v1/messages"}'] >= 1
    assert 'sm_serve_request_duration_seconds_bucket{endpoint="/v1/messages"' in text
    lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
             for line in text.splitlines() if line.startswith("sm_serve_lines_total{")}
    assert lines['sm_serve_lines_total{endpoint="/v1/messages",outcome="accepted"}'] >= 1
    assert lines['sm_serve_lines_total{endpoint="/v1/messages",outcome="rejected"}'] >= 1
    assert "_created" not in text


@pytest.mark.slow
def test_100_concurrent_clients_land_10000_messages_exactly_once(server: Server) -> None:
    """Each client posts its 100 messages on a keep-alive connection (30 one by one, the
    rest as JSON Lines of 10), then 10 of its neighbour's again as one body (racing the
    neighbour): every message is in the spool once, and accepted exactly once across all
    the answers."""
    clients, each = 100, 100
    totals = {"accepted": 0, "duplicate": 0, "other": 0}
    lock = threading.Lock()

    def client(number: int) -> None:
        conn = server.unix() if number % 2 else server.tcp()
        token = None if number % 2 else TOKEN
        mine = [sms(f"c{number}-{n}", project_id=777) for n in range(each)]
        neighbours = [sms(f"c{(number + 1) % clients}-{n}", project_id=777) for n in range(10)]
        bodies: list[Any] = [*mine[:30], *(mine[n:n + 10] for n in range(30, each, 10)),
                             neighbours]
        seen = {"accepted": 0, "duplicate": 0, "other": 0}
        for body in bodies:
            status, document, _ = post(conn, "/v1/messages", body, token=token)
            if status != 202:
                seen["other"] += 1
            seen["accepted"] += document.get("accepted", 0)
            seen["duplicate"] += document.get("duplicate", 0)
        conn.close()
        with lock:
            for key, value in seen.items():
                totals[key] += value

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert totals == {"accepted": clients * each, "duplicate": clients * 10, "other": 0}
    with Spool(server.home / "spool.db") as spool:
        rows, distinct = spool.conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM messages WHERE project_id = ?",
            ("777",)).fetchone()
    assert rows == distinct == clients * each


def test_a_batch_of_emails_lands_as_its_summary_says(server: Server) -> None:
    emails = []
    for n in range(300):
        email = copy.deepcopy(EMAIL_MESSAGE)
        email.update(message_id=f"batch-{n}", recipient={"email": f"p{n}@example.com"})
        emails.append(email)
    status, document, _ = post(server.unix(), "/v1/messages", emails)
    assert (status, document["accepted"], document["rejected"]) == (202, 300, 0)
    again = post(server.unix(), "/v1/messages", emails[:10] + emails[:1])
    assert (again[0], again[1]["duplicate"]) == (202, 11)
    with Spool(server.home / "spool.db") as spool:
        assert spool.conn.execute("SELECT COUNT(*) FROM messages WHERE message_id LIKE"
                                  " 'batch-%'").fetchone()[0] == 300


@pytest.mark.parametrize("body", [
    b"[" * 100_000,
    b'{"message_id": "dup", "message_id": "dup2"}',
    b"\xff\xfe not utf-8",
    b'"{\\"message_id\\": \\"x\\"}"',
    b"\x00" * 1000,
    b" " * 200_000 + b"\n",
    json.dumps(sms("trailing")).encode() + b"x",
    b'{"message_id": "deep", "content": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
])
def test_hostile_bodies_are_rejected_with_their_line_and_the_server_stays_up(
        server: Server, body: bytes) -> None:
    for content_type in ("application/json", "application/x-ndjson"):
        status, document, _ = call(server.unix(), "POST", "/v1/messages", body,
                                   {"Content-Type": content_type})
        assert status in (400, 422), document
        if status == 422:
            assert document["rejected"] >= 1 and document["errors"][0]["line"] == 1
            assert all("\n" not in e["reason"] for e in document["errors"])
    assert call(server.unix(), "GET", "/healthz")[0] == 200
