"""The web view's map in headless Chromium (tests/web_browser.py): the offline basemap draws the Garonne under its
stations, a station opens on its river (named on the map) with the water extent from the tile service, and land
is land at world views."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.by import By
from web_browser import (
    BROWSER_TESTS,
    WATER_PIXELS,
    console_errors,
    idle,
    open_route,
    ready,
    shot,
    until,
    water_layers,
)

pytestmark = BROWSER_TESTS


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
        # The river named on the map beside the station (an HTML label: the map ships no glyphs), and in its title.
        label = browser.execute_script(
            "const l = document.querySelector('#map .map-label'); const m = window.eolake.map.map;"
            " const r = l.getBoundingClientRect(); const c = m.getCanvas().getBoundingClientRect();"
            " const p = m.project(arguments[0]);"
            " return [l.textContent, r.left - c.left - p.x, r.top - c.top - p.y, r.bottom - c.top - p.y, r.width]",
            station["geometry"]["coordinates"],
        )
        text, dx, top, bottom, width = label
        assert text == "GARONNE" and 0 < dx < 30 and top < 0 < bottom and width > 20, label
        assert browser.find_element(By.ID, "h-title").text.endswith(", on the GARONNE")
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
    open_route(browser, base, "#/collections")  # the label belongs to the station's page only
    until(
        browser,
        "return document.querySelectorAll('#coll-list li').length > 0 && !document.querySelector('#map .map-label')",
        "the river's label stayed on another page",
    )
    assert console_errors(browser) == []
