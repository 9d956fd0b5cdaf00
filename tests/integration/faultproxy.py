"""A seeded, bounded fault-injecting HTTP/1.1 proxy for the network-fault tests.

It sits in front of a real service (moto's S3 and Glue, the Salesforce emulator) and, for a
share of the requests chosen by a seeded RNG, answers as a struggling service would:

- ``error``: a 5xx/throttling answer with the service's own error body, without forwarding:
  S3's XML ``<Error><Code>SlowDown</Code>…`` (503) or ``InternalError`` (500); Glue's JSON
  ``{"__type": …, "Message": …}`` with the ``x-amzn-ErrorType`` header (``ThrottlingException``
  400, ``InternalServiceException`` 500, ``ConcurrentModificationException`` 400; shapes as in
  botocore's Glue service model); Salesforce's ``[{"message", "errorCode"}]`` (503
  ``SERVER_UNAVAILABLE``, 403 ``REQUEST_LIMIT_EXCEEDED`` for a concurrency limit, which clears
  by itself);
- ``reset_before``: the connection is reset before the request reaches the service;
- ``reset_after``: the request is forwarded (and applied), then the connection is reset
  instead of answering: the answer is lost;
- ``cut``: the answer's headers announce its whole Content-Length, then the connection closes
  halfway through the body;
- ``slow``: the request is forwarded and applied, and the answer comes only after
  ``slow_seconds`` (set it past the client's timeout).

Faults are bounded: at most ``max_faults`` per proxy, so a run with retries can get through.
The proxy speaks HTTP/1.1 with keep-alive to the client and opens one upstream connection per
request (``Connection: close``); chunked answers are re-framed with a Content-Length. For the
Salesforce emulator, whose token answer hands out its own URL as ``instance_url``, the
upstream's base URL in answer bodies is rewritten to the proxy's, so every later call also
goes through the proxy.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import socket
import struct
import threading
import uuid

FAULTS = ("error", "reset_before", "reset_after", "cut", "slow")

S3_ERRORS = [
    (503, "SlowDown", "Please reduce your request rate."),
    (500, "InternalError", "We encountered an internal error. Please try again."),
]
GLUE_ERRORS = [
    (400, "ThrottlingException", "Rate exceeded"),
    (500, "InternalServiceException", "An internal service error occurred."),
    (400, "ConcurrentModificationException", "Two processes are trying to modify a resource simultaneously."),
]
SALESFORCE_ERRORS = [
    (503, "SERVER_UNAVAILABLE", "Server is temporarily unavailable. Please try again later."),
    (403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."),
]


class Request:
    """One parsed request: method, target, headers (in order), body."""

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]], body: bytes):
        self.method, self.target, self.version, self.headers, self.body = method, target, version, headers, body

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def service(self) -> str:
        target = self.header("x-amz-target") or ""
        return "glue" if target.startswith("AWSGlue.") else "s3"


async def read_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]] | None:
    """The start line and headers, or None at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


async def read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]], until_eof: bool) -> bytes:
    lookup = {k.lower(): v for k, v in headers}
    if "chunked" in lookup.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # trailers, up to the empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in lookup:
        return await reader.readexactly(int(lookup["content-length"]))
    return await reader.read() if until_eof else b""


