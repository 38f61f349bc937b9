"""A real RFC 3161 Time-Stamp Authority for tests: `openssl ts -reply` on a loopback HTTP server.

At set-up the `openssl` command line makes, in a temporary folder, a throwaway root CA and a TSA
certificate it signs (extended key usage `critical,timeStamping`), a second root and TSA of the
same names (an impostor), a self-signed TSA certificate, and an `openssl.cnf` with a `[tsa]`
section. A `ThreadingHTTPServer` on 127.0.0.1 answers every POST of
`application/timestamp-query` with the bytes `openssl ts -reply` writes, as
`application/timestamp-reply`. Nothing is faked: a token from here verifies with
`openssl ts -verify` against `ca_file`.

Modes (`TimeStampAuthority.mode`, or the `fault` context manager): `ok` (the token carries the
TSA's certificate only), `with_chain` (it carries the root too, after the TSA's certificate, in
the order `openssl ts -reply -chain` writes them, not DER's), and fault switches for attacker
tests: `http_500`, `garbage` (random bytes with a 200), `wrong_imprint` (a valid token for
another digest, the request's nonce kept), `other_ca` (a token signed by the impostor, carrying
its own root), `self_signed` (a token from a TSA whose certificate is its own root) and `slow`
(sleeps `slow_seconds`, longer than a client's short timeout, then answers).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

MODES = ("ok", "with_chain", "http_500", "garbage", "wrong_imprint", "other_ca", "self_signed",
         "slow")

# The DER of AlgorithmIdentifier{sha256, NULL} then the OCTET STRING header of a 32-byte digest.
_SHA256_IMPRINT_PREFIX = bytes.fromhex("300d06096086480165030402010500" "0420")

_TSA_EXTENSIONS = """\
[tsa_cert]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

_OPENSSL_CNF = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {folder}
serial = $dir/serial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.55555.1.1
other_policies = 1.3.6.1.4.1.55555.1.2
digests = sha256, sha384, sha512
accuracy = secs:1, millisecs:500, microsecs:100
clock_precision_digits = 0
ordering = yes
tsa_name = yes
ess_cert_id_chain = yes
ess_cert_id_alg = sha256
"""


def _openssl(*args: str | Path, cwd: Path) -> None:
    """Run one `openssl` command in `cwd`; its error output becomes the failure message."""
    result = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.decode(errors='replace')}")


def _make_chain(folder: Path, name: str, common_name: str) -> None:
    """Write `{name}_ca.crt/.key` (a self-signed root) and `{name}_tsa.crt/.key` signed by it."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}_ca.key", "-out", f"{name}_ca.crt", "-days", "3",
             "-subj", f"/O=sm tests/CN={common_name} root",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}_tsa.key", "-out", f"{name}_tsa.csr",
             "-subj", f"/O=sm tests/CN={common_name} TSA", cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}_tsa.csr", "-CA", f"{name}_ca.crt",
             "-CAkey", f"{name}_ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", "tsa_ext.cnf", "-extensions", "tsa_cert",
             "-out", f"{name}_tsa.crt", cwd=folder)


