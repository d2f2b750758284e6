#!/usr/bin/env python3
"""N requests at once through a proxy, for benches/run.sh's cold-start figure.

curl's --parallel-max stops at 300 in the Debian version, so this opens N connections to the
proxy first, then writes N absolute-form requests (as a client with HTTP_PROXY set) as close
together as asyncio allows, and reports how long it took until every answer was read, and the
status of each. Standard library only.

    burst.py --proxy 127.0.0.1:3128 --url http://acme.my.salesforce.com/services/data/v61.0/limits -n 1000
"""

import argparse
import asyncio
import collections
import json
import time


async def one(reader, writer, request, started, go):
    await go.wait()
    writer.write(request)
    await writer.drain()
    data = await reader.read()  # Connection: close: the answer ends at EOF
    done = time.perf_counter()
    writer.close()
    status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "none"
    return status, done - started[0]


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", required=True, help="host:port of the proxy")
    parser.add_argument("--url", required=True, help="absolute http:// URL to request")
    parser.add_argument("-n", type=int, default=1000)
    args = parser.parse_args()
    host, port = args.proxy.rsplit(":", 1)
    target_host = args.url.split("/")[2]
    request = (
        f"GET {args.url} HTTP/1.1\r\nHost: {target_host}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    ).encode()

    connections = await asyncio.gather(
        *(asyncio.open_connection(host, int(port)) for _ in range(args.n))
    )
    go = asyncio.Event()
    started = [0.0]
    tasks = [
        asyncio.create_task(one(r, w, request, started, go)) for r, w in connections
    ]
    await asyncio.sleep(0.2)  # every task is parked on the event
    started[0] = time.perf_counter()
    go.set()
    results = await asyncio.gather(*tasks)
    times = sorted(t for _, t in results)
    print(
        json.dumps(
            {
                "n": args.n,
                "statuses": dict(collections.Counter(s for s, _ in results)),
                "all_answered_ms": round(times[-1] * 1000, 1),
                "p50_ms": round(times[len(times) // 2] * 1000, 1),
                "first_ms": round(times[0] * 1000, 1),
            }
        )
    )


asyncio.run(main())
