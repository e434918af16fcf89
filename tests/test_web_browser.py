"""The web view end to end: the embedded platform (`eolake up`) driven by the system's headless Chromium.

The shared platform (conftest's `platform`) signs its users in at a test OpenID Connect provider on loopback
(tests/oidc.py). Loads the page, searches, opens a garonne-wse item and checks its tile preview was drawn from tiles
the tile service answered with 200, opens a station on its river and its chart, checks the services page and the API
docs, signs in, orders two items, watches the order and saves its files; every page at 390 px, and no console error
anywhere. Screenshots at laptop and phone widths are left in results/screenshots/ as test artefacts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from servers import wait_until

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "results" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LAPTOP, PHONE = (1366, 768), (390, 844)
ITEM = "garonne-wse-2023-01-01"
WAIT = 60

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="needs Debian's chromium and chromium-driver (the bootstrap installs them)",
    ),
]


def ready(base: str, prefix: str) -> None:
    """Wait for a service the page needs; a clear failure when the local stack does not run it."""

    def answer() -> int:
        try:
            return httpx.get(f"{base}{prefix}/readyz", timeout=5).status_code
        except httpx.TransportError:
            return 0

    status = wait_until(lambda: answer() in (200, 404), timeout=120, interval=1) and answer()
    assert status != 404, f"no service is mounted at {prefix}: enable it in stacks/Pulumi.local.yaml"
    assert status == 200, f"{prefix} is not ready ({status})"


@pytest.fixture(scope="module")
def browser(platform):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="eolake-chromium-")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        f"--user-data-dir={profile}",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        viewport(driver, *LAPTOP)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def viewport(driver, width: int, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def until(driver, script: str, message: str, timeout: float = WAIT):
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script), message)


def open_route(driver, base: str, route: str) -> None:
    driver.get(f"{base}/{route}")
    until(driver, "return document.body.dataset.ready === 'true'", f"{route} did not load")


def shot(driver, name: str) -> Path:
    """A screenshot kept in results/screenshots/, once the web view's map (if the page has one) is drawn."""
    mapped = driver.execute_script("return Boolean(window.eolake && window.eolake.map)")
    until(
        driver,
        "const m = window.eolake && window.eolake.map.map; return !m || (m.loaded() && m.areTilesLoaded())",
        f"the map did not finish drawing for {name}",
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > (10_000 if mapped else 1_000), f"{path} looks empty"
    return path


def console_errors(driver) -> list[str]:
    # The services page probes every service's /readyz: one that is not deployed answers 404, which Chromium logs.
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and "/readyz" not in e["message"]]


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


def overflow(driver) -> list[str]:
    """What sticks out of a phone's width: the page itself, or any element wider than the viewport."""
    return driver.execute_script(
        "const w = document.documentElement.clientWidth;"
        "const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 1"
        " && getComputedStyle(e).position !== 'fixed' && e.offsetParent !== null && !e.closest('.maplibregl-map'))"
        ".map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));"
        "if (document.documentElement.scrollWidth > w) wide.unshift('page ' + document.documentElement.scrollWidth);"
        "return wide.slice(0, 10);"
    )


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


# Pixels of the map drawn in a colour (arguments[0], RGB): all of them, or (arguments[1]: [lon, lat, r0, r1]) those
# between r0 and r1 pixels from a place.
WATER_PIXELS = """
const m = window.eolake.map.map;
const [r0, g0, b0] = arguments[0];
const ring = arguments[1] || null;
return new Promise((resolve) => {
  m.once('render', () => {
    const canvas = m.getCanvas();
    const gl = canvas.getContext('webgl2') || canvas.getContext('webgl');
    const px = new Uint8Array(canvas.width * canvas.height * 4);
    gl.readPixels(0, 0, canvas.width, canvas.height, gl.RGBA, gl.UNSIGNED_BYTE, px);
    const ratio = canvas.width / canvas.clientWidth;
    const at = ring && m.project([ring[0], ring[1]]);
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (at) {
        const x = (i / 4) % canvas.width / ratio;
        const y = (canvas.height - 1 - Math.floor(i / 4 / canvas.width)) / ratio; // WebGL rows start at the bottom
        const d = Math.hypot(x - at.x, y - at.y);
        if (d < ring[2] || d > ring[3]) continue;
      }
      if (Math.abs(px[i] - r0) < 8 && Math.abs(px[i + 1] - g0) < 8 && Math.abs(px[i + 2] - b0) < 8) n += 1;
    }
    resolve(n);
  });
  m.triggerRepaint();
});
"""


