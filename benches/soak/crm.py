#!/usr/bin/env python3
"""A real HTTP CRM for benches/soak.sh: GET /callers/<digits> answers a JSON record for about
one caller in four (others 404), after a short think time, like a CRM behind a load balancer.
Threaded so slow answers do not queue; never logs a request."""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Crm(BaseHTTPRequestHandler):
    def do_GET(self):
        digits = self.path.rsplit("/", 1)[-1]
        time.sleep(0.002)
        if not digits.isdigit() or int(digits) % 4:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"id": "C-" + digits[-6:], "tier": "gold" if int(digits) % 8 == 0 else "silver"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:
            pass  # the engine gave up at its deadline

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Crm)
    server.daemon_threads = True
    server.serve_forever()
