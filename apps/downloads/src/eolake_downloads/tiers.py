"""Storage tiers and ordering of catalog items (STAC storage and order extensions), and where an asset's bytes may
come from (providers, by priority). No framework here: plain dictionaries in, plain dictionaries out.

An offline item carries `storage:tier: offline`, `order:status: orderable` and a `retrieve` link (POST, with the
body the client sends back) in the catalog; its assets point into the slow tier. Retrieving it stages its assets
back online; the item then says `storage:tier: online`, `order:status: succeeded`, and its assets point online.

An asset's providers: `local` (its own href) and each of its alternates (STAC alternate-assets extension, keyed by
provider name). A collection's priority list (the platform spec's `priorities`) orders them; those it does not name
follow, the asset's own href first.
"""

from __future__ import annotations

import copy
from typing import Any

STORAGE_EXT = "https://stac-extensions.github.io/storage/v1.0.0/schema.json"
ORDER_EXT = "https://stac-extensions.github.io/order/v1.1.0/schema.json"
TIER, STATUS = "storage:tier", "order:status"
OFFLINE, ONLINE = "offline", "online"
LOCAL = "local"  # the provider of an asset's own href: this platform's storage
RETRIEVE = "retrieve"


class NoSuchProvider(ValueError):
    pass


def is_offline(item: dict[str, Any]) -> bool:
    return (item.get("properties") or {}).get(TIER) == OFFLINE


def retrieve_link(href: str, collection: str, item_id: str) -> dict[str, Any]:
    """The link an orderable item carries: POST `body` to `href` to stage it back online."""
    return {
        "rel": RETRIEVE,
        "href": href,
        "method": "POST",
        "type": "application/json",
        "title": "Stage this item back online (a download order)",
        "body": {"collection": collection, "id": item_id},
    }


def _with_extensions(item: dict[str, Any], *extensions: str) -> None:
    present = item.setdefault("stac_extensions", [])
    present += [e for e in extensions if e not in present]


def mark_offline(item: dict[str, Any], retrieve_href: str) -> dict[str, Any]:
    """A copy of the item as an orderable placeholder of a product kept in the offline tier."""
    out = copy.deepcopy(item)
    out["properties"] |= {TIER: OFFLINE, STATUS: "orderable"}
    out["links"] = [link for link in out.get("links") or [] if link.get("rel") != RETRIEVE]
    out["links"].append(retrieve_link(retrieve_href, out["collection"], out["id"]))
    _with_extensions(out, STORAGE_EXT, ORDER_EXT)
    return out


def mark_online(item: dict[str, Any], hrefs: dict[str, str]) -> dict[str, Any]:
    """A copy of the item once retrieved: online, the order succeeded, `hrefs` (asset key → href) where it is now."""
    out = copy.deepcopy(item)
    out["properties"] |= {TIER: ONLINE, STATUS: "succeeded"}
    out["links"] = [link for link in out.get("links") or [] if link.get("rel") != RETRIEVE]
    for key, href in hrefs.items():
        out["assets"][key]["href"] = href
    _with_extensions(out, STORAGE_EXT, ORDER_EXT)
    return out


def providers_of(asset: dict[str, Any]) -> dict[str, str]:
    """Provider name → href of every place the asset can be fetched from."""
    found = {LOCAL: str(asset.get("href") or "")}
    for name, alternate in (asset.get("alternate") or {}).items():
        if isinstance(alternate, dict) and alternate.get("href"):
            found.setdefault(str(name), str(alternate["href"]))
    return found


def ranked_sources(asset: dict[str, Any], priority: list[str], only: str | None = None) -> list[dict[str, Any]]:
    """Where to fetch the asset from, in the order to try: [{provider, href}]. `only`: that provider alone
    (NoSuchProvider when the asset has none by that name)."""
    available = providers_of(asset)
    if only is not None:
        if only not in available:
            raise NoSuchProvider(f"provider {only!r} has no copy of it (providers: {', '.join(available)})")
        return [{"provider": only, "href": available[only]}]
    order = [p for p in priority if p in available] + [p for p in available if p not in priority]
    return [{"provider": p, "href": available[p]} for p in order]