WATER_LAYERS = ("rivers", "rivers-line", "lakes", "preview")


def water_layers(driver, visibility: str, layers=WATER_LAYERS) -> None:
    """Show or hide the layers that draw water: the basemap's rivers and lakes, and the tile service's raster."""
    driver.execute_script(
        "const m = window.eolake.map.map; for (const l of arguments[0])"
        " if (m.getLayer(l)) m.setLayoutProperty(l, 'visibility', arguments[1])",
        list(layers),
        visibility,
    )


def idle(driver, what: str) -> None:
    until(
        driver,
        "const m = window.eolake.map.map; return m.loaded() && m.areTilesLoaded()"
        " && window.eolake.basemap && window.eolake.basemap.land",
        f"the map did not settle: {what}",
    )


def test_basemap_shows_the_garonne_under_its_stations(platform, browser):
    """Land everywhere; at zoom 8-12 around Toulouse, river pixels drawn by the basemap's rivers layer (from this
    origin; the water extent the hydrology page draws over it is hidden while they are counted)."""
    base = platform.base_url
    browser.get_log("browser")
    open_route(browser, base, "#/hydrology")
    until(browser, "return document.querySelectorAll('#h-list button.station').length === 6", "stations missing")
    until(browser, "return window.eolake.basemap && window.eolake.basemap.land", "no land drawn")
    until(
        browser,
        "return Number(document.getElementById('map').dataset.previewTiles || 0) > 0",
        "the water extent was not drawn",
    )
    water = browser.execute_script("return window.eolake.basemap.water")
    rgb = tuple(int(water[i : i + 2], 16) for i in (1, 3, 5))
    for zoom in (8, 10, 12):
        browser.execute_script(f"window.eolake.map.map.jumpTo({{center: [1.44, 43.60], zoom: {zoom}}})")
        until(browser, "return window.eolake.basemap.rivers > 0", "no river square loaded")
        idle(browser, f"zoom {zoom}")
        shot(browser, f"laptop-garonne-z{zoom}")
        water_layers(browser, "none", ["preview"])
        shown = browser.execute_script(WATER_PIXELS, list(rgb))
        water_layers(browser, "none")
        hidden = browser.execute_script(WATER_PIXELS, list(rgb))
        water_layers(browser, "visible")
        assert shown > 50 and hidden < shown / 10, (zoom, shown, hidden)
    requests = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [r for r in requests if not r.startswith(base)] == []
    assert any("/basemap/rivers/" in r for r in requests)
    assert console_errors(browser) == []


