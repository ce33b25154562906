"""How long a WebSocket client waits for a clean close (python websockets, a client
nobody here wrote): connect, close with 1000, until the server has dropped the TCP
connection (RFC 6455 §7.1.1: clients wait for the server to close it first).

    $ISOBAR_TEST_PYTHON loadtests/ws-close.py http://127.0.0.1:8080 [ROUNDS]

against `isobar serve --profile demo`; prints each endpoint's closes in milliseconds.
"""

import asyncio
import statistics
import sys
import time

import websockets


async def main(base, rounds):
    ws_base = base.replace("http://", "ws://")
    for path in ["/v1/ws", "/ws/weather/KJFK"]:
        times = []
        for _ in range(rounds):
            async with websockets.connect(ws_base + path) as ws:
                if path != "/v1/ws":
                    await ws.recv()  # the snapshot
                started = time.perf_counter()
                await ws.close()
                times.append((time.perf_counter() - started) * 1000)
        print(f"{path}: {rounds} closes, median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10))
