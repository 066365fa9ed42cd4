"""A webhook receiver for the channel tests: checks Standard Webhooks signatures with the
specification's reference library (`standardwebhooks` on PyPI) and records what arrives.

Usage: receiver.py SECRET FAILURES
  Prints its port on the first line, then one JSON line per request received:
  {"path", "status", "headers", "body", "verified"}.
  /webhook  verifies the signature (401 when it fails); answers 503 to the first FAILURES
            correctly signed deliveries, then 204.
  /slack, /teams  answer 200 ("ok", as Slack does).
  /broken   always answers 500.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = sys.argv[1]
FAILURES = int(sys.argv[2])
failed = 0
# Requests are handled on threads: one line at a time, and one count.
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global failed
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = None
        status = 200
        if self.path == "/webhook":
            try:
                Webhook(SECRET).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
            with lock:
                if not verified:
                    status = 401
                elif failed < FAILURES:
                    failed += 1
                    status = 503
                else:
                    status = 204
        elif self.path == "/broken":
            status = 500
        record = {
            "path": self.path,
            "status": status,
            "headers": {k: v for k, v in headers.items() if k.startswith("webhook-") or k == "content-type"},
            "body": json.loads(body or b"null"),
            "verified": verified,
        }
        with lock:
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
        self.send_response(status)
        self.end_headers()
        if status == 200:
            self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