def test_a_station_opens_on_its_river(platform, browser):
    """A station's page zooms the map onto it (zoom 11) with the water extent of its river drawn from the tile
    service: around each Garonne station, water pixels; with the water layers hidden, none. Its neighbours along
    the same river are linked, and the land at a world view has no holes (the merged land polygon left squares of
    sea over France at zoom 3)."""
    base = platform.base_url
    ready(base, "/timeseries")
    ready(base, "/tiles")
    browser.get_log("browser")
    stations = httpx.get(f"{base}/timeseries/collections/stations/items?limit=100", timeout=30).json()["features"]
    garonne = [s for s in stations if s["properties"]["river"] == "GARONNE"]
    assert len(garonne) >= 3
    open_route(browser, base, "#/hydrology")
    until(browser, "return window.eolake.basemap && window.eolake.basemap.land", "no land drawn")
    rgb = [int(browser.execute_script("return window.eolake.basemap.water")[i : i + 2], 16) for i in (1, 3, 5)]
    for station in garonne:
        open_route(browser, base, f"#/hydrology/{station['id']}")
        until(browser, "return Number(document.getElementById('h-chart').dataset.points || 0) > 0", "no chart")
        until(
            browser,
            "return Number(document.getElementById('map').dataset.previewTiles || 0) > 0",
            "the water extent was not drawn",
        )
        idle(browser, station["id"])
        view = browser.execute_script("const m = window.eolake.map.map; return [m.getZoom(), m.getCenter().toArray()]")
        assert view[0] == 11 and view[1] == pytest.approx(station["geometry"]["coordinates"], abs=1e-4), view
        around = [*station["geometry"]["coordinates"], 12, 30]  # outside the station's own dot
        shown = browser.execute_script(WATER_PIXELS, rgb, around)
        water_layers(browser, "none")
        hidden = browser.execute_script(WATER_PIXELS, rgb, around)
        water_layers(browser, "visible")
        assert shown > 20 and hidden == 0, (station["id"], shown, hidden)
        along = browser.execute_script(
            "return [...document.querySelectorAll('#h-along a')].map(a => decodeURIComponent(a.hash.split('/')[2]))"
        )
        assert sorted(along) == sorted(s["id"] for s in garonne if s is not station), along
    shot(browser, "laptop-station-on-its-river")

    # Land where there is land, at world and country views: Paris, Madrid, Nantes, Moscow, Nairobi.
    land = [int(browser.execute_script("return window.eolake.basemap.colors.land")[i : i + 2], 16) for i in (1, 3, 5)]
    for zoom in (2, 3, 4):
        browser.execute_script(f"window.eolake.map.map.jumpTo({{center: [10, 40], zoom: {zoom}}})")
        idle(browser, f"zoom {zoom}")
        for lon, lat in [(2.35, 48.85), (-3.7, 40.4), (-1.55, 47.2), (37.6, 55.75), (36.8, -1.3)]:
            inside = browser.execute_script(
                "const m = window.eolake.map.map; const p = m.project(arguments[0]);"
                " const c = m.getCanvas(); return p.x > 5 && p.y > 5"
                " && p.x < c.clientWidth - 5 && p.y < c.clientHeight - 5",
                [lon, lat],
            )
            if inside:
                assert browser.execute_script(WATER_PIXELS, land, [lon, lat, 0, 3]) > 10, (zoom, lon, lat)
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


def test_basket_sign_in_order_progress_and_verified_download(platform, browser):
    """Two items from a search into the basket, sign in (API key), order, watch it finish, download a file that
    the page checks against its SHA-256; links go through /downloads, never to a storage path."""
    base = platform.base_url
    ready(base, "/downloads")
    key = (platform.state / "user.key").read_text().strip()
    open_route(browser, base, "#/collections")
    browser.execute_script("localStorage.clear(); sessionStorage.clear()")
    browser.get_log("browser")

    open_route(browser, base, f"#/items/garonne-wse/{ITEM}")
    until(browser, "return document.querySelector('#assets') !== null", "item page not shown")
    assert "/.eolake/" not in browser.find_element(By.ID, "assets").text and "data/demo" not in browser.page_source
    open_route(browser, base, "#/orders")
    until(browser, "return document.getElementById('o-signin') !== null", "anonymous users are not asked to sign in")

    open_route(browser, base, "#/search?collections=garonne-wse")
    until(browser, "return document.querySelectorAll('#s-results button.basket-toggle').length === 20", "no buttons")
    for button in browser.find_elements(By.CSS_SELECTOR, "#s-results button.basket-toggle")[:2]:
        button.click()
    assert browser.find_element(By.CSS_SELECTOR, 'nav a[data-nav="basket"]').text == "Basket (2)"
    open_route(browser, base, "#/basket")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#b-list li")) == 2
    browser.find_element(By.ID, "b-signin-key").send_keys("not-a-key")
    browser.find_element(By.CSS_SELECTOR, "#b-signin button").click()
    until(
        browser,
        "return document.getElementById('b-signin-status').textContent.includes('not valid')",
        "a bad key is not refused",
    )
    refused = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("/downloads/orders" in m and "401" in m for m in refused), refused  # Chromium logs the 401 itself
    field = browser.find_element(By.ID, "b-signin-key")
    field.clear()
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#b-signin button").click()
    until(browser, "return document.getElementById('b-order') !== null", "signing in did not offer the order")
    browser.find_element(By.ID, "b-order").click()
    until(browser, "return location.hash.startsWith('#/orders/')", "no order page")
    until(
        browser,
        "return document.getElementById('od-badge').textContent === 'succeeded'",
        "order did not finish",
        timeout=240,
    )
    states = browser.execute_script(
        "return [...document.querySelectorAll('#od-files tbody tr')].map(r => r.dataset.state)"
    )
    assert len(states) >= 2 and set(states) == {"ready"}, states
    assert len(browser.find_elements(By.CSS_SELECTOR, "#od-files button.dl-file")) == len(states)
    shot(browser, "laptop-order")

    order_id = browser.execute_script("return decodeURIComponent(location.hash.split('/')[2])")
    order = httpx.get(f"{base}/downloads/orders/{order_id}", headers={"X-API-Key": key}, timeout=30).json()
    assert {f["item"] for f in order["files"]} == set(
        browser.execute_script(
            "return [...document.querySelectorAll('#od-files tbody tr .meta')].map(m => m.textContent.split(' · ')[0])"
        )
    )
    browser.find_element(By.CSS_SELECTOR, "#od-files button.dl-file").click()
    until(browser, "return document.querySelector('#od-files td.dl[data-verified]') !== null", "no download")
    assert (
        browser.execute_script("return document.querySelector('#od-files td.dl[data-verified]').dataset.verified")
        == "true"
    )
    first = order["files"][0]
    assert first["href"].startswith(f"{base}/downloads/orders/{order_id}/files/")
    data = httpx.get(first["href"], headers={"X-API-Key": key}, timeout=60).content
    assert "1220" + hashlib.sha256(data).hexdigest() == first["checksum"]
    assert browser.execute_script("return JSON.parse(localStorage.getItem('eolake.basket'))") == []
    errors = console_errors(browser)
    assert errors == [], errors


