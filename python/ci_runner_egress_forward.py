"""The build's way out during install: a TCP port on the sandbox's own loopback, forwarded to the runner's egress
proxy through the Unix socket bound into the sandbox. The sandbox has no other network, and no DNS: the proxy
decides every connection and resolves every name.

Usage: ci_runner_egress_forward.py <port> <socket> -- <command> [args...]
Listens first, then runs the command and exits with its status (128 + the signal that killed it).
"""

import asyncio
import signal
import socket
import sys

CHUNK = 256 * 1024


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()


def handler(path: str):
    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            proxy_reader, proxy_writer = await asyncio.open_unix_connection(path)
        except OSError as error:
            print(f"ci-runner egress: the runner's proxy is not reachable: {error}", file=sys.stderr)
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, proxy_writer), pump(proxy_reader, client_writer))
        proxy_writer.close()
        client_writer.close()

    return forward


async def main(port: int, path: str, command: list[str]) -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    server = await asyncio.start_server(handler(path), sock=listener)
    child = await asyncio.create_subprocess_exec(*command)
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(number, child.send_signal, number)
    status = await child.wait()
    server.close()
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print("usage: ci_runner_egress_forward.py <port> <socket> -- <command> [args...]", file=sys.stderr)
        sys.exit(64)
    sys.exit(asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[4:])))
