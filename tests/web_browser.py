"""The web view in a real browser: the session's shared embedded platform (conftest's `platform`, `eolake up` once
per test run) driven by the system's headless Chromium, and what the test_web_browser_* modules share.

The platform signs its users in at a test OpenID Connect provider on loopback (tests/oidc.py). Screenshots at laptop
and phone widths are left in results/screenshots/ as test artefacts. Registered as a plugin by tests/conftest.py: its
`browser` fixture serves every module without being imported into each.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from servers import wait_until

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "results" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LAPTOP, PHONE = (1366, 768), (390, 844)
ITEM = "garonne-wse-2023-01-01"
# Generous for a loaded 2-core machine; every wait still ends as soon as its condition holds.
WAIT = 120

# The marks of every browser module (`pytestmark = BROWSER_TESTS`).
BROWSER_TESTS = [
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
def browser():
    """A Chromium per module (each module starts from a clean profile)."""
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
