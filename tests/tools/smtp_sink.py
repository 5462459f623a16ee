#!/usr/bin/python3
"""SMTP sink for Licol's mail tests: an aiosmtpd server on a loopback port
that writes every message it accepts to a directory.

Each message becomes NNNNNN.eml, the data as received, and NNNNNN.json, the
envelope and the message as Python's email package decodes it (headers with
their RFC 2047 words decoded, and the text and HTML parts). Both are written
under a temporary name and renamed, so a reader never sees half a file. The file
"connections" holds the number of SMTP connections accepted so far.

Run it with Debian's Python (/usr/bin/python3), which has python3-aiosmtpd.
It prints "ready PORT" on standard output once it accepts connections and
stops on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, args):
        self.dir = args.dir
        self.reject = set(a.lower() for a in args.reject)
        self.tempfail = set(a.lower() for a in args.tempfail)
        self.delay = args.delay
        self.rcpt_delay = args.rcpt_delay
        self.decode = not args.no_decode
        self.lock = threading.Lock()
        self.count = 0
        self.connections = 0

    def connection_opened(self):
        with self.lock:
            self.connections += 1
            self._write("connections", str(self.connections).encode())

    def _write(self, name, data):
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.dir, name))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        if address.lower() in self.reject:
            return "550 5.1.1 Mailbox unavailable"
        if address.lower() in self.tempfail:
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.count += 1
            number = self.count
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth": bool(session.authenticated),
            "peer_port": session.peer[1],
        }
        if self.decode:
            record.update(decode(envelope.content))
        base = "%06d" % number
        self._write(base + ".eml", envelope.content)
        self._write(base + ".json", json.dumps(record, ensure_ascii=False).encode())
        return "250 2.0.0 Accepted"


def decode(data):
    """Returns the headers and parts of a message, decoded."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    out = {"headers": {}, "text": None, "html": None, "defects": []}
    for name in ("Date", "Message-ID", "From", "To", "Subject", "MIME-Version",
                 "Content-Type", "Auto-Submitted"):
        value = msg.get(name)
        out["headers"][name] = None if value is None else str(value)
    from_header = msg.get("From")
    if from_header is not None and from_header.addresses:
        out["from_name"] = from_header.addresses[0].display_name
        out["from_address"] = from_header.addresses[0].addr_spec
    out["max_line_length"] = max(len(line) for line in data.split(b"\r\n"))
    for part in msg.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        if kind == "text/plain":
            out["text"] = part.get_content()
        elif kind == "text/html":
            out["html"] = part.get_content()
    for defect in msg.defects:
        out["defects"].append(type(defect).__name__)
    return out


class CountingSMTP(SMTP):
    def __init__(self, *args, sink, **kwargs):
        super().__init__(*args, **kwargs)
        self._sink = sink

    def connection_made(self, transport):
        self._sink.connection_opened()
        super().connection_made(transport)


class SinkController(Controller):
    def __init__(self, sink, credentials, **kwargs):
        self._sink = sink
        self._credentials = credentials
        super().__init__(sink, **kwargs)

    def factory(self):
        kwargs = {}
        if self._credentials:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=False)
        return CountingSMTP(self.handler, sink=self._sink, hostname="sink.test", **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self._credentials
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        # handled=False makes aiosmtpd send its 535 reply itself.
        return AuthResult(success=ok, handled=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--dir", required=True, help="directory receiving the messages")
    parser.add_argument("--reject", action="append", default=[],
                        help="recipient answered 550 at RCPT (repeatable)")
    parser.add_argument("--tempfail", action="append", default=[],
                        help="recipient answered 451 at RCPT (repeatable)")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds to wait before answering the end of each message's data")
    parser.add_argument("--rcpt-delay", type=float, default=0.0,
                        help="seconds to wait before answering each RCPT command")
    parser.add_argument("--auth", metavar="USER:PASSWORD",
                        help="require AUTH PLAIN or LOGIN with these credentials")
    parser.add_argument("--no-decode", action="store_true",
                        help="store only the envelope in the .json files (for benchmarks)")
    args = parser.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    credentials = tuple(args.auth.split(":", 1)) if args.auth else None
    sink = Sink(args)
    controller = SinkController(sink, credentials, hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready %d" % args.port, flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
