"""The web view's pages in headless Chromium (tests/web_browser.py): collections with their counts and pages, the
dataset search (suggestions, thesaurus, facets), item search, an item's tile preview, a station's chart, the
services page, every API documentation page offline, and every page at a phone's width with no console error."""

from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from web_browser import (
    BROWSER_TESTS,
    ITEM,
    LAPTOP,
    PHONE,
    SHOTS,
    console_errors,
    open_route,
    overflow,
    ready,
    shot,
    until,
    viewport,
)

pytestmark = BROWSER_TESTS


def test_search_item_preview_station_chart_and_services(platform, browser):
    base = platform.base_url
    ready(base, "")
    ready(base, "/stac")
    browser.get_log("browser")  # start clean

    open_route(browser, base, "#/collections")
    until(browser, "return document.querySelectorAll('#coll-list li').length >= 5", "collections not listed")
    shot(browser, "laptop-collections")

    # Search: free text + collection; footprints on the map, list synced, next-link pagination.
    open_route(browser, base, "#/search")
    until(browser, "return document.querySelectorAll('#s-coll option').length > 1", "collections not in the form")
    browser.find_element(By.ID, "s-q").send_keys("garonne")
    browser.execute_script("document.getElementById('s-coll').value = 'garonne-wse'")
    browser.find_element(By.ID, "s-submit").click()
    until(browser, "return document.querySelectorAll('#s-results li').length === 20", "no search results")
    assert "Results 1–20" in browser.find_element(By.ID, "s-status").text
    drawn = browser.execute_script("return window.eolake.map.map.getSource('footprints')._data.features.length")
    assert drawn == 20, "every result has its footprint on the map"
    first = browser.find_element(By.CSS_SELECTOR, "#s-results li a")
    first.send_keys(Keys.NULL)  # keyboard focus on the first result highlights its footprint
    until(browser, "return document.querySelector('#s-results li.hl') !== null", "focus does not highlight")
    shot(browser, "laptop-search")
    browser.find_element(By.ID, "s-next").click()
    until(browser, "return document.querySelectorAll('#s-results li').length === 4", "next page not shown")

    # Item: properties, assets, and the tile preview drawn from tiles the tile service served.
    ready(base, "/tiles")
    open_route(browser, base, f"#/items/garonne-wse/{ITEM}")
    until(browser, "return document.querySelector('#properties') !== null", "item page not shown")
    until(
        browser,
        "return Number(document.getElementById('map').dataset.previewTiles || 0) > 0",
        "no preview tile was drawn",
    )
    tiles = browser.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/tiles/collections/')"
        " && e.name.includes('/tiles/WebMercatorQuad/')).map(e => [e.name, e.responseStatus])"
    )
    assert tiles and all(status == 200 for _, status in tiles), tiles
    assert httpx.get(tiles[0][0], timeout=30).headers["content-type"].startswith("image/")
    assert browser.execute_script("return window.eolake.previewTiles.failed") == 0
    shot(browser, "laptop-item-preview")

    # Hydrology: the stations on the map, a click on one draws its chart with the uncertainty band.
    ready(base, "/timeseries")
    open_route(browser, base, "#/hydrology")
    until(browser, "return document.querySelectorAll('#h-list button.station').length === 6", "stations missing")
    assert browser.execute_script("return window.eolake.map.map.getSource('stations')._data.features.length") == 6
    browser.find_element(By.CSS_SELECTOR, "#h-list button.station").click()
    until(browser, "return Number(document.getElementById('h-chart').dataset.points || 0) > 10", "no chart")
    assert browser.find_element(By.CSS_SELECTOR, "#h-chart canvas").get_attribute("aria-label")
    full = int(browser.find_element(By.ID, "h-chart").get_attribute("data-points"))
    start = browser.find_element(By.ID, "h-start")
    browser.execute_script("arguments[0].value = '2023-06-01'", start)
    browser.find_element(By.CSS_SELECTOR, "#h-range button").click()
    until(
        browser,
        f"return Number(document.getElementById('h-chart').dataset.points) < {full}",
        "the date range did not narrow the series",
    )
    shot(browser, "laptop-station-chart")

    # A collection names the services that serve it, each a link to its record on the services page.
    open_route(browser, base, "#/collections/garonne-wse")
    served = browser.execute_script("return [...document.querySelectorAll('#coll-services a')].map(a => a.textContent)")
    assert served == ["catalog", "search", "tiles", "downloads"], served
    browser.find_element(By.CSS_SELECTOR, '#coll-services a[href="#/services?q=tiles"]').click()
    until(
        browser,
        "return document.querySelectorAll('#services li').length === 1"
        " && document.querySelector('#services li').dataset.service === 'tiles'",
        "tiles record not shown",
    )

    # Services: every service of the catalog (/services.json) with its live readiness through the same origin.
    open_route(browser, base, "#/services")
    until(
        browser,
        "return document.querySelectorAll('#services li').length > 0"
        " && !document.querySelector('#services li[data-state=\"checking\"]')",
        "checks hang",
    )
    states = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#services li')]"
        ".map(r => [r.dataset.service, r.dataset.state]))"
    )
    records = httpx.get(f"{base}/services.json", timeout=30).json()["features"]
    assert sorted(states) == sorted(r["id"] for r in records) and len(records) >= 7, states
    assert set(states.values()) == {"ready"}, states
    docs = browser.execute_script(
        "return [...document.querySelectorAll('#services a[data-rel=\"service-doc\"]')]"
        ".map(a => a.getAttribute('href'))"
    )
    assert len(docs) == len(records) - 1, docs  # every service but the web view documents its API
    until(browser, "return document.querySelectorAll('#providers li').length > 0", "no federated providers listed")
    shot(browser, "laptop-services")

    assert console_errors(browser) == []


