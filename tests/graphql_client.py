"""A GraphQL client nobody here wrote (gql 4, PyPI) for the API tests.

    graphql_client.py http URL       < {"query": ..., "variables": {...}, "headers": {...}}
    graphql_client.py subscribe URL  < {"query": ..., "variables": {...}, "count": N,
                                         "protocol": "graphql-transport-ws" | "graphql-ws"}

`http` prints one JSON object: {"data": ...} or {"errors": [...]}. `subscribe` prints one
JSON line per message as it arrives, {"at": <unix seconds>, "data": ...} (or
{"errors": [...]}), and exits after `count` messages.
"""

import asyncio
import json
import logging
import os
import sys
import time

from gql import Client, gql
from gql.transport.exceptions import TransportQueryError


def http(url, request):
    from gql.transport.requests import RequestsHTTPTransport

    transport = RequestsHTTPTransport(url=url, headers=request.get("headers") or {}, timeout=10)
    client = Client(transport=transport)
    try:
        data = client.execute(gql(request["query"]), variable_values=request.get("variables"))
        print(json.dumps({"data": data}))
    except TransportQueryError as e:
        print(json.dumps({"errors": e.errors}))


def canonical_subprotocol_header():
    """gql 4.0 looks the negotiated subprotocol up as "Sec-WebSocket-Protocol" in a plain
    dict of the raw response headers, so it misses the lower-case name HTTP/1.1 servers
    may send (actix-web does): header names are case-insensitive (RFC 9110 §5.1)."""
    from gql.transport.common.adapters.websockets import WebSocketsAdapter

    raw = WebSocketsAdapter.response_headers.fget

    def headers(self):
        found = raw(self)
        for name, value in list(found.items()):
            if name.lower() == "sec-websocket-protocol":
                found["Sec-WebSocket-Protocol"] = value
        return found

    WebSocketsAdapter.response_headers = property(headers)


async def subscribe(url, request):
    from gql.transport.websockets import WebsocketsTransport

    canonical_subprotocol_header()

    protocol = request.get("protocol", "graphql-transport-ws")
    subprotocols = [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL] if protocol == "graphql-transport-ws" else [
        WebsocketsTransport.APOLLO_SUBPROTOCOL
    ]
    transport = WebsocketsTransport(
        url=url.replace("http://", "ws://"), headers=request.get("headers") or {}, subprotocols=subprotocols
    )
    count = request.get("count", 1)
    async with Client(transport=transport) as session:
        seen = 0
        try:
            async for data in session.subscribe(gql(request["query"]), variable_values=request.get("variables")):
                print(json.dumps({"at": time.time(), "data": data}), flush=True)
                seen += 1
                if seen >= count:
                    return
        except TransportQueryError as e:
            print(json.dumps({"at": time.time(), "errors": e.errors}), flush=True)


def main():
    if os.environ.get("ISOBAR_GQL_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
    mode, url = sys.argv[1], sys.argv[2]
    request = json.load(sys.stdin)
    if mode == "http":
        http(url, request)
    else:
        asyncio.run(subscribe(url, request))


if __name__ == "__main__":
    main()