def _make_self_signed(folder: Path, name: str, common_name: str) -> None:
    """Write `{name}_tsa.crt/.key`: a time-stamping certificate that is its own root."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}_tsa.key", "-out", f"{name}_tsa.crt", "-days", "2",
             "-subj", f"/O=sm tests/CN={common_name} TSA",
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "keyUsage=critical,digitalSignature,nonRepudiation",
             "-addext", "extendedKeyUsage=critical,timeStamping", cwd=folder)


class TimeStampAuthority:
    """The running TSA: where it listens, the roots it chains to, and its fault switch."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "tsa_ext.cnf").write_text(_TSA_EXTENSIONS)
        (folder / "openssl.cnf").write_text(_OPENSSL_CNF.format(folder=folder))
        (folder / "serial").write_text("01\n")
        _make_chain(folder, "main", "sm test")
        _make_chain(folder, "other", "sm test")  # same names, other keys: an impostor
        _make_self_signed(folder, "self", "sm test")
        self.ca_file = folder / "main_ca.crt"
        self.tsa_cert_file = folder / "main_tsa.crt"
        self.other_ca_file = folder / "other_ca.crt"
        self.mode = "ok"
        self.slow_seconds = 3.0
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/tsr"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        """Start answering in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the server and close its socket."""
        self._server.shutdown()
        self._server.server_close()

    @contextmanager
    def fault(self, mode: str) -> Iterator[TimeStampAuthority]:
        """Answer in `mode` inside the block, then go back to `ok`."""
        if mode not in MODES:
            raise ValueError(f"unknown TSA mode {mode!r}")
        self.mode = mode
        try:
            yield self
        finally:
            self.mode = "ok"

    def reply(self, query: bytes, *, signer: str = "main", chain: bool = False) -> bytes:
        """The DER TimeStampResp `openssl ts -reply` gives for `query`, signed by `signer`;
        with `chain`, the token carries the signer's root too."""
        with self._lock, tempfile.TemporaryDirectory(dir=self.folder) as work:
            query_file = Path(work) / "q.tsq"
            reply_file = Path(work) / "r.tsr"
            query_file.write_bytes(query)
            _openssl("ts", "-reply", "-config", self.folder / "openssl.cnf",
                     "-queryfile", query_file, "-inkey", f"{signer}_tsa.key",
                     "-signer", f"{signer}_tsa.crt",
                     *(["-chain", f"{signer}_ca.crt"] if chain else []),
                     "-out", reply_file, cwd=self.folder)
            return reply_file.read_bytes()

    def answer(self, query: bytes) -> tuple[int, bytes]:
        """The HTTP status and body this TSA sends for `query` in its current mode."""
        with self._lock:
            self.requests += 1
        mode = self.mode
        if mode == "http_500":
            return 500, b"internal error"
        if mode == "garbage":
            return 200, os.urandom(200)
        if mode == "slow":
            time.sleep(self.slow_seconds)
        if mode == "wrong_imprint":
            return 200, self.reply(_other_digest(query))
        signer = {"other_ca": "other", "self_signed": "self"}.get(mode, "main")
        return 200, self.reply(query, signer=signer, chain=mode in ("with_chain", "other_ca"))


def _other_digest(query: bytes) -> bytes:
    """`query` with one bit of its SHA-256 message imprint flipped (its nonce kept)."""
    start = query.find(_SHA256_IMPRINT_PREFIX)
    if start < 0:
        return query
    position = start + len(_SHA256_IMPRINT_PREFIX)
    return query[:position] + bytes([query[position] ^ 0x01]) + query[position + 1:]


def _handler_for(authority: TimeStampAuthority) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `authority`."""

    class TimeStampHandler(BaseHTTPRequestHandler):
        """Answers POSTs of time-stamp queries; anything else is a 4xx."""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output clean

        def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
            length = int(self.headers.get("Content-Length") or 0)
            query = self.rfile.read(length)
            if self.headers.get("Content-Type") != "application/timestamp-query":
                self._send(415, b"want application/timestamp-query", "text/plain")
                return
            try:
                status, body = authority.answer(query)
            except RuntimeError as error:  # openssl refused the query
                status, body = 400, str(error).encode()
            content_type = "application/timestamp-reply" if status == 200 else "text/plain"
            try:
                self._send(status, body, content_type)
            except OSError:
                pass  # a client that gave up (the slow mode) closed the connection

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return TimeStampHandler


@pytest.fixture(scope="session")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeStampAuthority]:
    """A real `openssl ts` Time-Stamp Authority on loopback, shared by the session."""
    authority = TimeStampAuthority(tmp_path_factory.mktemp("tsa"))
    authority.start()
    try:
        yield authority
    finally:
        authority.stop()