def test_collection_counts_pages_and_empty_collections(platform, browser):
    """The collections page states the catalog's own total, marks the collections without items, and shows paging
    buttons only when there is such a page (the federated dataset search has hundreds)."""
    base = platform.base_url
    ready(base, "/search")
    browser.get_log("browser")
    local = httpx.get(f"{base}/stac/collections", params={"limit": 100}, timeout=30).json()
    empty = sorted(
        c["id"]
        for c in local["collections"]
        if not httpx.get(f"{base}/stac/collections/{c['id']}/items", params={"limit": 1}, timeout=30).json()["features"]
    )
    assert empty, "the demo has empty collections (sentinel-2-l2a, landsat-c2-l2)"
    open_route(browser, base, "#/collections")
    until(
        browser,
        f"return document.querySelectorAll('#coll-list .count.done').length === {len(local['collections'])}",
        "item counts not shown",
    )
    assert browser.find_element(By.ID, "coll-status").text == f"{local['numberMatched']} collections."
    assert (
        sorted(
            browser.execute_script(
                "return [...document.querySelectorAll('#coll-list li.empty .count')].map(e => e.dataset.collection)"
            )
        )
        == empty
    )
    assert not browser.find_element(By.ID, "coll-pager").is_displayed()

    found = httpx.get(f"{base}/search/collections", params={"q": "sentinel", "limit": 50}, timeout=30).json()
    matched = found["numberMatched"]
    assert matched > 50, matched
    open_route(browser, base, "#/collections?q=sentinel")
    until(browser, "return document.querySelectorAll('#coll-list li').length === 50", "datasets not listed")
    assert browser.find_element(By.ID, "coll-status").text == f"Collections 1–50 of {matched} matching “sentinel”."
    assert browser.find_element(By.ID, "coll-pager-next").is_displayed()
    assert not browser.find_element(By.ID, "coll-pager-prev").is_displayed()
    browser.find_element(By.ID, "coll-pager-next").click()
    last = min(100, matched)
    until(
        browser,
        f"return document.getElementById('coll-status').textContent.startsWith('Collections 51–{last} ')",
        "the next page was not shown",
    )
    assert browser.find_element(By.ID, "coll-status").text == f"Collections 51–{last} of {matched} matching “sentinel”."
    assert browser.find_element(By.ID, "coll-pager-prev").is_displayed()
    assert browser.find_element(By.ID, "coll-pager-next").is_displayed() == (matched > 100)
    shot(browser, "laptop-collections-page-2")
    browser.find_element(By.ID, "coll-pager-prev").click()
    until(
        browser,
        "return document.getElementById('coll-status').textContent.startsWith('Collections 1–50 ')",
        "the previous page was not shown",
    )
    assert console_errors(browser) == []


