"""A local webhook receiver for trying leadflow out: prints every request it gets (the
Standard Webhooks headers and the body) and answers 204. With a secret, it checks each
`webhook-signature` (base64 HMAC-SHA256 of `id.timestamp.body`) and says whether it is valid.

    python3 examples/webhook_listener.py 127.0.0.1:9000 [whsec_SECRET]

Only the Python standard library."""

import base64
import hashlib
import hmac
import http.server
import sys


def key_of(secret):
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    secret = sys.argv[2] if len(sys.argv) > 2 else None

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            lines = [f"{self.command} {self.path}"]
            for name in ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature"):
                lines.append(f"{name}: {self.headers.get(name)}")
            if secret:
                signed = f"{self.headers.get('webhook-id')}.{self.headers.get('webhook-timestamp')}.".encode() + body
                mac = base64.b64encode(hmac.new(key_of(secret), signed, hashlib.sha256).digest()).decode()
                given = [s.split(",", 1)[-1] for s in (self.headers.get("webhook-signature") or "").split()]
                lines.append("signature: " + ("valid" if mac in given else "INVALID"))
            lines.append(body.decode("utf-8", "replace"))
            print("\n".join(lines) + "\n", flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
