#!/usr/bin/env python3
"""Opens N streamed chat requests on N connections and holds them open.

Each request carries `x-mock-hold`, so the mock upstream sends the first
event and then waits: the streams stay open with their first event through
the proxy. Prints "open N" once every stream has its first event, then
holds them until stdin closes or a line arrives.

Usage: hold_streams.py HOST:PORT PATH BODY N [HEADER:VALUE ...]
"""

import asyncio
import sys


async def open_stream(host, port, request, ready):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head.decode(errors="replace"))
    # The first event (a chunk of the chunked body) has arrived.
    await reader.read(1)
    ready.release()
    return reader, writer


async def main():
    address, path, body, count = sys.argv[1], sys.argv[2], sys.argv[3].encode(), int(sys.argv[4])
    host, port = address.rsplit(":", 1)
    headers = "".join(f"{h.split(':', 1)[0]}: {h.split(':', 1)[1]}\r\n" for h in sys.argv[5:])
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body
    ready = asyncio.Semaphore(0)
    streams = []
    # Open in batches, so the accept queues never overflow.
    for start in range(0, count, 100):
        batch = [open_stream(host, int(port), request, ready) for _ in range(start, min(count, start + 100))]
        streams += await asyncio.gather(*batch)
    print(f"open {len(streams)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for _, writer in streams:
        writer.close()


asyncio.run(main())
