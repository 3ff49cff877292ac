"""Runs localstripe (a fake Stripe API, installed from PyPI as a test peer) on 127.0.0.1 only.

localstripe's own command binds every interface and shares one state file in /tmp between all
instances; here it listens on a loopback port of the caller's choice (0: any free one), keeps its
state in memory only, and prints `listening <port>` once it accepts connections.
"""

import socket
import sys

from aiohttp import web
from localstripe import resources, server


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    # Each instance keeps its own state: never read or write localstripe's shared file.
    resources.Store.dump_to_disk = lambda self: None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    # Listening before the announcement: connections wait in the backlog until the app serves.
    sock.listen(128)

    async def announce(_app):
        print(f"listening {sock.getsockname()[1]}", flush=True)

    server.app.on_startup.append(announce)
    web.run_app(server.app, sock=sock, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