def reset(writer: asyncio.StreamWriter) -> None:
    """Closes with a TCP RST (SO_LINGER 0), as a dropped connection looks to the client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def response_bytes(status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
                   head_only: bool = False) -> bytes:
    drop = {"transfer-encoding", "connection", "keep-alive"} | (set() if head_only else {"content-length"})
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in drop]
    if not head_only:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class FaultProxy:
    """A proxy to ``upstream`` (``http://host:port``) on its own thread and event loop.

    ``service`` is ``"aws"`` (S3 and Glue on one endpoint, as moto serves them) or
    ``"salesforce"``. ``rate`` is the chance that a request is faulted, ``faults`` the kinds to
    draw from, ``max_faults`` the bound per proxy. ``injected`` counts faults by
    ``(kind, detail)``; ``requests`` counts every request seen.
    """

    def __init__(self, upstream: str, *, service: str = "aws", seed: int = 0, rate: float = 0.1,
                 max_faults: int = 4, faults: tuple[str, ...] = FAULTS, slow_seconds: float = 3.0):
        host_port = upstream.split("://", 1)[-1].rstrip("/")
        self.upstream_url = upstream.rstrip("/")
        self.upstream_host, port = host_port.rsplit(":", 1)
        self.upstream_port = int(port)
        self.service = service
        self.rng = random.Random(seed)
        self.rate = rate
        self.max_faults = max_faults
        self.faults = tuple(faults)
        self.slow_seconds = slow_seconds
        self.injected: collections.Counter = collections.Counter()
        self.log: list[str] = []
        self.requests = 0
        self.enabled = True
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._thread.start()
        self._ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop():
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def total(self) -> int:
        return sum(self.injected.values())

    # ------------------------------------------------------------------ choosing

    def _choose(self, request: Request) -> str | None:
        with self._lock:
            self.requests += 1
            if not self.enabled or self.total >= self.max_faults or self.rng.random() >= self.rate:
                return None
            return self.rng.choice(self.faults)

    def _record(self, kind: str, detail: str, request: Request) -> None:
        with self._lock:
            self.injected[(kind, detail)] += 1
            self.log.append(f"{kind}:{detail} {request.method} {request.target.split('?')[0]}")

    def _error(self, request: Request) -> tuple[int, str, list[tuple[str, str]], bytes, str]:
        request_id = uuid.UUID(int=self.rng.getrandbits(128)).hex.upper()[:16]
        if self.service == "salesforce":
            status, code, message = self.rng.choice(SALESFORCE_ERRORS)
            body = json.dumps([{"message": message, "errorCode": code}]).encode()
            return status, code, [("Content-Type", "application/json;charset=UTF-8")], body, code
        if request.service == "glue":
            status, code, message = self.rng.choice(GLUE_ERRORS)
            body = json.dumps({"__type": code, "Message": message}).encode()
            headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id),
                       ("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazonaws.glue/")]
            return status, code, headers, body, code
        status, code, message = self.rng.choice(S3_ERRORS)
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>").encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        return status, code, headers, body, code

    # ------------------------------------------------------------------ serving

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    break
                start, headers = head
                method, target, version = start.split(" ", 2)
                if any(k.lower() == "expect" and v.lower() == "100-continue" for k, v in headers):
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                    headers = [(k, v) for k, v in headers if k.lower() != "expect"]
                body = await read_body(reader, headers, until_eof=False)
                request = Request(method, target, version, headers, body)
                if not await self._serve(request, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def _serve(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answers one request; False when the connection is gone."""
        kind = self._choose(request)
        if kind == "error":
            status, reason, headers, body, detail = self._error(request)
            self._record(kind, detail, request)
            head_only = request.method == "HEAD"
            writer.write(response_bytes(status, reason, headers, b"" if head_only else body, head_only))
            if not head_only:
                writer.write(body)
            await writer.drain()
            return True
        if kind == "reset_before":
            self._record(kind, request.service if self.service == "aws" else "salesforce", request)
            reset(writer)
            return False
        status, reason, headers, body = await self._forward(request)
        head_only = request.method == "HEAD" or status in (204, 304)
        if kind == "reset_after":
            self._record(kind, request.method, request)
            reset(writer)
            return False
        if kind == "cut" and body and not head_only:
            self._record(kind, request.method, request)
            writer.write(response_bytes(status, reason, headers, body))
            writer.write(body[: len(body) // 2])
            await writer.drain()
            reset(writer)
            return False
        if kind == "slow":
            self._record(kind, request.method, request)
            await asyncio.sleep(self.slow_seconds)
        elif kind == "cut":
            kind = None  # nothing to cut: answered normally, not counted
        if head_only:
            writer.write(response_bytes(status, reason, headers, b"", head_only=True))
        else:
            writer.write(response_bytes(status, reason, headers, body) + body)
        await writer.drain()
        return True

    async def _forward(self, request: Request) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream_reader, upstream_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        drop = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length"}
        headers = [(k, v) for k, v in request.headers if k.lower() not in drop]
        if self.service == "salesforce":
            # Plain bodies, so the upstream's URL in them can be rewritten.
            headers = [(k, v) for k, v in headers if k.lower() != "accept-encoding"]
        lines = [f"{request.method} {request.target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
        if request.body or request.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(request.body)}")
        lines.append("Connection: close")
        upstream_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body)
        await upstream_writer.drain()
        head = await read_head(upstream_reader)
        status_line, response_headers = head
        parts = status_line.split(" ", 2)
        status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
        if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""  # a HEAD answer keeps the object's Content-Length header
        else:
            body = await read_body(upstream_reader, response_headers, until_eof=True)
        upstream_writer.close()
        if self.service == "salesforce" and body:
            body = body.replace(self.upstream_url.encode(), self.url.encode())
        return status, reason, response_headers, body
