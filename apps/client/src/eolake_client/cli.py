"""`eolake-client search|order|download|status`: the client library from the command line.

Credentials from options or the environment: EOLAKE_URL, EOLAKE_API_KEY, or EOLAKE_TOKEN_URL + EOLAKE_CLIENT_ID +
EOLAKE_CLIENT_SECRET (OAuth2 client credentials)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from eolake_client.auth import ClientCredentials
from eolake_client.client import Client
from eolake_client.errors import EolakeError, QuotaExceeded


def _client(args) -> Client:
    creds = None
    if args.token_url:
        if not (args.client_id and args.client_secret):
            raise SystemExit("--token-url needs --client-id and --client-secret (or EOLAKE_CLIENT_ID/SECRET)")
        creds = ClientCredentials(args.token_url, args.client_id, args.client_secret)
    return Client(args.url, api_key=args.api_key, credentials=creds)


def _item_ref(text: str) -> tuple[str, str]:
    collection, sep, item = text.partition("/")
    if not sep or not collection or not item:
        raise argparse.ArgumentTypeError(f"{text!r}: expected COLLECTION/ITEM")
    return collection, item


def _print_order(order: dict) -> None:
    p = order["progress"]
    print(f"{order['id']}  {order['status']}  {p['done']}/{p['files']} files  {p['bytes']} bytes ready"
          + (f"  ({order['reason']})" if order.get("reason") else ""))
    for f in order["files"]:
        print(f"  {f['state']:9} {f['name']}  {f.get('size') or '?'} bytes" + (f"  {f['reason']}" if f.get("reason")
                                                                              else ""))


def _download(client: Client, order: dict, args) -> int:
    if order["status"] not in ("succeeded", "failed", "canceled"):
        order = client.wait(order["id"], timeout=args.timeout)
    results = client.download(order, args.dest, parallel=args.parallel, progress=not args.quiet, strict=False)
    for r in results:
        print(f"{'skipped ' if r.skipped else 'verified'} {r.path} ({r.size} bytes, {r.transferred} transferred)")
    return 0 if order["status"] == "succeeded" else 1


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="eolake-client", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=env("EOLAKE_URL", "http://127.0.0.1:8080"), help="platform base URL")
    parser.add_argument("--api-key", default=env("EOLAKE_API_KEY"))
    parser.add_argument("--token-url", default=env("EOLAKE_TOKEN_URL"))
    parser.add_argument("--client-id", default=env("EOLAKE_CLIENT_ID"))
    parser.add_argument("--client-secret", default=env("EOLAKE_CLIENT_SECRET"))
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="search the catalog (or --federated); prints one item per line")
    s.add_argument("--collections", nargs="*")
    s.add_argument("--bbox", type=lambda t: [float(v) for v in t.split(",")])
    s.add_argument("--datetime")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--federated", action="store_true")

    o = sub.add_parser("order", help="order items COLLECTION/ITEM …; --download DIR waits and downloads")
    o.add_argument("items", nargs="+", type=_item_ref)
    o.add_argument("--assets", type=lambda t: t.split(","))
    o.add_argument("--download", dest="dest")
    o.add_argument("--parallel", type=int, default=4)
    o.add_argument("--timeout", type=float, default=3600)
    o.add_argument("--quiet", action="store_true")

    st = sub.add_parser("status", help="an order's status, or my orders without an id")
    st.add_argument("order_id", nargs="?")

    d = sub.add_parser("download", help="wait for an order and download its files (resumes, verifies, skips)")
    d.add_argument("order_id")
    d.add_argument("dest")
    d.add_argument("--parallel", type=int, default=4)
    d.add_argument("--timeout", type=float, default=3600)
    d.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    try:
        with _client(args) as client:
            if args.command == "search":
                search = client.federated_search if args.federated else client.search
                kwargs = {k: v for k, v in (("collections", args.collections), ("bbox", args.bbox),
                                            ("datetime", args.datetime)) if v}
                for item in search(max_items=args.limit, **kwargs).items_as_dicts():
                    print(json.dumps({"collection": item.get("collection"), "id": item["id"],
                                      "datetime": item["properties"].get("datetime"),
                                      "assets": sorted(item.get("assets", {}))}))
                return 0
            if args.command == "order":
                order = client.order(args.items, assets=args.assets)
                _print_order(order)
                return _download(client, order, args) if args.dest else 0
            if args.command == "status":
                for order in [client.status(args.order_id)] if args.order_id else client.orders():
                    _print_order(order)
                return 0
            if args.command == "download":
                return _download(client, client.status(args.order_id), args)
    except QuotaExceeded as e:
        print(f"error: {e.detail} (limit {e.limit}; resets {e.reset}; retry after {e.retry_after} s)",
              file=sys.stderr)
        return 2
    except EolakeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TimeoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
