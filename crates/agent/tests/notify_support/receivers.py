"""Real receivers for the notification tests, on 127.0.0.1: an SMTP server (aiosmtpd) and an
HTTP server standing in for a webhook. Every mail is parsed with Python's own e-mail parser
(not the agent's library) and every POST is written, each as one JSON line with the time it
arrived, to the file named by the first argument. Prints "smtp PORT" and "http PORT", then
serves until stdin closes.

HTTP paths: /ok/... answers 204; /hang/... never answers (sleeps 600 s); /fail/... answers 500.
"""

import email
import email.policy
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

out_path = sys.argv[1]
lock = threading.Lock()


def record(entry):
    entry["at"] = time.time()
    with lock, open(out_path, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Mailbox:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        record(
            {
                "type": "mail",
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "from": str(msg["From"]),
                "to": str(msg["To"]),
                "subject": str(msg["Subject"]),
                "message_id": str(msg["Message-ID"]),
                "content_type": msg.get_content_type(),
                "body": body.get_content() if body is not None else "",
            }
        )
        return "250 OK"


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        data = self.rfile.read(n)
        if self.path.startswith("/hang/"):
            record({"type": "hang", "path": self.path})
            time.sleep(600)
            return
        record(
            {
                "type": "post",
                "path": self.path,
                "content_type": self.headers.get("content-type"),
                "delivery": self.headers.get("x-gpubook-delivery"),
                "json": json.loads(data),
            }
        )
        self.send_response(500 if self.path.startswith("/fail/") else 204)
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


smtp_port = free_port()
smtp = Controller(Mailbox(), hostname="127.0.0.1", port=smtp_port)
smtp.start()
http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
http.daemon_threads = True
threading.Thread(target=http.serve_forever, daemon=True).start()
print("smtp", smtp_port, flush=True)
print("http", http.server_address[1], flush=True)
sys.stdin.read()
smtp.stop()
