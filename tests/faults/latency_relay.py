"""A TCP relay that adds a fixed one-way latency, for tests that need a slow link where the
kernel has no netem (this project's CI kernels lack sch_netem and sch_prio).

    nsenter -t <pid> -n python latency_relay.py <upstream host> <upstream port> <delay seconds> <mark>

Run inside a container's network namespace: it listens on 127.0.0.1 (a port of its own,
printed on the first line of stdout), and the caller redirects that container's connections
to the upstream here (iptables REDIRECT). Each connection's bytes towards the upstream, and
its connect, reach the upstream `delay` seconds late and in order, as with
`tc netem delay` on the container's egress; answers come back undelayed. The relay's own
connections carry the firewall mark `mark` (SO_MARK), so the redirect rule can leave them alone.
It prints one line per connection it relays, and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import socket
import sys


async def delayed_copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk `delay` seconds after it arrived, order kept."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while chunk := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, chunk))
        queue.put_nowait((loop.time() + delay, b""))

    reading = asyncio.create_task(read())
    try:
        while True:
            due, chunk = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not chunk:
                writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
    finally:
        reading.cancel()


async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
    writer.close()


async def relay(host: str, port: int, delay: float, mark: int) -> None:
    async def handle(client_reader, client_writer) -> None:
        await asyncio.sleep(delay)  # the SYN's one-way delay
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            upstream_reader, upstream_writer = await asyncio.open_connection(sock=sock)
        except OSError:
            sock.close()
            client_writer.close()
            return
        print("relayed", flush=True)
        try:
            await asyncio.gather(delayed_copy(client_reader, upstream_writer, delay), copy(upstream_reader, client_writer))
        except (ConnectionError, OSError):
            pass
        finally:
            upstream_writer.close()
            client_writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    upstream_host, upstream_port, delay_s, fw_mark = sys.argv[1:5]
    asyncio.run(relay(upstream_host, int(upstream_port), float(delay_s), int(fw_mark)))
