"""`eolake-client search|order|download|status`: the client library from the command line.

Credentials from options or the environment: EOLAKE_URL, EOLAKE_API_KEY, or EOLAKE_TOKEN_URL + EOLAKE_CLIENT_ID +
EOLAKE_CLIENT_SECRET (OAuth2 client credentials).

Every failure a user can cause or meet is one line on stderr and an exit code: 1 an order ended failed or canceled,
2 bad arguments or a refusal of the server (its problem detail), 3 a wait timed out, 4 the server cannot be reached,
130 interrupted (Ctrl-C), 141 the reader of the output went away (`… | head`), silently, as other Unix tools do."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import sys
from datetime import datetime

from eolake_client._version import __version__
from eolake_client.auth import ClientCredentials
from eolake_client.client import Client
from eolake_client.errors import EolakeError, QuotaExceeded, Unreachable, from_stac_api_error

PROG = "eolake-client"
EXIT_ORDER_FAILED, EXIT_ERROR, EXIT_TIMEOUT, EXIT_UNREACHABLE = 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141
PARTIAL_DATE = re.compile(r"\d{4}(-\d{2})?")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is in --help)."""

    def error(self, message: str):
        self.exit(EXIT_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def one_line(text: object, limit: int = 400) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def bbox_arg(text: str) -> list[float]:
    """WEST,SOUTH,EAST,NORTH in degrees (EAST < WEST crosses the antimeridian)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected four numbers WEST,SOUTH,EAST,NORTH in degrees, e.g. 1.2,43.4,1.6,43.8"
        )
    west, south, east, north = values
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise argparse.ArgumentTypeError(
            f"{text!r}: longitudes must be within -180..180, latitudes within -90..90 and SOUTH not above NORTH"
        )
    return values


def _instant(text: str) -> datetime | None:
    if text in ("", ".."):
        return None
    if PARTIAL_DATE.fullmatch(text):  # a year or a month, as pystac-client accepts
        text = text + "-01" * (3 - len(text.split("-")))
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=datetime.now().astimezone().tzinfo)


def datetime_arg(text: str) -> str:
    """An RFC 3339 date or date-time, or an interval START/END with `..` for an open end."""
    parts = text.split("/")
    try:
        if len(parts) > 2 or not text or text in ("/", "../.."):
            raise ValueError
        instants = [_instant(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a date or date-time (2023-01-31, 2023-01-31T10:00:00Z) or an interval START/END "
            "with .. for an open end (2023-01-01/2023-06-30, 2023-01-01/..)"
        ) from None
    start, end = instants[0], instants[-1]
    if len(instants) == 2 and start is not None and end is not None and start > end:
        raise argparse.ArgumentTypeError(f"{text!r}: the start is after the end")
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least 1")
    return value


def _item_ref(text: str) -> tuple[str, str]:
    collection, sep, item = text.partition("/")
    if not sep or not collection or not item:
        raise argparse.ArgumentTypeError(f"{text!r}: expected COLLECTION/ITEM")
    return collection, item


def _client(args) -> Client:
    creds = None
    if args.token_url:
        if not (args.client_id and args.client_secret):
            raise EolakeError(0, "--token-url needs --client-id and --client-secret (or EOLAKE_CLIENT_ID/SECRET)")
        creds = ClientCredentials(args.token_url, args.client_id, args.client_secret)
    return Client(
        args.url,
        api_key=args.api_key,
        credentials=creds,
        retries=args.retries + 1,
        backoff=0.25,
        timeout=args.http_timeout,
    )


def _print_order(order: dict) -> None:
    p = order["progress"]
    print(
        f"{order['id']}  {order['status']}  {p['done']}/{p['files']} files  {p['bytes']} bytes ready"
        + (f"  ({order['reason']})" if order.get("reason") else "")
    )
    for f in order["files"]:
        print(
            f"  {f['state']:9} {f['name']}  {f.get('size') or '?'} bytes"
            + (f"  {f['reason']}" if f.get("reason") else "")
        )


def _download(client: Client, order: dict, args) -> int:
    if order["status"] not in ("succeeded", "failed", "canceled"):
        order = client.wait(order["id"], timeout=args.timeout)
    results = client.download(order, args.dest, parallel=args.parallel, progress=not args.quiet, strict=False)
    for r in results:
        print(f"{'skipped ' if r.skipped else 'verified'} {r.path} ({r.size} bytes, {r.transferred} transferred)")
    return 0 if order["status"] == "succeeded" else EXIT_ORDER_FAILED


def _retrieve(client: Client, args) -> int:
    item = client.item(*args.item)
    order = client.retrieve(item)
    _print_order(order)
    if not args.dest:
        return 0
    client.wait_online(item, order["id"], timeout=args.timeout)
    return _download(client, order, args)


def _search(client: Client, args) -> int:
    from pystac_client.exceptions import APIError

    if args.q and not args.federated:
        raise EolakeError(0, "--q searches free text through the federated search: add --federated")
    search = client.federated_search if args.federated else client.search
    kwargs = {
        k: v
        for k, v in (
            ("collections", args.collections),
            ("bbox", args.bbox),
            ("datetime", args.datetime),
            ("q", args.q),
            ("lang", args.lang),
        )
        if v
    }
    try:
        for item in search(max_items=args.limit, **kwargs).items_as_dicts():
            print(
                json.dumps(
                    {
                        "collection": item.get("collection"),
                        "id": item["id"],
                        "datetime": item["properties"].get("datetime"),
                        "assets": sorted(item.get("assets", {})),
                    }
                )
            )
    except APIError as exc:
        url = client.base_url + ("/search" if args.federated else "/stac")
        raise from_stac_api_error(exc, url, client.retries) from exc
    return 0


def _datasets(client: Client, args) -> int:
    params = {k: v for k, v in (("filter", args.filter), ("sortby", args.sortby), ("lang", args.lang)) if v}
    if args.no_expand:
        params["expand"] = False
    answer = client.dataset_search(args.q, limit=args.limit, **params)
    for col in answer.get("collections", []):
        print(
            json.dumps(
                {
                    "id": col["id"],
                    "title": col.get("title"),
                    "providers": col.get("federation:backends"),
                    "score": col.get("search:score"),
                },
                ensure_ascii=False,
            )
        )
    expansion = answer.get("expansion") or {}
    terms = ", ".join(expansion.get("terms") or [])
    print(
        f"{answer.get('numberMatched')} matched"
        + (f"; expanded with: {terms}" if terms else "")
        + (f"; {expansion['error']}" if expansion.get("error") else ""),
        file=sys.stderr,
    )
    return 0


def _download_options(parser: argparse.ArgumentParser, download_help: str | None, wait_help: str) -> None:
    """How a download goes: how many files at once, the longest wait, quiet progress (and --download DIR, for a
    command that downloads only when asked)."""
    if download_help:
        parser.add_argument("--download", dest="dest", metavar="DIR", help=download_help)
    parser.add_argument("--parallel", type=positive_int, default=4, help="files downloaded at once (default 4)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600,
        metavar="SECONDS",
        help=f"{wait_help} (default 3600; exit code 3 when reached)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("--url", default=env("EOLAKE_URL", "http://127.0.0.1:8080"), help="platform base URL")
    p.add_argument("--api-key", default=env("EOLAKE_API_KEY"), help="your API key (or EOLAKE_API_KEY)")
    p.add_argument(
        "--token-url",
        default=env("EOLAKE_TOKEN_URL"),
        help="OAuth2 token endpoint, for a service account's client credentials (or EOLAKE_TOKEN_URL)",
    )
    p.add_argument("--client-id", default=env("EOLAKE_CLIENT_ID"), help="(or EOLAKE_CLIENT_ID)")
    p.add_argument("--client-secret", default=env("EOLAKE_CLIENT_SECRET"), help="(or EOLAKE_CLIENT_SECRET)")
    p.add_argument(
        "--retries",
        type=int,
        choices=range(0, 11),
        default=2,
        metavar="N",
        help="retries of a request that failed on the wire or with a 5xx (0-10, default 2)",
    )
    p.add_argument("--http-timeout", type=float, default=30.0, metavar="SECONDS", help="per request (default 30)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="search the catalog (or --federated); prints one item per line")
    s.add_argument("--collections", nargs="*", help="collection ids")
    s.add_argument("--bbox", type=bbox_arg, metavar="W,S,E,N", help="longitudes and latitudes in degrees")
    s.add_argument(
        "--datetime",
        type=datetime_arg,
        metavar="DATE[/DATE]",
        help="a date or an interval, e.g. 2023-01-01/2023-03-31 (.. for an open end)",
    )
    s.add_argument("--limit", type=positive_int, default=20, help="items to print (default 20)")
    s.add_argument("--federated", action="store_true", help="every provider of the federated search")
    s.add_argument("--q", help="free text (federated search; expanded through the thesaurus)")
    s.add_argument("--lang", help="the language of --q (en, fr)")

    ds = sub.add_parser("datasets", help="search the dataset catalog of every provider; one collection per line")
    ds.add_argument("--q", help="free text, ranked and expanded through the thesaurus")
    ds.add_argument("--lang", help="the language of --q (en, fr)")
    ds.add_argument(
        "--filter", help="CQL2 text on id, title, license, platform, instruments, processing:level, keywords, provider"
    )
    ds.add_argument("--sortby", help="id, title or license, '-' for descending (default: relevance)")
    ds.add_argument("--no-expand", action="store_true", help="do not expand --q through the thesaurus")
    ds.add_argument("--limit", type=positive_int, default=10)

    o = sub.add_parser("order", help="order items COLLECTION/ITEM …; --download DIR waits and downloads")
    o.add_argument("items", nargs="+", type=_item_ref, metavar="COLLECTION/ITEM")
    o.add_argument("--assets", type=lambda t: t.split(","), metavar="A,B", help="only these assets (default: all)")
    _download_options(o, "wait for the order, then download into DIR", "longest wait for the order")

    r = sub.add_parser(
        "retrieve",
        help="stage an offline item COLLECTION/ITEM back online; --download DIR waits "
        "until it is online and downloads it",
    )
    r.add_argument("item", type=_item_ref, metavar="COLLECTION/ITEM")
    _download_options(r, "wait until online, then download into DIR", "longest wait")

    st = sub.add_parser("status", help="an order's status, or my orders without an id")
    st.add_argument("order_id", nargs="?")

    ev = sub.add_parser("events", help="print the platform's events (CloudEvents from its AMQP broker), one per line")
    ev.add_argument(
        "amqp_url",
        nargs="?",
        default=env("EOLAKE_AMQP_URL"),
        metavar="AMQP_URL",
        help="amqp://user:password@host:port/ (or EOLAKE_AMQP_URL)",
    )
    ev.add_argument(
        "--key",
        dest="keys",
        action="append",
        metavar="PATTERN",
        help="routing key pattern, repeatable, e.g. 'catalog.item.*.garonne-wse', 'downloads.order.#' "
        "(default: every event)",
    )
    ev.add_argument("--queue", help="a durable queue of yours: events are kept for you between runs")
    ev.add_argument("--exchange", default="eolake.events")
    ev.add_argument("--limit", type=positive_int, help="stop after this many events")

    d = sub.add_parser("download", help="wait for an order and download its files (resumes, verifies, skips)")
    d.add_argument("order_id")
    d.add_argument("dest", metavar="DIR")
    _download_options(d, None, "longest wait for the order")
    return p


def _events(args) -> int:
    import asyncio

    try:
        import aio_pika

        from eolake_client.events import subscribe
    except ImportError:
        raise EolakeError(0, "events need aio-pika: pip install 'eolake-client[events]'") from None
    for noisy in ("aiormq", "aio_pika"):  # their connection errors are said once, below
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    if not args.amqp_url or not args.amqp_url.startswith(("amqp://", "amqps://")):
        raise EolakeError(0, "give the broker's URL: amqp://user:password@host:port/ (or EOLAKE_AMQP_URL)")

    async def follow() -> None:
        seen = 0
        events = subscribe(args.amqp_url, args.keys or ["#"], queue=args.queue, exchange=args.exchange)
        async with contextlib.aclosing(events):  # the last event is acknowledged before the connection closes
            async for event in events:
                print(json.dumps(event, ensure_ascii=False), flush=True)
                seen += 1
                if args.limit and seen >= args.limit:
                    break

    try:
        asyncio.run(follow())
    except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:  # refused, unknown host, wrong credentials
        return fail(EXIT_UNREACHABLE, f"cannot reach the broker: {exc or type(exc).__name__}")
    return 0


def run(args) -> int:
    if args.command == "events":
        return _events(args)
    with _client(args) as client:
        if args.command == "search":
            return _search(client, args)
        if args.command == "datasets":
            return _datasets(client, args)
        if args.command == "order":
            order = client.order(args.items, assets=args.assets)
            _print_order(order)
            return _download(client, order, args) if args.dest else 0
        if args.command == "retrieve":
            return _retrieve(client, args)
        if args.command == "status":
            for order in [client.status(args.order_id)] if args.order_id else client.orders():
                _print_order(order)
            return 0
        return _download(client, client.status(args.order_id), args)


def fail(code: int, message: object) -> int:
    print(f"{PROG}: {one_line(message)}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler
        return code
    except BrokenPipeError:
        # Whoever read our output stopped (`| head`): no message, and no second error when Python flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted")
    except QuotaExceeded as e:
        return fail(EXIT_ERROR, f"{e.detail} (limit {e.limit}; resets {e.reset}; retry after {e.retry_after} s)")
    except Unreachable as e:
        return fail(EXIT_UNREACHABLE, f"{e}; is the platform running at --url {args.url}?")
    except EolakeError as e:
        return fail(EXIT_ERROR, e if e.status else e.detail)
    except TimeoutError as e:
        return fail(EXIT_TIMEOUT, e)
    except OSError as e:  # the destination directory: permissions, full disk
        return fail(EXIT_ERROR, f"{e.strerror or e}: {e.filename or ''}".rstrip(": "))


if __name__ == "__main__":
    sys.exit(main())
