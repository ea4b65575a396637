"""A tiny HTTP server that runs the shell command in its query string (a web shell).

usage: attack_server.py PORT
GET /?cmd=<urlencoded shell command> runs `sh -c <command>` and answers its exit status.
Test helper for tests/integration/test_traces.py; never run it outside a test.
"""

import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

PORT = int(sys.argv[1])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        cmd = parse_qs(urlparse(self.path).query).get("cmd", ["true"])[0]
        rc = subprocess.run(["sh", "-c", cmd], check=False, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode
        body = f"rc={rc}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
