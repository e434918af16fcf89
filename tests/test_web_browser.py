"""The web view end to end: the embedded platform (`eolake up`) driven by the system's headless Chromium.

Loads the page, searches, opens a garonne-wse item and checks its tile preview was drawn from tiles the tile
service answered with 200, opens a station's chart, checks the services page, and fails on any console error.
Screenshots at laptop and phone widths are left in results/screenshots/ as test artefacts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from eolake.embedded.postgres import free_port
from servers import wait_until

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "results" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LAPTOP, PHONE = (1366, 768), (390, 844)
ITEM = "garonne-wse-2023-01-01"
WAIT = 60

pytestmark = [
    pytest.mark.slow, pytest.mark.timeout(900),
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs Debian's chromium and chromium-driver (the bootstrap installs them)"),
]


@dataclass
class Platform:
    state: Path
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "EOLAKE_STATE_DIR": str(self.state), "COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.run([sys.executable, "-m", "eolake.cli", *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)


@pytest.fixture(scope="module")
def platform() -> Platform:
    # Not under pytest's tmp_path: as root the cluster runs as the postgres user, which cannot reach it.
    root = Path(tempfile.mkdtemp(prefix="eolake-web-browser-"))
    root.chmod(0o755)
    running = Platform(state=root / "state", port=free_port())
    try:
        up = running.cli("up", "--port", str(running.port))
        assert up.returncode == 0, f"eolake up failed:\n{up.stdout}\n{up.stderr}"
        yield running
    finally:
        down = running.cli("down", timeout=180)
        if down.returncode == 0:
            shutil.rmtree(root, ignore_errors=True)


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
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader", f"--user-data-dir={profile}",
                f"--window-size={LAPTOP[0]},{LAPTOP[1]}"):
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
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def until(driver, script: str, message: str, timeout: float = WAIT):
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script), message)


def open_route(driver, base: str, route: str) -> None:
    driver.get(f"{base}/{route}")
    until(driver, "return document.body.dataset.ready === 'true'", f"{route} did not load")


def shot(driver, name: str) -> Path:
    until(driver, "const m = window.eolake.map.map; return !m || (m.loaded() && m.areTilesLoaded())",
          f"the map did not finish drawing for {name}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def console_errors(driver) -> list[str]:
    # The services page probes every service's /readyz: one that is not deployed answers 404, which Chromium logs.
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "/readyz" not in e["message"]]


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
    until(browser, "return Number(document.getElementById('map').dataset.previewTiles || 0) > 0",
          "no preview tile was drawn")
    tiles = browser.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/tiles/collections/')"
        " && e.name.includes('/tiles/WebMercatorQuad/')).map(e => [e.name, e.responseStatus])")
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
    until(browser, f"return Number(document.getElementById('h-chart').dataset.points) < {full}",
          "the date range did not narrow the series")
    shot(browser, "laptop-station-chart")

    # A collection names the services that serve it, each a link to its record on the services page.
    open_route(browser, base, "#/collections/garonne-wse")
    served = browser.execute_script("return [...document.querySelectorAll('#coll-services a')].map(a => a.textContent)")
    assert served == ["catalog", "search", "tiles", "downloads"], served
    browser.find_element(By.CSS_SELECTOR, '#coll-services a[href="#/services?q=tiles"]').click()
    until(browser, "return document.querySelectorAll('#services li').length === 1"
                   " && document.querySelector('#services li').dataset.service === 'tiles'", "tiles record not shown")

    # Services: every service of the catalog (/services.json) with its live readiness through the same origin.
    open_route(browser, base, "#/services")
    until(browser, "return document.querySelectorAll('#services li').length > 0"
                   " && !document.querySelector('#services li[data-state=\"checking\"]')", "checks hang")
    states = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#services li')]"
        ".map(r => [r.dataset.service, r.dataset.state]))")
    records = httpx.get(f"{base}/services.json", timeout=30).json()["features"]
    assert sorted(states) == sorted(r["id"] for r in records) and len(records) >= 7, states
    assert set(states.values()) == {"ready"}, states
    docs = browser.execute_script("return [...document.querySelectorAll('#services a[data-rel=\"service-doc\"]')]"
                                  ".map(a => a.getAttribute('href'))")
    assert len(docs) == len(records) - 1, docs  # every service but the web view documents its API
    until(browser, "return document.querySelectorAll('#providers li').length > 0", "no federated providers listed")
    shot(browser, "laptop-services")

    assert console_errors(browser) == []


def overflow(driver) -> list[str]:
    """What sticks out of a phone's width: the page itself, or any element wider than the viewport."""
    return driver.execute_script(
        "const w = document.documentElement.clientWidth;"
        "const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 1"
        " && getComputedStyle(e).position !== 'fixed' && e.offsetParent !== null && !e.closest('.maplibregl-map'))"
        ".map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));"
        "if (document.documentElement.scrollWidth > w) wide.unshift('page ' + document.documentElement.scrollWidth);"
        "return wide.slice(0, 10);")


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

    until(browser, "return location.hash.includes('q=') && document.getElementById('coll-status')?.dataset.matched"
                   " !== undefined", "no results")
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
    until(browser, f"return document.getElementById('coll-status')?.dataset.matched === '{count}'",
          "the facet did not narrow the results to its count")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#coll-list li")) == min(count, 50)
    chosen = browser.find_element(By.CSS_SELECTOR, "fieldset[data-facet=provider] button[aria-pressed=true]")
    assert chosen.get_attribute("data-value") == value and int(chosen.get_attribute("data-count")) == count
    browser.find_element(By.CSS_SELECTOR, "#coll-chosen button.chip").click()  # removing it widens back
    until(browser, f"return document.getElementById('coll-status')?.dataset.matched === '{matched}'",
          "removing the facet did not restore the results")
    assert not console_errors(browser)


