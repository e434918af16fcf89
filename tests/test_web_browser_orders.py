"""Ordering from the web view in headless Chromium (tests/web_browser.py): the basket, signing in with an API key
or at the platform's OIDC issuer, an order's progress and its files downloaded and checked against their SHA-256;
an item kept offline retrieved from its page until it is online."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from selenium.webdriver.common.by import By
from web_browser import BROWSER_TESTS, ITEM, WAIT, console_errors, open_route, ready, shot, until

from servers import wait_until

pytestmark = BROWSER_TESTS

# A page of 20 results, each with its action: into the basket, or (kept offline) retrieved from its page.
RESULTS_WITH_ACTIONS = (
    "return document.querySelectorAll('#s-results li').length === 20"
    " && document.querySelectorAll('#s-results button.basket-toggle, #s-results a.retrieve').length === 20"
)


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
    until(browser, RESULTS_WITH_ACTIONS, "no buttons")
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
    order_and_wait(browser)
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
    until(browser, RESULTS_WITH_ACTIONS, "no results")
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
    order_and_wait(browser)
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


def order_and_wait(browser) -> None:
    """Order the basket, and wait on the order's page until it has succeeded."""
    browser.find_element(By.ID, "b-order").click()
    until(browser, "return location.hash.startsWith('#/orders/')", "no order page")
    until(
        browser,
        "return document.getElementById('od-badge').textContent === 'succeeded'",
        "order did not finish",
        timeout=240,
    )


# Every state the retrieval box took while the page showed it, in the order seen ("gone" once the item is redrawn).
WATCH_RETRIEVAL = """
window.retrievalStates = [];
new MutationObserver(() => {
  const box = document.getElementById('retrieval');
  const state = box ? box.dataset.state : 'gone';
  if (window.retrievalStates[window.retrievalStates.length - 1] !== state) window.retrievalStates.push(state);
}).observe(document.body, {subtree: true, childList: true, attributes: true});
"""


def test_an_offline_item_is_retrieved_from_its_page(platform, browser):
    """An item kept in the slow tier shows "offline" and Retrieve (in the results and on its page) instead of the
    basket and a preview; Retrieve asks an anonymous user to sign in (and a user whose key was refused to sign in
    again), then POSTs the item's retrieve link and follows the retrieval until the item is online, and draws it
    again: basket button, preview, storage:tier online."""
    base = platform.base_url
    ready(base, "/downloads")
    key = (platform.state / "user.key").read_text().strip()
    first_page = httpx.get(f"{base}/stac/search", params={"collections": "garonne-wse", "limit": 20}, timeout=30).json()
    offline = sorted(f["id"] for f in first_page["features"] if f["properties"].get("storage:tier") == "offline")
    assert offline, "the local stack keeps demo rasters offline (stacks/Pulumi.local.yaml: storage.offline)"
    item_id = offline[-1]
    open_route(browser, base, "#/collections")
    browser.execute_script("localStorage.clear(); sessionStorage.clear()")
    browser.get_log("browser")

    open_route(browser, base, "#/search?collections=garonne-wse")
    until(browser, RESULTS_WITH_ACTIONS, "no results")
    listed = browser.execute_script(
        "return [...document.querySelectorAll('#s-results a.retrieve')].map(a => a.hash.split('/').pop())"
    )
    assert sorted(listed) == offline
    browser.find_element(By.CSS_SELECTOR, f'#s-results a.retrieve[href$="/{item_id}"]').click()
    until(browser, "return document.getElementById('retrieval')?.dataset.state === 'offline'", "no retrieval offered")
    assert browser.find_elements(By.CSS_SELECTOR, "main button.basket-toggle") == []
    assert "kept offline" in browser.find_element(By.ID, "preview-status").text
    shot(browser, "laptop-item-offline")

    browser.execute_script(WATCH_RETRIEVAL)
    browser.find_element(By.ID, "retrieve").click()  # anonymous: asked to sign in first
    until(browser, "return document.getElementById('r-signin-key') !== null", "no sign-in offered for retrieving")
    # A key revoked since it was checked: the retrieval is refused (401) and the page asks to sign in again.
    browser.execute_script(
        "sessionStorage.setItem('eolake.session', JSON.stringify({apiKey: 'revoked-key', who: 'API key'}))"
    )
    browser.find_element(By.ID, "retrieve").click()
    until(
        browser,
        "return document.getElementById('retrieve-status').textContent.includes('sign in again')"
        " && document.getElementById('r-signin-key') !== null",
        "a refused key does not lead back to signing in",
    )
    assert browser.execute_script("return sessionStorage.getItem('eolake.session')") is None
    browser.find_element(By.ID, "r-signin-key").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#r-signin button").click()
    until(
        browser,
        "return document.getElementById('retrieval') === null && document.querySelector('main button.basket-toggle')",
        "the item did not come back online on its page",
        timeout=180,
    )
    states = browser.execute_script("return window.retrievalStates")
    assert states == ["offline", "retrieving", "offline", "retrieving", "gone"], states
    tier = browser.execute_script(
        "return [...document.querySelectorAll('#properties tr')].find(r => r.querySelector('th')"
        ".textContent === 'storage:tier').querySelector('td').textContent"
    )
    assert tier == "online"
    until(browser, "return Number(document.getElementById('map').dataset.previewTiles || 0) > 0", "no preview")
    item = httpx.get(f"{base}/stac/collections/garonne-wse/items/{item_id}", timeout=30).json()
    assert item["properties"]["storage:tier"] == "online"
    assert not [link for link in item["links"] if link["rel"] == "retrieve"]
    posted = browser.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/downloads/retrievals'))"
        ".map(e => e.responseStatus)"
    )
    assert posted == [401, 201], posted
    shot(browser, "laptop-item-retrieved")
    errors = [e for e in console_errors(browser) if not ("/downloads/retrievals" in e and "401" in e)]
    assert errors == [], errors  # Chromium logs the refusal of the revoked key itself
