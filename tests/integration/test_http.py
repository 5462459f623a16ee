"""HTTP core against a real licol server on loopback: health, keep-alive,
pipelining, limits, slow clients, path traversal, unknown routes, and
graceful shutdown."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import unittest

from licol_harness import LicolServer, Session, LICOL_BIN


class HttpCoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = LicolServer({
            "header_timeout_ms": "1500",
            "body_timeout_ms": "1500",
            "idle_timeout_ms": "3000",
            "max_body": "65536",
        }).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_healthz_reports_ok(self):
        status, headers, body = self.server.request("GET", "/healthz")
        self.assertEqual(status, 200)
        data = json.loads(body)
        self.assertEqual(data["status"], "ok")
        self.assertIn("x-request-id", headers)
        self.assertTrue(headers["content-type"].startswith("application/json"))
        self.assertEqual(headers["x-frame-options"], "DENY")
        self.assertEqual(headers["referrer-policy"], "no-referrer")
        self.assertEqual(headers["x-content-type-options"], "nosniff")

    def test_first_start_prints_manager_password(self):
        self.assertIsNotNone(self.server.admin_password)
        self.assertEqual(len(self.server.admin_password), 16)
        db = sqlite3.connect(self.server.db)
        rows = db.execute("SELECT p.email, p.must_change_password FROM person p"
                          " JOIN person_role r ON r.person_id = p.id WHERE r.role = 'gerant'").fetchall()
        db.close()
        self.assertEqual(rows, [("gerant@test.invalid", 1)])

    def test_keep_alive_reuses_connection(self):
        conn = self.server.connection()
        ids = set()
        for _ in range(5):
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.getheader("Connection"), "keep-alive")
            ids.add(resp.getheader("X-Request-Id"))
        conn.close()
        self.assertEqual(len(ids), 5)

    def test_pipelined_requests_answered_in_order(self):
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        last = b"GET /api/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        data = self.server.raw(request * 20 + last)
        self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 20)
        self.assertEqual(data.count(b"HTTP/1.1 404"), 1)
        self.assertLess(data.index(b"HTTP/1.1 200"), data.index(b"HTTP/1.1 404"))

    def test_unknown_route_is_json_404(self):
        status, headers, body = self.server.request("GET", "/api/v1/nothing-here")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"]["code"], "not_found")

    def test_wrong_method_is_405(self):
        status, _, body = self.server.request("DELETE", "/healthz")
        self.assertEqual(status, 405)
        self.assertEqual(json.loads(body)["error"]["code"], "method_not_allowed")

    def test_oversized_headers_get_431(self):
        big = b"X-Big: " + b"a" * 20000 + b"\r\n"
        data = self.server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 431"), data[:100])

    def test_too_many_headers_get_431(self):
        headers = b"".join(b"X-H%d: v\r\n" % i for i in range(100))
        data = self.server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 431"), data[:100])

    def test_oversized_body_gets_413(self):
        data = self.server.raw(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:100])

    def test_chunked_body_over_limit_gets_413(self):
        chunk = b"%x\r\n%s\r\n" % (40000, b"a" * 40000)
        data = self.server.raw(b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                               + chunk * 3 + b"0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:100])

    def test_garbage_gets_400(self):
        data = self.server.raw(b"\x00\x01\x02 not http\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:100])

    def test_slow_headers_dropped_with_408(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            start = time.time()
            for _ in range(8):
                time.sleep(0.4)
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    break
            data = s.recv(4096)
            self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:100])
            self.assertLess(time.time() - start, 6)

    def test_idle_connection_closed(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            start = time.time()
            self.assertEqual(s.recv(10), b"")
            self.assertGreater(time.time() - start, 2)

    def test_path_traversal_rejected(self):
        for path in ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/assets/..%2f..%2fetc%2fpasswd",
                     "/..%5c..%5cetc%5cpasswd", "/%00"]:
            status, _, body = self.server.request("GET", path)
            self.assertIn(status, (400, 404), path)
            self.assertNotIn(b"root:", body, path)
        # An absolute-looking path stays inside web/: the interface shell.
        status, _, body = self.server.request("GET", "//etc/passwd")
        self.assertNotIn(b"root:", body)

    def test_static_index_served(self):
        status, headers, body = self.server.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"))
        self.assertIn(b"<html", body.lower())

    def test_head_has_no_body(self):
        data = self.server.raw(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"))
        self.assertEqual(body, b"")


class LimitsTest(unittest.TestCase):
    def test_connection_limit_answers_503(self):
        server = LicolServer({"max_connections": "4", "idle_timeout_ms": "10000"}).start()
        try:
            held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
            time.sleep(0.2)
            data = server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(data.startswith(b"HTTP/1.1 503"), data[:80])
            for s in held:
                s.close()
            time.sleep(0.2)
            status, _, _ = server.request("GET", "/healthz")
            self.assertEqual(status, 200)
        finally:
            server.cleanup()

    def test_upload_over_limit_gets_413(self):
        server = LicolServer({"max_upload": "64K"}).start()
        try:
            session = Session(server)
            session.login("gerant@test.invalid", server.admin_password)
            status, _ = session.json("POST", "/api/v1/account/password",
                                     {"current_password": server.admin_password,
                                      "new_password": "un-mot-de-passe-solide"})
            self.assertEqual(status, 204)
            headers = "Cookie: %s\r\nX-CSRF-Token: %s\r\n" % (session.cookie, session.csrf)
            data = server.raw(b"POST /api/v1/imports?filename=x.csv HTTP/1.1\r\nHost: x\r\n"
                              + headers.encode() + b"Content-Length: 200000\r\n\r\n" + b"a" * 1000)
            self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:80])
            # Within the limit but without a session, the upload is refused
            # before its body is read: nothing reaches the disk.
            start = time.time()
            data = server.raw(b"POST /api/v1/imports?filename=x.csv HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: 60000\r\n\r\n" + b"a" * 1000)
            self.assertTrue(data.startswith(b"HTTP/1.1 401"), data[:80])
            self.assertIn(b"Connection: close", data)
            self.assertLess(time.time() - start, 3)
            self.assertEqual(os.listdir(os.path.join(server.tmp, "var", "uploads")), [])
        finally:
            server.cleanup()


class ForwardedForTest(unittest.TestCase):
    def test_trusted_proxy_address_used(self):
        server = LicolServer({"trusted_proxy": "127.0.0.1"}).start()
        try:
            server.request("GET", "/healthz", headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
            time.sleep(0.2)
            self.assertIn("203.0.113.9 GET /healthz", server.stderr())
        finally:
            server.cleanup()

    def test_forwarded_for_ignored_without_trusted_proxy(self):
        server = LicolServer().start()
        try:
            server.request("GET", "/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
            time.sleep(0.2)
            self.assertNotIn("203.0.113.9", server.stderr())
            self.assertIn("127.0.0.1 GET /healthz", server.stderr())
        finally:
            server.cleanup()


class ShutdownTest(unittest.TestCase):
    def test_sigterm_finishes_in_flight_request(self):
        server = LicolServer({"body_timeout_ms": "10000"}).start()
        try:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            # A request whose body is still arriving when the signal comes.
            s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
            time.sleep(0.3)
            server.signal(signal.SIGTERM)
            time.sleep(0.3)
            # The listener is closed: new connections are refused.
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            s.sendall(b"67890")
            data = s.recv(4096)
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 405"), data[:80])
            self.assertIn(b"Connection: close", data)
            self.assertEqual(server.proc.wait(10), 0)
            self.assertIn("stopped", server.stderr())
        finally:
            server.cleanup()

    def test_sighup_keeps_serving(self):
        server = LicolServer().start()
        try:
            server.signal(signal.SIGHUP)
            time.sleep(0.3)
            status, _, _ = server.request("GET", "/healthz")
            self.assertEqual(status, 200)
            self.assertIn("SIGHUP", server.stderr())
        finally:
            server.cleanup()


class CliTest(unittest.TestCase):
    def setUp(self):
        self.server = LicolServer()

    def tearDown(self):
        self.server.cleanup()

    def test_help_is_french(self):
        result = subprocess.run([LICOL_BIN, "--help"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0)
        self.assertIn("Utilisation", result.stdout)

    def test_unknown_command_exits_2(self):
        result = subprocess.run([LICOL_BIN, "frobnicate"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("Commande inconnue", result.stderr)

    def test_migrate_then_user_add(self):
        result = self.server.licol("migrate", "--db", self.server.db)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("schéma", result.stdout.decode())
        result = self.server.licol("user", "add", "--db", self.server.db, "--email", "emp@test.invalid",
                                   "--role", "employe", "--password-stdin", stdin=b"un-mot-de-passe-solide\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        result = self.server.licol("user", "add", "--db", self.server.db, "--email", "emp@test.invalid",
                                   "--role", "employe")
        self.assertEqual(result.returncode, 1)
        self.assertIn("existe déjà", result.stderr.decode())

    def test_user_add_rejects_unknown_role(self):
        result = self.server.licol("user", "add", "--db", self.server.db, "--email", "a@b.fr", "--role", "roi")
        self.assertEqual(result.returncode, 2)
        self.assertIn("inconnu", result.stderr.decode())

    def test_newer_database_refused(self):
        self.assertEqual(self.server.licol("migrate", "--db", self.server.db).returncode, 0)
        db = sqlite3.connect(self.server.db)
        db.execute("INSERT INTO schema_migration VALUES ('core', 9999, 'future', 'x')")
        db.commit()
        db.close()
        result = self.server.licol("migrate", "--db", self.server.db)
        self.assertEqual(result.returncode, 3)
        self.assertIn("plus récent", result.stderr.decode())

    def test_version(self):
        result = subprocess.run([LICOL_BIN, "version"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0)
        self.assertIn("licol", result.stdout)


if __name__ == "__main__":
    unittest.main()