def test_phone_width_every_page_fits(platform, browser):
    base = platform.base_url
    search = httpx.get(f"{base}/stac/search", params={"collections": "naip", "limit": 1}, timeout=30).json()
    naip = search["features"][0]["id"]
    pages = {
        "collections": ("#/collections", "return document.querySelectorAll('#coll-list li').length >= 5"),
        "collection": ("#/collections/naip", "return document.querySelector('.md') !== null"),
        "search": ("#/search?collections=naip", "return document.querySelectorAll('#s-results li').length > 0"),
        "item": (f"#/items/naip/{naip}", "return document.querySelector('#properties') !== null"),
        "hydrology": ("#/hydrology", "return document.querySelectorAll('#h-list button.station').length === 6"),
        "services": ("#/services", "return !document.querySelector('#services li[data-state=\"checking\"]')"
                                   " && document.querySelectorAll('#services li').length > 0"),
    }
    viewport(browser, *PHONE)
    try:
        browser.get_log("browser")
        for name, (route, loaded) in pages.items():
            open_route(browser, base, route)
            until(browser, loaded, f"{name} did not load at phone width")
            assert overflow(browser) == [], name
            shot(browser, f"phone-{name}")
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
        until(browser, "return Number(document.getElementById('map').dataset.previewTiles || 0) > 0",
              "no preview tile was drawn")
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


WATER_PIXELS = """
const m = window.eolake.map.map;
const [r0, g0, b0] = arguments[0];
return new Promise((resolve) => {
  m.once('render', () => {
    const canvas = m.getCanvas();
    const gl = canvas.getContext('webgl2') || canvas.getContext('webgl');
    const px = new Uint8Array(canvas.width * canvas.height * 4);
    gl.readPixels(0, 0, canvas.width, canvas.height, gl.RGBA, gl.UNSIGNED_BYTE, px);
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (Math.abs(px[i] - r0) < 8 && Math.abs(px[i + 1] - g0) < 8 && Math.abs(px[i + 2] - b0) < 8) n += 1;
    }
    resolve(n);
  });
  m.triggerRepaint();
});
"""


def idle(driver, what: str) -> None:
    until(driver, "const m = window.eolake.map.map; return m.loaded() && m.areTilesLoaded()"
                  " && window.eolake.basemap && window.eolake.basemap.land", f"the map did not settle: {what}")


