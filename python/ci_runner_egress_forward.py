"""The build's way out during install: a TCP port on the sandbox's own loopback, forwarded to the runner's egress
proxy through the Unix socket bound into the sandbox. The sandbox has no other network, and no DNS: the proxy
decides every connection and resolves every name.

Usage: ci_runner_egress_forward.py <port> <socket> -- <command> [args...]
Listens first, then runs the command and exits with its status (128 + the signal that killed it). One thread and
`selectors` (not asyncio, whose import alone takes longer than the rest of the start-up).
"""

import os
import selectors
import signal
import socket
import sys

CHUNK = 256 * 1024
READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE


class Connection:
    """One client of the port and its connection to the proxy, relayed both ways with back-pressure."""

    def __init__(self, selector, client, proxy):
        self.selector = selector
        self.socks = (client, proxy)
        self.pending = {client: b"", proxy: b""}  # bytes waiting to be written to each socket
        self.reading = {client: True, proxy: True}
        self.events = {client: 0, proxy: 0}
        for sock in self.socks:
            sock.setblocking(False)
        self.update()

    def peer(self, sock):
        return self.socks[1] if sock is self.socks[0] else self.socks[0]

    def close(self):
        for sock in self.socks:
            if self.events[sock]:
                self.selector.unregister(sock)
                self.events[sock] = 0
            sock.close()

    def update(self):
        if not any(self.reading.values()) and not any(self.pending.values()):
            self.close()
            return
        for sock in self.socks:
            wanted = (READ if self.reading[sock] and not self.pending[self.peer(sock)] else 0) | (
                WRITE if self.pending[sock] else 0
            )
            if wanted == self.events[sock]:
                continue
            if not wanted:
                self.selector.unregister(sock)
            elif not self.events[sock]:
                self.selector.register(sock, wanted, self.handle)
            else:
                self.selector.modify(sock, wanted, self.handle)
            self.events[sock] = wanted

    def shut(self, sock):
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def handle(self, sock, mask):
        peer = self.peer(sock)
        try:
            if mask & WRITE and self.pending[sock]:
                sent = sock.send(self.pending[sock])
                self.pending[sock] = self.pending[sock][sent:]
                if not self.pending[sock] and not self.reading[peer]:
                    self.shut(sock)
            if mask & READ and self.reading[sock]:
                data = sock.recv(CHUNK)
                if not data:
                    self.reading[sock] = False
                    if not self.pending[peer]:
                        self.shut(peer)
                else:
                    try:
                        sent = peer.send(data)
                    except BlockingIOError:
                        sent = 0
                    self.pending[peer] = data[sent:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.reading = {s: False for s in self.socks}
            self.pending = {s: b"" for s in self.socks}
        self.update()


def main(port, path, command):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()

    def accept(sock, _mask):
        try:
            client, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        proxy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proxy.connect(path)
        except OSError as error:
            print(f"ci-runner egress: the runner's proxy is not reachable: {error}", file=sys.stderr)
            proxy.close()
            client.close()
            return
        Connection(selector, client, proxy)

    selector.register(listener, READ, accept)
    pid = os.posix_spawnp(command[0], command, os.environ)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda received, _frame: os.kill(pid, received))
    exited = os.pidfd_open(pid)
    selector.register(exited, READ, None)
    while True:
        for key, mask in selector.select():
            if key.data is None:
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
            key.data(key.fileobj, mask)


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print("usage: ci_runner_egress_forward.py <port> <socket> -- <command> [args...]", file=sys.stderr)
        sys.exit(64)
    sys.exit(main(int(sys.argv[1]), sys.argv[2], sys.argv[4:]))
