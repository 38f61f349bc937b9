"""`sm serve` as a process: kill -9 right after a 202 loses nothing, SIGTERM lets the request
in flight finish, the socket file is owner-only and a stale one is replaced (never a live one
or another file), systemd socket activation, and the usage errors (exit 2)."""

from __future__ import annotations

import copy
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
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
    post,
    serve_env,
    short_dir,
)

pytestmark = [pytest.mark.slow]  # each test starts sm as its own process


@pytest.fixture
def folder() -> Iterator[Path]:
    """A private folder with a short path (for Unix sockets), removed afterwards."""
    made = short_dir()
    yield made
    shutil.rmtree(made, ignore_errors=True)


def sms(message_id: str) -> dict[str, Any]:
    message = copy.deepcopy(SMS_MESSAGE)
    message["message_id"] = message_id
    return message


def started(folder: Path, *args: str, **env: str) -> tuple[ServeProcess, Path]:
    socket_path = folder / "s.sock"
    process = ServeProcess(folder / "home", "--socket", str(socket_path), *args,
                           log=folder / "serve.log", **env)
    process.wait_ready(lambda: UnixHTTPConnection(socket_path))
    return process, socket_path


def test_kill_9_right_after_a_202_loses_nothing(folder: Path) -> None:
    process, socket_path = started(folder)
    conn = UnixHTTPConnection(socket_path)
    acknowledged = []
    for n in range(40):
        status, document, _ = post(conn, "/v1/messages", sms(f"k-{n}"))
        assert status == 202 and document["accepted"] == 1
        acknowledged.append(f"k-{n}")
    status, document, _ = post(conn, "/v1/messages", [sms(f"kb-{n}") for n in range(200)])
    assert (status, document["accepted"]) == (202, 200)
    process.process.send_signal(signal.SIGKILL)  # the moment the last 202 arrived
    process.process.wait(timeout=10)
    with Spool(folder / "home" / "spool.db") as spool:
        for message_id in [*acknowledged, *(f"kb-{n}" for n in range(200))]:
            row = spool.message_state("12345", message_id)
            assert row is not None and row["state"] == "queued", message_id


def test_kill_9_mid_stream_keeps_every_acknowledged_message(folder: Path) -> None:
    """Eight clients post without pause (single messages and small batches); the server is
    killed mid-stream: every message some 202 acknowledged is in the spool."""
    process, socket_path = started(folder)
    acknowledged: list[str] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        conn = UnixHTTPConnection(socket_path)
        for n in range(10_000):
            ids = [f"s{number}-{n}-{k}" for k in range(1 if n % 2 else 3)]
            try:
                status, _, _ = post(conn, "/v1/messages",
                                    sms(ids[0]) if len(ids) == 1 else [sms(i) for i in ids])
            except (OSError, http.client.HTTPException):
                return  # the server died under this request: not acknowledged
            assert status == 202
            with lock:
                acknowledged.extend(ids)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in clients:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.process.send_signal(signal.SIGKILL)
    process.process.wait(timeout=10)
    for thread in clients:
        thread.join(timeout=30)
    assert len(acknowledged) >= 300
    with Spool(folder / "home" / "spool.db") as spool:
        missing = [i for i in acknowledged if spool.message_state("12345", i) is None]
    assert missing == []


def test_sigterm_finishes_the_request_in_flight_then_exits_0(folder: Path) -> None:
    process, socket_path = started(folder, SM_MAX_PAYLOAD_BYTES=str(64 << 20))
    emails = []
    for n in range(4000):
        email = copy.deepcopy(EMAIL_MESSAGE)
        email.update(message_id=f"t-{n}", recipient={"email": f"p{n}@example.com"})
        emails.append(email)
    answers: list[tuple[int, dict[str, Any]]] = []

    def send() -> None:
        status, document, _ = post(UnixHTTPConnection(socket_path), "/v1/messages", emails)
        answers.append((status, document))

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.3)  # the body is in; the spool is writing it
    code = process.stop(signal.SIGTERM)
    sender.join(timeout=60)
    assert code == 0, (folder / "serve.log").read_text()
    assert answers and answers[0][0] == 202 and answers[0][1]["accepted"] == 4000
    assert not socket_path.exists()  # its socket file is removed on the way out
    log = [json.loads(line) for line in (folder / "serve.log").read_text().splitlines()]
    assert [entry["event"] for entry in log if entry["event"].startswith("serve_")] == [
        "serve_started", "serve_stopped"]
    with Spool(folder / "home" / "spool.db") as spool:
        assert spool.status()["counts"]["queued"] == 4000