def test_basemap_shows_the_garonne_under_its_stations(platform, browser):
    """Land everywhere; at zoom 8-12 around Toulouse, river pixels drawn by the rivers layer (from this origin)."""
    base = platform.base_url
    browser.get_log("browser")
    open_route(browser, base, "#/hydrology")
    until(browser, "return document.querySelectorAll('#h-list button.station').length === 6", "stations missing")
    until(browser, "return window.eolake.basemap && window.eolake.basemap.land", "no land drawn")
    water = browser.execute_script("return window.eolake.basemap.water")
    rgb = tuple(int(water[i:i + 2], 16) for i in (1, 3, 5))
    for zoom in (8, 10, 12):
        browser.execute_script(f"window.eolake.map.map.jumpTo({{center: [1.44, 43.60], zoom: {zoom}}})")
        until(browser, "return window.eolake.basemap.rivers > 0", "no river square loaded")
        idle(browser, f"zoom {zoom}")
        shown = browser.execute_script(WATER_PIXELS, list(rgb))
        browser.execute_script("const m = window.eolake.map.map; for (const l of ['rivers', 'rivers-line', 'lakes'])"
                               " m.setLayoutProperty(l, 'visibility', 'none')")
        hidden = browser.execute_script(WATER_PIXELS, list(rgb))
        browser.execute_script("const m = window.eolake.map.map; for (const l of ['rivers', 'rivers-line', 'lakes'])"
                               " m.setLayoutProperty(l, 'visibility', 'visible')")
        assert shown > 50 and hidden < shown / 10, (zoom, shown, hidden)
        shot(browser, f"laptop-garonne-z{zoom}")
    requests = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [r for r in requests if not r.startswith(base)] == []
    assert any("/basemap/rivers/" in r for r in requests)
    assert console_errors(browser) == []


def test_every_api_docs_page_renders_offline(platform, browser):
    """Each service's documentation page (named by its /readyz) draws its operations; nothing leaves the origin."""
    base = platform.base_url
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
        until(browser, "return document.querySelectorAll('.swagger-ui .opblock').length > 0",
              f"{name}: {href} shows no operation")
        requests = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert requests and [r for r in requests if not r.startswith(base + "/")] == [], (name, requests)
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
    until(browser, "return document.getElementById('b-signin-status').textContent.includes('not valid')",
          "a bad key is not refused")
    refused = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("/downloads/orders" in m and "401" in m for m in refused), refused  # Chromium logs the 401 itself
    field = browser.find_element(By.ID, "b-signin-key")
    field.clear()
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#b-signin button").click()
    until(browser, "return document.getElementById('b-order') !== null", "signing in did not offer the order")
    browser.find_element(By.ID, "b-order").click()
    until(browser, "return location.hash.startsWith('#/orders/')", "no order page")
    until(browser, "return document.getElementById('od-badge').textContent === 'succeeded'", "order did not finish",
          timeout=240)
    states = browser.execute_script(
        "return [...document.querySelectorAll('#od-files tbody tr')].map(r => r.dataset.state)")
    assert len(states) >= 2 and set(states) == {"ready"}, states
    assert len(browser.find_elements(By.CSS_SELECTOR, "#od-files button.dl-file")) == len(states)
    shot(browser, "laptop-order")

    order_id = browser.execute_script("return decodeURIComponent(location.hash.split('/')[2])")
    order = httpx.get(f"{base}/downloads/orders/{order_id}", headers={"X-API-Key": key}, timeout=30).json()
    assert {f["item"] for f in order["files"]} == set(browser.execute_script(
        "return [...document.querySelectorAll('#od-files tbody tr .meta')].map(m => m.textContent.split(' · ')[0])"))
    browser.find_element(By.CSS_SELECTOR, "#od-files button.dl-file").click()
    until(browser, "return document.querySelector('#od-files td.dl[data-verified]') !== null", "no download")
    assert browser.execute_script("return document.querySelector('#od-files td.dl[data-verified]').dataset.verified") \
        == "true"
    first = order["files"][0]
    assert first["href"].startswith(f"{base}/downloads/orders/{order_id}/files/")
    data = httpx.get(first["href"], headers={"X-API-Key": key}, timeout=60).content
    assert "1220" + hashlib.sha256(data).hexdigest() == first["checksum"]
    assert browser.execute_script("return JSON.parse(localStorage.getItem('eolake.basket'))") == []
    errors = console_errors(browser)
    assert errors == [], errors


