"""A tiny HTTP server whose handler runs a shell, like a web shell would (test helper).

usage: webshell_server.py PORT TARGET_PORT
GET / runs: sh -c 'python3 -c "<connect to 127.0.0.1:TARGET_PORT>"'
"""

import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT, TARGET = int(sys.argv[1]), int(sys.argv[2])
CLIENT = (f"{sys.executable} -c 'import socket; "
          f"socket.create_connection((\"127.0.0.1\", {TARGET})).close()'")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        rc = subprocess.run(["sh", "-c", CLIENT], check=False).returncode
        body = f"rc={rc}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