def test_a_stale_socket_file_is_replaced_a_live_one_or_a_file_is_not(folder: Path) -> None:
    (folder / "home").mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(folder / "s.sock"))
    stale.close()  # the file stays, nothing listens: a server that died
    process, socket_path = started(folder)
    assert post(UnixHTTPConnection(socket_path), "/v1/messages", sms("stale-1"))[0] == 202
    second = subprocess.run([sys.executable, "-m", "stored_messages_cli.cli.app", "serve",
                             "--socket", str(socket_path)], env=serve_env(folder / "home"),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert second.stderr.startswith(f"Error: another server listens on {socket_path}")
    assert call(UnixHTTPConnection(socket_path), "GET", "/healthz")[0] == 200  # untouched
    assert process.stop() == 0
    not_a_socket = folder / "plain"
    not_a_socket.write_text("keep me")
    third = subprocess.run([sys.executable, "-m", "stored_messages_cli.cli.app", "serve",
                            "--socket", str(not_a_socket)], env=serve_env(folder / "home"),
                           capture_output=True, text=True, timeout=60)
    assert third.returncode == 1 and "is not a socket" in third.stderr
    assert not_a_socket.read_text() == "keep me"


def test_systemd_socket_activation_serves_the_inherited_socket(folder: Path) -> None:
    (folder / "home").mkdir(mode=0o700)
    path = folder / "activated.sock"
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(path))
    listening.listen(16)
    fd = listening.fileno()
    # systemd's protocol: the socket is descriptor 3, LISTEN_PID is the server's own pid
    # (exec keeps the pid of the small launcher that moves the socket to 3)
    launcher = (f"import os, sys; os.dup2({fd}, 3); os.close({fd});"
                " os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1');"
                " os.execv(sys.executable, [sys.executable, '-m',"
                " 'stored_messages_cli.cli.app', 'serve'])")
    process = subprocess.Popen([sys.executable, "-c", launcher],
                               env=serve_env(folder / "home"), pass_fds=[fd],
                               stderr=(folder / "serve.log").open("wb"))
    listening.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, document, _ = post(UnixHTTPConnection(path), "/v1/messages",
                                           sms("activated-1"))
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, (
                    folder / "serve.log").read_text()
                time.sleep(0.05)
        assert (status, document["accepted"]) == (202, 1)
        assert not (folder / "home" / "serve.sock").exists()  # no socket of its own
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    with Spool(folder / "home" / "spool.db") as spool:
        assert spool.message_state("12345", "activated-1")["state"] == "queued"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--listen", "127.0.0.1:8025"], "TCP needs a bearer token"),
    (["--listen", "10.1.2.3:8025", "--token-file", "TOKEN"], "needs TLS"),
    (["--listen", "nonsense"], "is not HOST:PORT"),
    (["--listen", "127.0.0.1:8025", "--token-file", "SHORT"], "at least 16 characters"),
    (["--listen", "127.0.0.1:8025", "--token-file", "MISSING"], "cannot read"),
    (["--tls-cert", "TOKEN"], "give both --tls-cert and --tls-key"),
    (["--tls-cert", "TOKEN", "--tls-key", "TOKEN"], "do not load"),
])
def test_usage_errors_exit_2_before_anything_listens(cli, tmp_path: Path, args: list[str],
                                                     fragment: str) -> None:
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "token").chmod(0o600)
    (tmp_path / "short").write_text("abc")
    names = {"TOKEN": tmp_path / "token", "SHORT": tmp_path / "short",
             "MISSING": tmp_path / "missing"}
    result = cli("serve", *[str(names.get(a, a)) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and fragment in lines[0], result.stderr
    assert lines[-1].startswith("Try: ")
    assert not any(p.suffix == ".sock" for p in tmp_path.rglob("*"))


def test_the_token_file_comes_from_sm_serve_token_file_too(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc")
    result = subprocess.run(
        [sys.executable, "-m", "stored_messages_cli.cli.app", "serve", "--listen",
         "127.0.0.1:8025"], env=serve_env(tmp_path / "home", SM_SERVE_TOKEN_FILE=str(short)),
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "at least 16 characters" in result.stderr


def test_a_token_file_others_can_read_is_warned_about(cli, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "token").chmod(0o644)
    result = cli("serve", "--listen", "10.1.2.3:8025", "--token-file", str(tmp_path / "token"))
    assert result.exit_code == 2
    assert "can be read by other users; chmod 600 it" in result.stderr


def test_serve_help_names_its_options(cli) -> None:
    result = cli("serve", "--help")
    assert result.exit_code == 0
    for option in ("--socket", "--listen", "--token-file", "--tls-cert", "--tls-key"):
        assert option in result.output
    assert os.environ.get("LISTEN_FDS") is None


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


def test_tls_with_the_token_on_tcp(folder: Path) -> None:
    import ssl

    from tests.support.serve_http import free_port

    cert_file, key_file = _self_signed(folder)
    token_file = folder / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    port = free_port()
    context = ssl.create_default_context(cafile=str(cert_file))
    process = ServeProcess(folder / "home", "--listen", f"127.0.0.1:{port}", "--token-file",
                           str(token_file), "--tls-cert", str(cert_file), "--tls-key",
                           str(key_file), log=folder / "serve.log")
    try:
        process.wait_ready(lambda: http.client.HTTPSConnection("127.0.0.1", port,
                                                               context=context, timeout=10))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        assert post(conn, "/v1/messages", sms("tls-1"))[0] == 401
        assert post(conn, "/v1/messages", sms("tls-1"), token=TOKEN)[0] == 202
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with pytest.raises((OSError, http.client.HTTPException)):
            call(plain, "GET", "/healthz")  # plain HTTP on the TLS port gets no answer
        assert not (folder / "home" / "serve.sock").exists()  # --listen alone: TCP only
        # an idle TLS connection is closed with a close_notify the client must read
        conn.close()
        plain.close()
    finally:
        assert process.stop() == 0
    with Spool(folder / "home" / "spool.db") as spool:
        assert spool.message_state("12345", "tls-1")["state"] == "queued"


def test_sm_serve_max_queued_from_the_environment_gives_429(folder: Path) -> None:
    process, socket_path = started(folder, SM_SERVE_MAX_QUEUED="2")
    try:
        conn = UnixHTTPConnection(socket_path)
        for n in range(3):  # 0 waited at the first count, reused for a second
            assert post(conn, "/v1/messages", sms(f"mq-{n}"))[0] == 202
        time.sleep(1.1)
        status, document, headers = post(conn, "/v1/messages", sms("mq-3"))
        assert status == 429 and headers["retry-after"] == "5"
        assert "3 messages wait" in document["error"]
    finally:
        assert process.stop() == 0


def test_without_the_serve_extra_it_says_what_to_install(tmp_path: Path) -> None:
    missing = tmp_path / "no-extra"
    (missing / "uvicorn").mkdir(parents=True)
    (missing / "uvicorn" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'uvicorn'\")\n")
    env = serve_env(tmp_path / "home")
    env["PYTHONPATH"] = os.pathsep.join([str(missing), *filter(None, [
        os.environ.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, "-m", "stored_messages_cli.cli.app", "serve"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("Error: sm serve needs the extra [serve]")
    assert "Try: pip install 'stored-messages-cli[serve]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_port_is_one_error_and_leaves_no_socket_file(folder: Path) -> None:
    (folder / "token").write_text(TOKEN)
    (folder / "token").chmod(0o600)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "stored_messages_cli.cli.app", "serve", "--socket",
             str(folder / "s.sock"), "--listen", f"127.0.0.1:{port}", "--token-file",
             str(folder / "token")], env=serve_env(folder / "home"), capture_output=True,
            text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
    assert not (folder / "s.sock").exists()


def test_what_sm_serve_acknowledged_sm_run_archives_byte_for_byte(folder: Path) -> None:
    """Posted over HTTP, archived by `sm run --once` to a folder: each object is the gzip of
    the message as posted plus schema_version, and the same bytes a Python sender's record
    makes."""
    import gzip

    from stored_messages_cli.message import parse_message
    from tests.support.daemon import prepare_home, sm

    home, archive = folder / "home", folder / "archive"
    home.mkdir(mode=0o700)
    prepare_home(home, archive, 0)
    process, socket_path = started(folder)
    sent = [sms(f"arch-{n}") for n in range(12)]
    for message in sent[:4]:
        assert post(UnixHTTPConnection(socket_path), "/v1/messages", message)[0] == 202
    assert post(UnixHTTPConnection(socket_path), "/v1/messages", sent[4:])[1]["accepted"] == 8
    assert process.stop() == 0
    run = sm(home, "run", "--once")
    assert run.returncode == 0, run.stderr
    objects = {p.name: p.read_bytes() for p in archive.rglob("*.json.gz")}
    assert sorted(objects) == sorted(f"{m['message_id']}.json.gz" for m in sent)
    for message in sent:
        stored = objects[f"{message['message_id']}.json.gz"]
        assert json.loads(gzip.decompress(stored)) == {
            **message, "project_id": str(message["project_id"]), "schema_version": 1}
        assert stored == parse_message(message).object_bytes


def test_sm_serve_on_a_postgresql_spool(postgres_spool_url: str, folder: Path) -> None:
    process, socket_path = started(folder, SM_SPOOL_URL=postgres_spool_url)
    try:
        conn = UnixHTTPConnection(socket_path)
        assert post(conn, "/v1/messages", sms("pg-serve-1"))[1]["accepted"] == 1
        assert post(conn, "/v1/messages", sms("pg-serve-1"))[1]["duplicate"] == 1
        status, document, _ = post(conn, "/v1/messages",
                                   [sms(f"pg-serve-b{n}") for n in range(30)])
        assert (status, document["accepted"]) == (202, 30)
    finally:
        assert process.stop() == 0
    assert not (folder / "home" / "spool.db").exists()  # the database holds the spool
    with Spool(postgres_spool_url) as spool:
        assert spool.report.waiting() == 31
        assert spool.message_state("12345", "pg-serve-b29")["state"] == "queued"
