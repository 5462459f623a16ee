#!/usr/bin/python3
"""A stand-in for the federation's file server, for the automatic update
tests: serves one licensee file over HTTP on 127.0.0.1 with the behaviours
a real server can show.

- ETag and Last-Modified on every 200, and 304 Not Modified when
  If-None-Match (or, without it, If-Modified-Since) matches.
- Basic authentication when a user is set: 401 on missing or wrong
  credentials.
- Modes: "normal"; "slow" (headers, then one byte every slow_interval
  seconds); "oversized" (a body of oversize_bytes without Content-Length,
  ended by closing the connection); "status" (answers status_code).
- Every request is recorded (method, path, headers, body) in requests.
- HTTPS with a given certificate and key (start(tls=(cert, key))).

Tests import FederationServer and drive it in-process: set_file or
set_content to change the file (new ETag and Last-Modified), touch to give
the same content a new ETag, stop to take the server down. Run as a
program, it serves one file until SIGTERM or SIGINT and prints "ready PORT"
once it accepts connections.

Generate files with gen-riders (shared tools directory), for example:
  gen-riders --format ffe --rows 50 --season 2026 --out licencies.csv
"""

import argparse
import base64
import email.utils
import hashlib
import http.server
import signal
import ssl
import sys
import threading
import time


class FederationServer:
    def __init__(self, path="/licencies.csv", user=None, password=None):
        self.path = path
        self.user = user
        self.password = password
        self.mode = "normal"
        self.slow_interval = 0.5
        self.oversize_bytes = 5 * 1024 * 1024
        self.status_code = 503
        self.requests = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.content = b""
        self.etag = None
        self.last_modified = None
        self.version = 0
        self.httpd = None
        self.thread = None
        self.port = None
        self.tls = None

    # ---- content ------------------------------------------------------------

    def set_content(self, data):
        """Serves data from now on, with a new ETag and Last-Modified."""
        with self.lock:
            self.content = data
            self.version += 1
            self.etag = '"%s-%d"' % (hashlib.sha256(data).hexdigest()[:16], self.version)
            # Last-Modified has a one-second resolution; keep it strictly
            # increasing so that a conditional request never hides a change.
            now = time.time()
            previous = getattr(self, "_modified_at", 0)
            self._modified_at = max(now, previous + 1)
            self.last_modified = email.utils.formatdate(self._modified_at, usegmt=True)

    def set_file(self, file_path):
        with open(file_path, "rb") as f:
            self.set_content(f.read())

    def touch(self):
        """Same content, new ETag and Last-Modified (a republished file)."""
        self.set_content(self.content)

    def url(self):
        scheme = "https" if self.tls else "http"
        return "%s://127.0.0.1:%d%s" % (scheme, self.port, self.path)

    # ---- life cycle ---------------------------------------------------------

    def start(self, port=0, tls=None):
        """Listens on 127.0.0.1:port (0: a free port). tls is None for plain
        HTTP, or a (certificate file, key file) pair for HTTPS."""
        server = self

        class Handler(FederationHandler):
            owner = server

        self.stopping.clear()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.tls = tls
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Closes the listening socket: later connections are refused."""
        self.stopping.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def restart(self):
        """Listens again on the same port."""
        self.start(self.port, self.tls)


class FederationHandler(http.server.BaseHTTPRequestHandler):
    owner = None  # the FederationServer, set by a subclass
    server_version = "FederationTest/1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.answer(b"")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.answer(self.rfile.read(min(length, 1 << 20)))

    def answer(self, body):
        owner = self.owner
        with owner.lock:
            owner.requests.append({"method": self.command, "path": self.path,
                                   "headers": dict(self.headers.items()), "body": body})
            content, etag, last_modified = owner.content, owner.etag, owner.last_modified
            mode = owner.mode

        if self.path.split("?", 1)[0] != owner.path:
            return self.plain(404, b"not found")
        if owner.user is not None and not self.authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="federation"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "status":
            return self.plain(owner.status_code, b"unavailable")
        if mode == "oversized":
            return self.oversized()
        if self.not_modified(etag, last_modified):
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return

        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        self.end_headers()
        if mode == "slow":
            return self.trickle(content)
        self.wfile.write(content)

    def authorized(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == self.owner.user and password == self.owner.password

    def not_modified(self, etag, last_modified):
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            return etag in [tag.strip() for tag in if_none_match.split(",")]
        since = self.headers.get("If-Modified-Since")
        if since is None:
            return False
        try:
            return (email.utils.parsedate_to_datetime(since)
                    >= email.utils.parsedate_to_datetime(last_modified))
        except (TypeError, ValueError):
            return False

    def plain(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def trickle(self, content):
        try:
            for i in range(len(content)):
                if self.owner.stopping.wait(self.owner.slow_interval):
                    return
                self.wfile.write(content[i:i + 1])
                self.wfile.flush()
        except OSError:
            pass  # the client gave up

    def oversized(self):
        """A body with no Content-Length, delimited by closing the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"1234567A;MARTIN;Jeanne;01/02/2010\r\n" * 1024
        sent = 0
        try:
            while sent < self.owner.oversize_bytes and not self.owner.stopping.is_set():
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the client aborted, as it should
        self.close_connection = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", required=True, help="file to serve")
    parser.add_argument("--path", default="/licencies.csv", help="URL path of the file")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--user", help="require Basic authentication with this user")
    parser.add_argument("--password", default="", help="password for --user")
    parser.add_argument("--mode", choices=["normal", "slow", "oversized", "status"],
                        default="normal")
    args = parser.parse_args()

    server = FederationServer(args.path, args.user, args.password if args.user else None)
    server.set_file(args.file)
    server.mode = args.mode
    server.start(args.port)
    print("ready %d" % server.port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
