"""Realistic STAC items at any count: NAIP, Sentinel-2 L2A and Landsat C2 L2, spread in space and time.

Built from the metadata in shared/data/stac: the 1,000 real NAIP items are the templates of the NAIP ones (assets,
links, properties), moved to a random place in the conterminous US and a random year of the programme; Sentinel-2
and Landsat items take their assets from the collections' `item_assets` and their properties from the collections'
summaries (platform, instruments, gsd, view angles), with a random cloud cover, a scene-sized footprint anywhere on
land latitudes and a date within the mission's life. The collections are written with summaries that describe the
generated items (states and years for NAIP, the cloud cover range for the others), as a publisher would.

Deterministic for a seed. Shares: 50 % NAIP, 30 % Sentinel-2, 20 % Landsat.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eolake.paths import SHARED_DATA

DATA = SHARED_DATA / "stac"
STATES = [
    "al",
    "az",
    "ca",
    "co",
    "fl",
    "ga",
    "ia",
    "il",
    "ks",
    "mn",
    "mo",
    "mt",
    "nc",
    "ne",
    "ny",
    "oh",
    "ok",
    "or",
    "pa",
    "sd",
    "tn",
    "tx",
    "ut",
    "va",
    "wa",
    "wi",
]
SHARES = (("naip", 0.5), ("sentinel-2-l2a", 0.3), ("landsat-c2-l2", 0.2))
LANDSAT = [
    ("landsat-5", ["tm"], 1984, 2012),
    ("landsat-7", ["etm+"], 1999, 2022),
    ("landsat-8", ["oli", "tirs"], 2013, 2025),
    ("landsat-9", ["oli", "tirs"], 2021, 2025),
]


def _when(rng: random.Random, first: int, last: int) -> str:
    start = datetime(first, 1, 1, tzinfo=UTC)
    moment = start + timedelta(seconds=rng.uniform(0, (datetime(last, 12, 31, tzinfo=UTC) - start).total_seconds()))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _box(west: float, south: float, width: float, height: float) -> tuple[list[float], dict]:
    east, north = west + width, south + height
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return [west, south, east, north], {
        "type": "Polygon",
        "coordinates": [[[round(x, 6), round(y, 6)] for x, y in ring]],
    }


def _naip(rng: random.Random, template: dict, n: int) -> dict:
    item = json.loads(json.dumps(template))
    year = rng.randint(2010, 2023)
    bbox, geometry = _box(rng.uniform(-124, -68), rng.uniform(25.5, 48.5), 0.07, 0.07)
    item.update(
        id=f"naip-g{n}",
        bbox=[round(v, 6) for v in bbox],
        geometry=geometry,
        links=[link for link in item.get("links", []) if link.get("rel") != "self"],
    )
    item["properties"].update(
        {
            "datetime": _when(rng, year, year),
            "naip:state": rng.choice(STATES),
            "naip:year": str(year),
            "gsd": rng.choice([0.3, 0.6, 1.0]),
        }
    )
    return item


def _scene(rng: random.Random, collection: dict, n: int, size: float) -> dict:
    cid = collection["id"]
    bbox, geometry = _box(rng.uniform(-180, 180 - size), rng.uniform(-56, 72), size, size * 0.9)
    if cid == "landsat-c2-l2":
        platform, instruments, first, last = rng.choice(LANDSAT)
        props = {"platform": platform, "instruments": instruments, "gsd": 30, "view:off_nadir": rng.randint(0, 15)}
    else:
        first, last = 2016, 2025
        props = {
            "platform": rng.choice(["Sentinel-2A", "Sentinel-2B"]),
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "gsd": 10,
            "s2:mgrs_tile": f"{rng.randint(1, 60):02d}TCH",
        }
    props.update({"datetime": _when(rng, first, last), "eo:cloud_cover": round(rng.uniform(0, 100), 2)})
    assets = {
        key: {**meta, "href": f"https://data.example.org/{cid}/{n}/{key}"}
        for key, meta in collection.get("item_assets", {}).items()
    }
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"{cid}-g{n}",
        "collection": cid,
        "bbox": bbox,
        "geometry": geometry,
        "properties": props,
        "assets": assets,
        "links": [],
    }


def collections() -> dict[str, dict]:
    found = {
        c["id"]: c
        for c in map(json.loads, (DATA / "pc-collections" / "collections.ndjson").read_text().splitlines())
        if c.get("id")
    }
    found["naip"]["summaries"] = {
        **found["naip"].get("summaries", {}),
        "naip:state": STATES,
        "naip:year": [str(y) for y in range(2010, 2024)],
    }
    for cid in ("sentinel-2-l2a", "landsat-c2-l2"):
        found[cid]["summaries"] = {**found[cid].get("summaries", {}), "eo:cloud_cover": {"minimum": 0, "maximum": 100}}
    return {cid: found[cid] for cid, _ in SHARES}


def generate(count: int, out: Path, seed: int = 16, start: int = 0) -> list[tuple[str, str, list[float], str]]:
    """Write items number `start`…`count - 1` to `out` (ndjson); returns (collection, id, bbox, datetime) of each."""
    rng = random.Random(seed * 1_000_003 + start)
    templates = [json.loads(line) for line in (DATA / "naip" / "items.ndjson").read_text().splitlines() if line]
    known = collections()
    written = []
    with out.open("w") as f:
        for n in range(start, count):
            roll, cid = rng.random(), "landsat-c2-l2"
            if roll < SHARES[0][1]:
                cid = "naip"
            elif roll < SHARES[0][1] + SHARES[1][1]:
                cid = "sentinel-2-l2a"
            if cid == "naip":
                item = _naip(rng, templates[n % len(templates)], n)
            else:
                item = _scene(rng, known[cid], n, 1.0 if cid == "sentinel-2-l2a" else 1.8)
            f.write(json.dumps(item, separators=(",", ":")) + "\n")
            written.append((cid, item["id"], item["bbox"], item["properties"]["datetime"]))
    return written
