#!/usr/bin/env python3
"""A IIIF test server on 127.0.0.1 for tests/cli/test_iiif.sh (test-time only).

    iiif_server.py FIXTURE_DIR LOG_FILE    prints "PORT <n>" once listening

Serves FIXTURE_DIR's files with "{BASE}" in .json files replaced by
http://127.0.0.1:<port>; every request line goes to LOG_FILE.  Image API
paths /img/<name>/full/<size>/0/default.jpg serve FIXTURE_DIR/<name>.jpg.
Misbehaving images, for the retry and error paths:
  /img/missing/...     404
  /img/busy/...        429 (Retry-After: 0) the first time, then the image
  /img/flaky/...       500 the first time, then the image
  /img/down/...        500 always
  /img/slow/...        answers after 5 s (the test's timeout is shorter)
  /img/cut/...         Content-Length larger than the bytes sent, then closes
It stops by itself after 120 s, whatever happens to the test.
"""
import http.server
import os
import sys
import threading
import time

ROOT, LOG = sys.argv[1], sys.argv[2]
seen = {}


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body=b"", ctype="application/octet-stream", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with open(LOG, "a") as f:
            f.write("%s %s\n" % (self.path, self.headers.get("User-Agent", "")))
        p = self.path
        n = seen[p] = seen.get(p, 0) + 1
        if p.startswith("/img/"):
            name = p.split("/")[2]
            img = open(os.path.join(ROOT, "image.jpg"), "rb").read()
            if name == "missing":
                return self.send(404, b"no such image")
            if name == "busy" and n == 1:
                return self.send(429, b"slow down", extra=[("Retry-After", "0")])
            if name == "flaky" and n == 1:
                return self.send(500, b"oops")
            if name == "down":
                return self.send(500, b"down")
            if name == "slow":
                time.sleep(5)
            if name == "cut":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(img)))
                self.end_headers()
                self.wfile.write(img[: len(img) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            return self.send(200, img, "image/jpeg")
        f = os.path.join(ROOT, p.lstrip("/"))
        if not os.path.isfile(f):
            return self.send(404, b"not found")
        body = open(f, "rb").read()
        if f.endswith(".json"):
            body = body.replace(b"{BASE}", ("http://127.0.0.1:%d" % self.server.server_port).encode())
        self.send(200, body, "application/json")


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Timer(120, srv.shutdown).start()
print("PORT %d" % srv.server_port, flush=True)
srv.serve_forever()
