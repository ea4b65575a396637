"""A hop of the fleet test's chain: `serve PORT [CMD...]` accepts connections (running CMD
for each, as a web tier would call the next tier); `connect HOST PORT` connects, says
hello and waits for the answer."""

import socket
import subprocess
import sys


def serve(port: int, cmd: list[str]) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(8)
    print("listening", flush=True)
    while True:
        conn, _ = srv.accept()
        conn.recv(100)
        if cmd:
            subprocess.run(cmd, check=False)
        conn.sendall(b"ok\n")
        conn.close()


def connect(host: str, port: int) -> None:
    s = socket.create_connection((host, port), timeout=20)
    s.sendall(b"hello\n")
    s.recv(100)
    s.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3:])
    else:
        connect(sys.argv[2], int(sys.argv[3]))
