"""Storage tiers on the embedded platform as `eolake up` runs it (the local stack keeps two demo rasters offline):
the Python client finds one orderable, retrieves it, waits until it is online and downloads it, checksums verified."""

from __future__ import annotations

import hashlib

from eolake_client import Client

from eolake.demo import hydrology


def test_a_demo_item_kept_offline_is_retrieved_and_downloaded(platform, tmp_path):
    day = hydrology.OFFLINE_DATES[0]
    c = Client(platform.base_url, api_key=platform.key("user"), backoff=0.1)
    [item] = c.federated_search(collections=["garonne-wse"], ids=[f"garonne-wse-{day:%Y-%m-%d}"]).items_as_dicts()
    assert item["properties"]["storage:tier"] == "offline" and item["properties"]["order:status"] == "orderable"
    [retrieve] = [link for link in item["links"] if link["rel"] == "retrieve"]
    assert retrieve["href"] == f"{platform.base_url}/downloads/retrievals"

    results = c.obtain(item, tmp_path, timeout=120, interval=0.2)
    expected = {f"{item['id']}-{key}.tif": asset["file:checksum"] for key, asset in item["assets"].items()}
    assert {r.path.name: "1220" + hashlib.sha256(r.path.read_bytes()).hexdigest() for r in results} == expected
    online = c.item("garonne-wse", item["id"])
    assert online["properties"]["storage:tier"] == "online"
    assert all(a["href"].startswith(str(platform.state / "data")) for a in online["assets"].values())