def test_dataset_search_suggests_explains_and_narrows_by_facets(platform, browser):
    base = platform.base_url
    ready(base, "/search")
    ready(base, "/thesaurus")
    open_route(browser, base, "#/collections")
    box = browser.find_element(By.ID, "coll-q")
    box.send_keys("sécheresse")
    until(browser, "return document.querySelectorAll('#coll-suggest [role=option]').length > 0", "no suggestions")
    options = browser.find_elements(By.CSS_SELECTOR, "#coll-suggest [role=option]")
    assert any(o.text.lower().startswith("sécheresse") for o in options), [o.text for o in options]
    assert box.get_attribute("aria-expanded") == "true" and box.get_attribute("role") == "combobox"
    box.send_keys(Keys.ARROW_DOWN)  # the keyboard walks the list: the first option becomes the active one
    assert box.get_attribute("aria-activedescendant") == "coll-suggest-0"
    assert browser.find_element(By.ID, "coll-suggest-0").get_attribute("aria-selected") == "true"
    box.send_keys(Keys.ESCAPE)
    assert box.get_attribute("aria-expanded") == "false"
    box.send_keys(Keys.ENTER)

    until(
        browser,
        "return location.hash.includes('q=') && document.getElementById('coll-status')?.dataset.matched !== undefined",
        "no results",
    )
    expansion = browser.find_element(By.ID, "coll-expansion")
    assert "drought" in expansion.text.lower(), expansion.text  # the English concept searched, shown
    expansion.find_element(By.TAG_NAME, "summary").click()
    assert "named by" in expansion.find_element(By.CSS_SELECTOR, "ul.why").text
    related = expansion.find_element(By.CSS_SELECTOR, "ul.why li.related").text.lower()
    assert "soil moisture" in related and "related to" in related, related  # the drought's related needs, said why
    assert browser.find_elements(By.CSS_SELECTOR, "#coll-list li")  # English datasets, found in French

    matched = int(browser.find_element(By.ID, "coll-status").get_attribute("data-matched"))
    browser.find_element(By.CSS_SELECTOR, "#coll-facets summary").click()
    providers = browser.find_elements(By.CSS_SELECTOR, "fieldset[data-facet=provider] button.facet-value")
    assert providers and all(0 < int(b.get_attribute("data-count")) <= matched for b in providers)
    narrower = min(providers, key=lambda b: int(b.get_attribute("data-count")))
    value, count = narrower.get_attribute("data-value"), int(narrower.get_attribute("data-count"))
    narrower.click()
    until(
        browser,
        f"return document.getElementById('coll-status')?.dataset.matched === '{count}'",
        "the facet did not narrow the results to its count",
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#coll-list li")) == min(count, 50)
    chosen = browser.find_element(By.CSS_SELECTOR, "fieldset[data-facet=provider] button[aria-pressed=true]")
    assert chosen.get_attribute("data-value") == value and int(chosen.get_attribute("data-count")) == count
    browser.find_element(By.CSS_SELECTOR, "#coll-chosen button.chip").click()  # removing it widens back
    until(
        browser,
        f"return document.getElementById('coll-status')?.dataset.matched === '{matched}'",
        "removing the facet did not restore the results",
    )
    assert not console_errors(browser)


def test_datasets_are_browsed_by_facets_without_free_text(platform, browser):
    """The collections page lists the platform's own collections and offers every provider's datasets by facet
    beside them; a time span chosen lists the federated datasets of that decade, and its facets narrow further."""
    base = platform.base_url
    ready(base, "/search")
    open_route(browser, base, "#/collections")
    until(browser, "return !document.getElementById('coll-facets').hidden", "no facets without free text")
    title = browser.find_element(By.ID, "coll-facets-title")
    everything = httpx.get(f"{base}/search/collections", params={"limit": 1}, timeout=30).json()
    assert title.text == f"Browse all {everything['numberMatched']} datasets of every provider"
    title.click()
    decades = browser.find_elements(By.CSS_SELECTOR, "fieldset[data-facet=decade] button.facet-value")
    shown = [b.get_attribute("data-value") for b in decades]
    assert len(shown) > 1 and shown == sorted(shown)  # in time, not by count
    chosen = max(decades, key=lambda b: int(b.get_attribute("data-count")))
    value, count = chosen.get_attribute("data-value"), int(chosen.get_attribute("data-count"))
    assert count < everything["numberMatched"]
    chosen.click()
    until(
        browser,
        f"return document.getElementById('coll-status')?.dataset.matched === '{count}'",
        "the time span did not narrow the datasets to its count",
    )
    assert f"decade={value}" in browser.execute_script("return location.hash")
    pressed = browser.find_element(By.CSS_SELECTOR, "fieldset[data-facet=decade] button[aria-pressed=true]")
    assert pressed.get_attribute("data-value") == value
    providers = browser.find_elements(By.CSS_SELECTOR, "fieldset[data-facet=provider] button.facet-value")
    assert providers and all(int(b.get_attribute("data-count")) <= count for b in providers)
    assert not console_errors(browser)


SIGNED_IN = "return document.getElementById('o-signout') !== null"


def every_page(base: str, key: str) -> dict[str, tuple[str, str]]:
    """Each page of the web view (name → route, and a script that is true once it has loaded): every section and a
    detail page of each kind, an order of the demo user's among them."""
    naip = httpx.get(f"{base}/stac/search", params={"collections": "naip", "limit": 1}, timeout=30).json()
    order = httpx.post(
        f"{base}/downloads/orders",
        headers={"X-API-Key": key},
        timeout=30,
        json={"items": [{"collection": "garonne-wse", "id": ITEM}]},
    )
    assert order.status_code in (200, 201, 202), order.text
    return {
        "collections": ("#/collections", "return document.querySelectorAll('#coll-list li .count.done').length >= 5"),
        "collection": ("#/collections/naip", "return document.querySelector('.md') !== null"),
        "empty collection": ("#/collections/sentinel-2-l2a", "return document.querySelector('#coll-items.empty')"),
        "search": ("#/search?collections=naip", "return document.querySelectorAll('#s-results li').length > 0"),
        "item": (f"#/items/naip/{naip['features'][0]['id']}", "return document.querySelector('#properties') !== null"),
        "hydrology": ("#/hydrology", "return document.querySelectorAll('#h-list button.station').length === 6"),
        "station": (
            "#/hydrology/GARONNE_KM0328",
            "return Number(document.getElementById('h-chart').dataset.points) > 0",
        ),
        "services": (
            "#/services",
            "return !document.querySelector('#services li[data-state=\"checking\"]')"
            " && document.querySelectorAll('#services li').length > 0",
        ),
        "basket": ("#/basket", "return document.getElementById('b-status') !== null"),
        "orders": ("#/orders", SIGNED_IN + " && document.querySelectorAll('#o-list li').length > 0"),
        "order": (
            f"#/orders/{order.json()['id']}",
            "return document.querySelectorAll('#od-files tbody tr').length > 0",
        ),
        "not found": ("#/no-such-page", "return document.querySelector('main h1').textContent === 'Page not found'"),
        # The demo user is no administrator: the console asks its proxy, is refused (403) and says so.
        "console": ("#/console", "return document.body.dataset.console === 'forbidden'"),
    }


def test_phone_width_every_page_fits(platform, browser):
    """Every page, at 390 px: nothing wider than the screen and no console error. A section of the navigation that
    this list does not know yet is still visited (loaded: its heading shows)."""
    base = platform.base_url
    ready(base, "/downloads")
    key = (platform.state / "user.key").read_text().strip()
    pages = every_page(base, key)
    open_route(browser, base, "#/collections")
    browser.execute_script(
        "sessionStorage.setItem('eolake.session', JSON.stringify({apiKey: arguments[0], who: 'API key'}))", key
    )
    sections = browser.execute_script(
        "return [...document.querySelectorAll('nav a[data-nav]')].map(a => a.getAttribute('href'))"
    )
    known = {route.split("?")[0] for route, _ in pages.values()}
    for route in sections:
        if route not in known:
            pages[route] = (route, "return document.querySelector('main h1') !== null")
    viewport(browser, *PHONE)
    try:
        browser.get_log("browser")
        for name, (route, loaded) in pages.items():
            open_route(browser, base, route)
            until(browser, loaded, f"{name} did not load at phone width")
            assert overflow(browser) == [], name
            refused = "/console/api/" if name == "console" else None  # the browser logs the answer it expected
            assert [e for e in console_errors(browser) if not (refused and refused in e and "403" in e)] == [], name
            shot(browser, f"phone-{name.replace(' ', '-').strip('#/')}")
        # The map folds away and back.
        open_route(browser, base, "#/collections")
        toggle = browser.find_element(By.ID, "map-toggle")
        toggle.click()
        assert toggle.get_attribute("aria-expanded") == "false"
        assert not browser.find_element(By.ID, "map").is_displayed()
        toggle.click()
        assert browser.find_element(By.ID, "map").is_displayed()
        assert console_errors(browser) == []
    finally:
        viewport(browser, *LAPTOP)
        browser.execute_script("sessionStorage.clear()")


def test_phone_width(platform, browser):
    base = platform.base_url
    viewport(browser, *PHONE)
    try:
        browser.get_log("browser")
        open_route(browser, base, "#/collections")
        until(browser, "return document.querySelectorAll('#coll-list li').length >= 5", "collections not listed")
        assert overflow(browser) == []
        shot(browser, "phone-collections")
        open_route(browser, base, f"#/items/garonne-wse/{ITEM}")
        until(
            browser,
            "return Number(document.getElementById('map').dataset.previewTiles || 0) > 0",
            "no preview tile was drawn",
        )
        shot(browser, "phone-item-preview")
        open_route(browser, base, "#/hydrology")
        until(browser, "return document.querySelectorAll('#h-list button.station').length === 6", "no stations")
        browser.find_element(By.CSS_SELECTOR, "#h-list button.station").click()
        until(browser, "return Number(document.getElementById('h-chart').dataset.points || 0) > 10", "no chart")
        browser.execute_script("document.getElementById('h-station').scrollIntoView()")
        shot(browser, "phone-station-chart")
        assert console_errors(browser) == []
    finally:
        viewport(browser, *LAPTOP)


def test_naip_item_says_no_preview(platform, browser):
    base = platform.base_url
    search = httpx.get(f"{base}/stac/search", params={"collections": "naip", "limit": 1}, timeout=30).json()
    naip = search["features"][0]["id"]
    browser.get_log("browser")
    open_route(browser, base, f"#/items/naip/{naip}")
    until(browser, "return document.getElementById('preview-status') !== null", "item page not shown")
    assert browser.find_element(By.ID, "preview-status").text.startswith("No preview")
    links = browser.find_elements(By.CSS_SELECTOR, "#assets a[download]")
    assert links, "external assets have download links"
    assert console_errors(browser) == []


def test_every_api_docs_page_renders_offline(platform, browser):
    """Each service's documentation page (named by its /readyz) draws its operations; nothing leaves the origin but
    the reading of the platform's identity provider's discovery document."""
    base, issuer = platform.base_url, platform.issuer.issuer
    records = httpx.get(f"{base}/services.json", timeout=30).json()["features"]
    pages = {}
    for record in records:
        status = next(link["href"] for link in record["links"] if link["rel"] == "status")
        links = httpx.get(base + status, timeout=30).json().get("links", [])
        docs = [link["href"] for link in links if link["rel"] == "service-doc"]
        if docs:
            pages[record["id"]] = docs[0]
    assert sorted(pages) == sorted(r["id"] for r in records if r["id"] != "web"), pages
    for name, href in pages.items():
        browser.get_log("browser")
        browser.get(base + href)
        until(
            browser,
            "return document.querySelectorAll('.swagger-ui .opblock').length > 0",
            f"{name}: {href} shows no operation",
        )
        requests = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        # The one request elsewhere: the identity provider's discovery document (to offer signing in).
        elsewhere = [r for r in requests if not r.startswith(base + "/")]
        assert requests and set(elsewhere) <= {f"{issuer}/.well-known/openid-configuration"}, (name, requests)
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], (name, errors)
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / f"api-docs-{name}.png"))