class CodeFlowIdP:
    """An identity provider for the authorization code flow with PKCE (discovery, authorize, token), on loopback:
    it signs users in at once (no login form) and checks what a real one checks (client, redirect URI, S256)."""

    def __init__(self, client_id: str):
        import base64
        import json
        import secrets
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlencode, urlsplit

        import jwt

        from oidc import KEYS

        idp, self.codes, self.issued = self, {}, []

        def s256(verifier: str) -> str:
            return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")

        class Handler(BaseHTTPRequestHandler):
            def answer(self, status: int, body: dict | None = None, location: str | None = None) -> None:
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Access-Control-Allow-Origin", "*")  # the page calls it from its own origin
                self.send_header("Content-Type", "application/json")
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    return self.answer(200, {"issuer": idp.issuer, "jwks_uri": idp.issuer + "/jwks",
                                             "authorization_endpoint": idp.issuer + "/authorize",
                                             "token_endpoint": idp.issuer + "/token"})
                if url.path != "/authorize":
                    return self.answer(404)
                if (q.get("client_id"), q.get("response_type"), q.get("code_challenge_method")) != (
                        client_id, "code", "S256") or not q.get("code_challenge"):
                    return self.answer(400, {"error": "invalid_request"})
                code = secrets.token_urlsafe(16)
                idp.codes[code] = (q["code_challenge"], q["redirect_uri"])
                back = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
                return self.answer(302, location=back)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
                form = {k: v[0] for k, v in parse_qs(raw).items()}
                challenge, redirect = idp.codes.pop(form.get("code"), (None, None))
                if (challenge is None or form.get("client_id") != client_id or form.get("redirect_uri") != redirect
                        or s256(form.get("code_verifier", "")) != challenge):
                    return self.answer(400, {"error": "invalid_grant"})
                now = int(time.time())
                claims = {"iss": idp.issuer, "aud": "eolake", "sub": "alice", "iat": now, "exp": now + 300,
                          "preferred_username": "alice"}
                token = jwt.encode(claims, KEYS["k1"], algorithm="RS256", headers={"kid": "k1"})
                idp.issued.append(token)
                return self.answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 300})

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sign_in_at_the_oidc_issuer_with_pkce(browser, tmp_path):
    """The web view as a public OIDC client: to the issuer and back with a code, exchanged (PKCE) for a token that
    the page then sends as a Bearer token; a forged return (wrong state) is refused."""
    from servers import service_process

    idp = CodeFlowIdP("eolake-web")
    env = {"EOLAKE_WEB_AUTH__OIDC_ISSUER": idp.issuer, "EOLAKE_WEB_AUTH__OIDC_AUDIENCE": "eolake",
           "EOLAKE_WEB_SERVICES": '{"catalog": "/stac", "downloads": "/downloads"}'}
    try:
        with service_process("eolake_web", env, tmp_path / "web.log", probe="/readyz") as url:
            csp = httpx.get(url + "/", timeout=10).headers["content-security-policy"]
            assert f"connect-src 'self' {idp.issuer}" in csp
            driver = browser
            driver.get(f"{url}/#/basket")
            until(driver, "return document.body.dataset.ready === 'true'", "page did not load")
            driver.execute_script("localStorage.setItem('eolake.basket', JSON.stringify([{collection: 'c', id: 'i',"
                                  " title: 'i'}])); sessionStorage.clear()")
            driver.refresh()
            until(driver, "return document.getElementById('b-signin-oidc') !== null", "no OIDC sign-in offered")
            driver.find_element(By.ID, "b-signin-oidc").click()
            until(driver, "return location.hash === '#/basket' && document.getElementById('b-order') !== null",
                  "not back on the basket, signed in")
            assert driver.current_url == f"{url}/#/basket"  # the code and state are gone from the address
            headers = driver.execute_script(
                "return import(document.querySelector('script[type=module]').src.replace('main.js', 'signin.js'))"
                ".then(m => m.authHeaders())")
            assert headers == {"Authorization": f"Bearer {idp.issued[-1]}"} and len(idp.issued) == 1
            # A return that this page did not start is refused and changes nothing.
            driver.execute_script("sessionStorage.clear()")
            driver.get(f"{url}/?code=stolen&state=forged#/basket")
            until(driver, "return document.body.dataset.ready === 'true'", "page did not load")
            assert "Sign-in failed" in driver.find_element(By.ID, "toast").text
            assert driver.execute_script("return sessionStorage.getItem('eolake.session')") is None
            assert len(idp.issued) == 1
    finally:
        idp.stop()