def downloads_to(driver, folder: Path) -> None:
    """Files the page saves land in `folder`, without asking."""
    folder.mkdir(parents=True, exist_ok=True)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})


# Every state a file of an order took while the page showed it, in the order seen (a MutationObserver in the page).
WATCH_FILE_STATES = """
window.fileStates = {};
new MutationObserver(() => document.querySelectorAll('#od-files tbody tr').forEach((r) => {
  const seen = window.fileStates[r.dataset.file] || (window.fileStates[r.dataset.file] = []);
  if (seen[seen.length - 1] !== r.dataset.state) seen.push(r.dataset.state);
})).observe(document.body, {subtree: true, childList: true, attributes: true});
"""


def test_oidc_sign_in_basket_of_two_order_progress_and_verified_downloads(platform, browser, tmp_path):
    """A scientist's whole path: browse anonymously, fill the basket from a search result and an item page, sign in
    at the platform's OIDC issuer (authorization code with PKCE), order, watch the files get staged, download both
    through /downloads; the saved files match the order's SHA-256 checksums."""
    base, issuer = platform.base_url, platform.issuer
    ready(base, "/downloads")
    config = httpx.get(f"{base}/config.json", timeout=10).json()
    assert config["oidc"] == {"issuer": issuer.issuer, "client_id": "eolake-web", "scope": "openid"}
    assert f"connect-src 'self' {issuer.issuer}" in httpx.get(base + "/", timeout=10).headers["content-security-policy"]
    open_route(browser, base, "#/collections")
    browser.execute_script("localStorage.clear(); sessionStorage.clear()")
    browser.get_log("browser")

    # Anonymous: searching works, ordering asks to sign in.
    open_route(browser, base, "#/search?collections=garonne-wse")
    until(browser, "return document.querySelectorAll('#s-results button.basket-toggle').length === 20", "no results")
    first = browser.find_element(By.CSS_SELECTOR, "#s-results li")
    first_id = first.find_element(By.CSS_SELECTOR, "h2 a").get_attribute("href").rsplit("/", 1)[1]
    first.find_element(By.CSS_SELECTOR, "button.basket-toggle").click()
    second_id = browser.find_elements(By.CSS_SELECTOR, "#s-results li h2 a")[1].get_attribute("href").rsplit("/", 1)[1]
    open_route(browser, base, f"#/items/garonne-wse/{second_id}")
    until(browser, "return document.querySelector('#assets') !== null", "item page not shown")
    browser.find_element(By.CSS_SELECTOR, "main button.basket-toggle").click()
    assert browser.find_element(By.CSS_SELECTOR, 'nav a[data-nav="basket"]').text == "Basket (2)"
    open_route(browser, base, "#/basket")
    until(browser, "return document.getElementById('b-signin-oidc') !== null", "no sign-in offered for ordering")
    assert browser.find_elements(By.ID, "b-order") == []
    shot(browser, "laptop-basket-anonymous")

    # A sign-in answer this page did not ask for is refused; so is a user the issuer does not know.
    browser.get(f"{base}/?code=stolen&state=forged#/basket")
    until(browser, "return document.body.dataset.ready === 'true'", "page did not load")
    assert "Sign-in failed" in browser.find_element(By.ID, "toast").text
    assert browser.current_url == f"{base}/#/basket"
    browser.find_element(By.ID, "b-signin-oidc").click()
    until(browser, "return document.getElementById('username') !== null", "the issuer's login form did not show")
    browser.find_element(By.ID, "username").send_keys("mallory")
    browser.find_element(By.ID, "sign-in").click()
    until(browser, "return document.body.dataset.ready === 'true'", "not back from the issuer")
    assert "no user 'mallory'" in browser.find_element(By.ID, "toast").text
    assert browser.execute_script("return sessionStorage.getItem('eolake.session')") is None
    assert issuer.issued == [] and issuer.refused == ["access_denied"]

    # Sign in at the issuer: its login form, then back on the basket with a token (the code gone from the address).
    browser.find_element(By.ID, "b-signin-oidc").click()
    until(browser, "return document.getElementById('username') !== null", "the issuer's login form did not show")
    shot(browser, "laptop-issuer-login")
    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "sign-in").click()
    until(
        browser,
        "return document.body.dataset.ready === 'true' && document.getElementById('b-order') !== null",
        "not back on the basket, signed in",
    )
    assert browser.current_url == f"{base}/#/basket"
    assert len(issuer.issued) == 1
    assert browser.find_element(By.ID, "b-who").text == "Signed in: alice"
    assert sorted(
        browser.execute_script("return [...document.querySelectorAll('#b-list li')].map(l => l.dataset.item)")
    ) == sorted([first_id, second_id])
    shot(browser, "laptop-basket-signed-in")

    browser.execute_script(WATCH_FILE_STATES)
    browser.find_element(By.ID, "b-order").click()
    until(browser, "return location.hash.startsWith('#/orders/')", "no order page")
    until(
        browser,
        "return document.getElementById('od-badge').textContent === 'succeeded'",
        "order did not finish",
        timeout=240,
    )
    order_id = browser.execute_script("return decodeURIComponent(location.hash.split('/')[2])")
    token = {"Authorization": f"Bearer {issuer.issued[-1]}"}
    order = httpx.get(f"{base}/downloads/orders/{order_id}", headers=token, timeout=30).json()
    other = httpx.get(
        f"{base}/downloads/orders/{order_id}",
        timeout=30,
        headers={"X-API-Key": (platform.state / "user.key").read_text().strip()},
    )
    assert other.status_code == 404, "another user sees alice's order"
    assert {f["item"] for f in order["files"]} == {first_id, second_id}
    seen = browser.execute_script("return window.fileStates")
    assert sorted(seen) == sorted(f["id"] for f in order["files"]), seen
    assert all(states[-1] == "ready" for states in seen.values()), seen
    progress = browser.find_element(By.ID, "od-progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == str(len(order["files"]))
    shot(browser, "laptop-order-succeeded")

    # Each file through /downloads, checked in the page, saved by the browser: the same bytes as the order says.
    saved = tmp_path / "saved"
    downloads_to(browser, saved)
    for button in browser.find_elements(By.CSS_SELECTOR, "#od-files button.dl-file"):
        button.click()
    until(
        browser,
        f"return document.querySelectorAll('#od-files td.dl[data-verified=\"true\"]').length === {len(order['files'])}",
        "not every file was downloaded and verified",
    )
    wait_until(
        lambda: (
            sorted(p.name for p in saved.iterdir() if not p.name.endswith(".crdownload"))
            == sorted(f["name"] for f in order["files"])
        ),
        timeout=WAIT,
        interval=0.2,
    )
    for f in order["files"]:
        assert "1220" + hashlib.sha256((saved / f["name"]).read_bytes()).hexdigest() == f["checksum"], f["name"]
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/files/'))"
    )
    assert sorted(fetched) == sorted(f["href"] for f in order["files"]), fetched
    assert all(h.startswith(f"{base}/downloads/orders/{order_id}/files/") for h in fetched)
    shot(browser, "laptop-order-downloaded")
    errors = console_errors(browser)
    assert errors == [], errors
