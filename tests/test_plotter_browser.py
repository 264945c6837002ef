"""The plotter's page in Debian's headless chromium (Selenium + chromium-driver): what a
user does, checked on the canvas's pixels as well as the DOM.

One browser and one plotter for the module keep it fast; each test starts from a fresh
page load.
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import requests

from plotter import testing as plotter_testing
from plotter.query import round_up
from qss.btrdbclient import connect

T0 = 1_450_426_497_000_000_000
RATE = 120
SECONDS = 600
SHOTS = Path(os.environ.get("QSS_PLOTTER_SCREENSHOTS", "")) if os.environ.get(
    "QSS_PLOTTER_SCREENSHOTS") else None


def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}")
                                      else None)
        if path:
            return path
    raise AssertionError(f"none of {names} installed: apt-get install chromium "
                         f"chromium-driver (./dev test does as root)")


@pytest.fixture(scope="module")
def streams(server):
    db = connect(server.grpc)
    made = {}
    t = T0 + np.round(np.arange(SECONDS * RATE) * (1e9 / RATE)).astype(np.int64)
    keep = (t < T0 + 300 * 10**9) | (t >= T0 + 360 * 10**9)      # a minute's gap
    for collection, name, unit, base, period in (("upmu/uPMU1", "L1MAG", "V", 7200.0, 400),
                                                 ("upmu/uPMU1", "C1MAG", "A", 110.0, 3000),
                                                 ("upmu/uPMU2", "L1MAG", "V", 7150.0, 900)):
        s = db.create(uuidlib.uuid4(), collection, {"name": name, "unit": unit}, {})
        v = base + np.sin(np.arange(len(t)) / period) * base / 50
        s.insert(list(zip(t[keep].tolist(), v[keep].tolist())))
        s.flush()
        made[f"{collection}/{name}"] = s
    yield made
    db._qss_channel.close()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--force-device-scale-factor=1",
                "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(_binary("chromedriver")), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow",
                                                        "downloadPath": str(downloads)})
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, script: str, timeout: float = 20.0, *args):
    """Poll a JavaScript expression until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});", *args)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {script}")
        time.sleep(0.05)


def load(browser, url: str):
    """Load ``url`` afresh (from the same page, a URL that differs only after # would
    not reload it)."""
    browser.get("about:blank")
    browser.get(url)


def open_page(browser, plotter):
    load(browser, plotter.url + "/")
    wait(browser, "document.querySelectorAll('#tree .stream').length >= 3")


def select(browser, path: str):
    browser.execute_script(
        "const row = [...document.querySelectorAll('#tree .stream')]"
        ".find(r => r.title === arguments[0]); row.querySelector('input').click();", path)


def drawn_pixels(browser, colour: str) -> int:
    """Pixels of the chart's canvas near ``colour`` (#rrggbb)."""
    return browser.execute_script("""
        const c = document.querySelector('#chart canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const want = [1, 3, 5].map(i => parseInt(arguments[0].slice(i, i + 2), 16));
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] > 200 && Math.abs(d[i] - want[0]) < 40 && Math.abs(d[i + 1] - want[1]) < 40
              && Math.abs(d[i + 2] - want[2]) < 40) n++;
        }
        return n;""", colour)


def shot(browser, name: str):
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / f"{name}.png"))


def test_select_streams_and_the_chart_draws_them(browser, plotter):
    open_page(browser, plotter)
    titles = browser.execute_script(
        "return [...document.querySelectorAll('#tree .stream')].map(r => r.title)")
    assert titles == ["/upmu/uPMU1/C1MAG", "/upmu/uPMU1/L1MAG", "/upmu/uPMU2/L1MAG"]
    select(browser, "/upmu/uPMU1/L1MAG")
    select(browser, "/upmu/uPMU1/C1MAG")
    wait(browser, "window.plotter.plot && window.plotter.last"
                  " && window.plotter.last.streams.length === 2")
    colours = browser.execute_script("return window.plotter.selected.map(x => x.color)")
    for colour in colours:          # each stream's mean line is on the canvas
        assert drawn_pixels(browser, colour) > 300, colour
    # one y-axis per unit, labelled
    # (uPlot draws axes on the canvas: their labels are read from the chart's axes)
    labels = browser.execute_script("return window.plotter.plot.axes.map(a => a.label)")
    assert labels == ["Time (UTC)", "V", "A"]
    # everything the page loaded came from the plotter itself
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(u.startswith(plotter.url + "/") for u in loaded), loaded
    # the filter box hides what does not match
    browser.find_element("id", "filter").send_keys("upmu2")
    visible = browser.execute_script(
        "return [...document.querySelectorAll('#tree .stream')]"
        ".filter(r => r.offsetParent !== null).map(r => r.title)")
    assert visible == ["/upmu/uPMU2/L1MAG"]
    shot(browser, "plotter-two-streams")


def test_a_drag_zoom_asks_for_a_finer_point_width_and_redraws(browser, plotter):
    open_page(browser, plotter)
    select(browser, "/upmu/uPMU1/L1MAG")
    wait(browser, "window.plotter.last && window.plotter.stats.requests >= 1")
    before = browser.execute_script("return [window.plotter.stats.requests, "
                                    "window.plotter.stats.lastPw[0]]")
    from selenium.webdriver.common.action_chains import ActionChains
    over = browser.find_element("css selector", "#chart .u-over")
    width = over.size["width"]
    ActionChains(browser).move_to_element_with_offset(over, -width // 2 + 20, 0) \
        .click_and_hold().move_by_offset(60, 0).release().perform()
    wait(browser, f"window.plotter.stats.requests > {before[0]}")
    pw = browser.execute_script("return window.plotter.stats.lastPw[0]")
    assert pw is None or pw < before[1]          # raw (None) or finer windows
    colour = browser.execute_script("return window.plotter.selected[0].color")
    assert drawn_pixels(browser, colour) > 100


def test_show_info_on_right_click_shows_the_uuid(browser, plotter, streams):
    open_page(browser, plotter)
    from selenium.webdriver.common.action_chains import ActionChains
    row = browser.find_element("css selector", '#tree .stream[title="/upmu/uPMU2/L1MAG"]')
    ActionChains(browser).context_click(row).perform()
    browser.find_element("css selector", '#menu [data-action="info"]').click()
    uuid = wait(browser, "document.getElementById('info').open"
                         " && document.getElementById('info-uuid').textContent")
    assert uuid == str(streams["upmu/uPMU2/L1MAG"].uuid)
    assert f"UUID={uuid}" in browser.find_element("id", "info-curl").text
    shot(browser, "plotter-show-info")


def test_the_zone_switch_relabels_the_time_axis(browser, plotter):
    open_page(browser, plotter)
    select(browser, "/upmu/uPMU1/L1MAG")
    wait(browser, "window.plotter.plot")
    zone = browser.find_element("id", "zone")
    zone.clear()
    zone.send_keys("America/Los_Angeles\n")
    browser.execute_script("document.getElementById('zone').dispatchEvent(new Event('change'))")
    label = wait(browser, "window.plotter.plot.axes[0].label.includes('Los_Angeles')"
                          " && window.plotter.plot.axes[0].label")
    assert label == "Time (America/Los_Angeles)"
    start = browser.find_element("id", "start").get_attribute("value")
    assert start.startswith("2015-12-18 00:")     # 08:... UTC is 00:... in Los Angeles


def test_the_gauge_says_no_longer_accepting_new_data_at_the_threshold(browser, server,
                                                                    tmp_path):
    p = plotter_testing.start(server.grpc, tmp_path, "--max-disk-percent", "1",
                              log_path=tmp_path / "plotter.log")
    try:
        browser.get(p.url + "/")
        text = wait(browser, "!document.getElementById('usage-message').hidden"
                             " && document.getElementById('usage-message').textContent")
        assert text == "No longer accepting new data"
        shot(browser, "plotter-gauge-full")
    finally:
        p.stop()


def test_a_permalink_round_trip_restores_the_view(browser, plotter, streams):
    a, b = (str(streams[k].uuid) for k in ("upmu/uPMU1/C1MAG", "upmu/uPMU2/L1MAG"))
    start, end = T0 + 100 * 10**9, T0 + 160 * 10**9
    load(browser, f"{plotter.url}/#s={a},{b}&start={start}&end={end}&zone=UTC")
    wait(browser, "window.plotter.plot && window.plotter.stats.requests >= 1")
    zone = browser.find_element("id", "zone")
    zone.clear()
    zone.send_keys("Asia/Tokyo")
    browser.execute_script("document.getElementById('zone').dispatchEvent(new Event('change'))")
    browser.find_element("id", "permalink").click()
    url = wait(browser, "document.getElementById('plink-url').value")
    assert re.fullmatch(re.escape(plotter.url) + r"/\?p=[A-Za-z0-9_-]{11}", url)
    browser.get("about:blank")
    browser.get(url)
    wait(browser, "window.plotter.plot && window.plotter.stats.requests >= 1")
    state = browser.execute_script(
        "const p = window.plotter; return [p.selected.map(x => x.entry.uuid), "
        "Math.round(p.view.start / 1e6), Math.round(p.view.end / 1e6), p.zone, "
        "p.plot.axes[0].label]")
    assert state == [[a, b], start // 10**6, end // 10**6, "Asia/Tokyo",
                     "Time (Asia/Tokyo)"]
    checked = browser.execute_script(
        "return [...document.querySelectorAll('#tree .stream input:checked')]"
        ".map(i => i.parentElement.title)")
    assert checked == ["/upmu/uPMU1/C1MAG", "/upmu/uPMU2/L1MAG"]


def test_the_csv_download_equals_the_clients_windows(browser, plotter, streams, downloads):
    s = streams["upmu/uPMU1/C1MAG"]
    start, end = T0 + 30 * 10**9, T0 + 90 * 10**9
    load(browser, f"{plotter.url}/#s={s.uuid}&start={start}&end={end}")
    wait(browser, "window.plotter.plot && window.plotter.stats.requests >= 1")
    pw = browser.execute_script("return window.plotter.stats.lastPw[0]")
    browser.find_element("id", "csv").click()
    deadline = time.monotonic() + 20
    while not (done := [p for p in downloads.glob("plotter-*.csv")]):
        assert time.monotonic() < deadline, "no CSV downloaded"
        time.sleep(0.1)
    rows = list(csv.reader(io.StringIO(done[0].read_text())))
    assert rows[0][2:] == [f"/upmu/uPMU1/C1MAG {k}" for k in ("mean", "min", "max", "count")]
    want = [p for p, _ in s.aligned_windows(start, round_up(end, pw), pw)]
    assert [(int(r[0]), float(r[2]), float(r[3]), float(r[4]), int(r[5])) for r in rows[1:]] \
        == [(p.time, p.mean, p.min, p.max, p.count) for p in want]


def test_the_svg_download_holds_the_visible_chart(browser, plotter, streams, downloads):
    a, b = (str(streams[k].uuid) for k in ("upmu/uPMU1/L1MAG", "upmu/uPMU1/C1MAG"))
    start, end = T0 + 200 * 10**9, T0 + 500 * 10**9        # across the minute's gap
    load(browser, f"{plotter.url}/#s={a},{b}&start={start}&end={end}&zone=UTC")
    wait(browser, "window.plotter.plot && window.plotter.stats.requests >= 1")

    def download() -> ET.Element:
        for old in downloads.glob("plotter*.svg"):
            old.unlink()
        browser.find_element("id", "svg").click()
        deadline = time.monotonic() + 20
        while not (done := [p for p in downloads.glob("plotter*.svg")]):
            assert time.monotonic() < deadline, "no SVG downloaded"
            time.sleep(0.1)
        time.sleep(0.2)          # Chrome renames the finished file into place
        return ET.parse(done[0]).getroot()

    svg = download()
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    colours = browser.execute_script("return window.plotter.selected.map(x => x.color)")
    means = svg.findall(".//s:path[@class='mean']", ns)
    assert [p.get("stroke") for p in means] == colours          # a line per visible stream
    assert all(len(svg.findall(".//s:path[@class='band']", ns)) == 2 for _ in [0])
    L, T, W, H = (float(browser.execute_script(
        f"const u = window.plotter.plot; return u.bbox.{k} / uPlot.pxRatio")) for k in
        ("left", "top", "width", "height"))
    for path in means:
        runs = re.findall(r"M[^M]*", path.get("d"))
        # drawn from the data in view, and the minute without data is a gap (two runs)
        assert len(runs) == 2, path.get("d")[:200]
        xy = [tuple(map(float, p.split(","))) for p in re.findall(r"[\d.-]+,[\d.-]+",
                                                                   path.get("d"))]
        assert len(xy) > 200
        inside = [(x, y) for x, y in xy if L <= x <= L + W]
        assert len(inside) > 0.9 * len(xy) and all(T - 1 <= y <= T + H + 1 for _, y in inside)
    texts = ["".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert {"Time (UTC)", "V", "A"} <= set(texts)              # the axes' labels
    # the time axis' and the two value axes' tick values, as the chart shows them
    ticks = browser.execute_script(
        "return window.plotter.plot.axes.map(a => (a._values || []).filter(v => v)"
        ".map(v => String(v).replace(/\\n/g, '')))")
    assert len(ticks) == 3 and all(len(t) >= 3 for t in ticks), ticks
    assert all(set(t) <= set(texts) for t in ticks), (ticks, texts)
    # a stream switched off in the legend is not in the image
    browser.execute_script("document.querySelector('#legend tr[data-uuid] input').click()")
    svg = download()
    assert [p.get("stroke") for p in svg.findall(".//s:path[@class='mean']", ns)] == \
        colours[1:]


def test_the_density_strip_shows_where_data_exist_and_jumps_there(browser, plotter):
    open_page(browser, plotter)
    select(browser, "/upmu/uPMU1/L1MAG")
    bins = wait(browser, "window.plotter.density.bins && Array.from(window.plotter.density.bins)")
    n = len(bins)
    # the minute without data (300-360 s of 600) is empty; either side has points
    gap = bins[int(n * 310 / 600):int(n * 350 / 600)]
    assert sum(gap) == 0 and sum(bins[:int(n * 290 / 600)]) > 0
    assert sum(bins) == SECONDS * RATE - 60 * RATE           # every point, once
    dark = browser.execute_script("""
        const c = document.getElementById('density');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 100) n++; return n;""")
    assert dark > 100
    # a narrow view, then a click near the strip's right end moves the view there
    uuid = browser.execute_script("return window.plotter.selected[0].entry.uuid")
    load(browser, f"{plotter.url}/#s={uuid}&start={T0}&end={T0 + 20 * 10**9}")
    wait(browser, "window.plotter.density.bins && window.plotter.view")
    from selenium.webdriver.common.action_chains import ActionChains
    strip = browser.find_element("id", "density")
    ActionChains(browser).move_to_element_with_offset(
        strip, int(strip.size["width"] * 0.45), 0).click().perform()
    middle = wait(browser, f"window.plotter.view.start > {T0 + 100 * 10**9} && "
                           "(window.plotter.view.start + window.plotter.view.end) / 2")
    assert abs(middle - (T0 + 0.95 * SECONDS * 10**9)) < 10 * 10**9


def test_measuring_cursors_give_time_and_value_differences(browser, plotter, streams):
    uuid = streams["upmu/uPMU1/L1MAG"].uuid
    start, end = T0 + 10 * 10**9, T0 + 70 * 10**9
    load(browser, f"{plotter.url}/#s={uuid}&start={start}&end={end}")
    wait(browser, "window.plotter.plot && window.plotter.stats.requests >= 1")
    browser.find_element("id", "measure").click()
    from selenium.webdriver.common.action_chains import ActionChains
    over = browser.find_element("css selector", "#chart .u-over")
    w, h = over.size["width"], over.size["height"]
    # from the centre: a quarter of the width left and up, then a quarter right and down
    ActionChains(browser).move_to_element_with_offset(over, -w // 4, -h // 4).click() \
        .move_to_element_with_offset(over, w // 4, h // 4).click().perform()
    dt, dy, text = wait(browser, "window.plotter.measure.points.length === 2 && "
                                 "[window.plotter.measure.dt, window.plotter.measure.dy, "
                                 "document.getElementById('measure-info').textContent]")
    # half the plot's width of a 60 s view is 30 s; the value goes down by half the axis
    assert abs(dt - 30e9) < 0.02 * 30e9
    lo, hi = browser.execute_script("const s = window.plotter.plot.scales['V']; "
                                    "return [s.min, s.max]")
    assert abs(dy + (hi - lo) / 2) < 0.02 * (hi - lo)
    assert text.startswith("Δt = 30.") and " V " in text
    purple = drawn_pixels(browser, "#6a1b9a")
    assert purple > 2 * h            # two dashed vertical and two horizontal lines


def test_axes_are_editable_and_a_permalink_keeps_them(browser, plotter, streams):
    a, b = (str(streams[k].uuid) for k in ("upmu/uPMU1/L1MAG", "upmu/uPMU1/C1MAG"))
    load(browser, f"{plotter.url}/#s={a},{b}&start={T0}&end={T0 + 60 * 10**9}")
    wait(browser, "window.plotter.plot && window.plotter.stats.requests >= 1")

    def axes():
        return browser.execute_script(
            "return window.plotter.plot.axes.slice(1).map(a => [a.scale, a.label, a.side])")
    assert axes() == [["V", "V", 3], ["A", "A", 1]]
    from selenium.webdriver.support.ui import Select

    def change(css, value, row):
        # (each change redraws the chart and rebuilds this panel: find the field anew)
        browser.execute_script(
            "const el = document.querySelector(arguments[0]); el.value = arguments[1];"
            "el.dispatchEvent(new Event('change'))", f'#axes tr[data-axis="{row}"] {css}', value)

    # C1MAG onto the V axis: one axis left; rename it, put it right, fix its scale
    Select(browser.find_element("css selector", f'#legend tr[data-uuid="{b}"] .stream-axis')) \
        .select_by_value("V")
    wait(browser, "window.plotter.plot.axes.length === 2")
    change(".axis-name", "Magnitudes", row="V")
    change(".axis-side", "right", row="V")
    browser.execute_script("document.querySelector('#axes tr[data-axis=\"V\"] .axis-auto')"
                           ".click()")
    change(".axis-min", "0", row="V")
    change(".axis-max", "10000", row="V")
    wait(browser, "window.plotter.plot.scales.V.max === 10000")
    assert axes() == [["V", "Magnitudes", 1]]
    assert browser.execute_script("const s = window.plotter.plot.scales.V; "
                                  "return [s.min, s.max]") == [0, 10000]
    # a permalink restores the axes
    browser.find_element("id", "permalink").click()
    url = wait(browser, "document.getElementById('plink-url').value")
    browser.get("about:blank")
    browser.get(url)
    wait(browser, "window.plotter.plot && window.plotter.stats.requests >= 1")
    assert axes() == [["V", "Magnitudes", 1]]
    assert browser.execute_script("return window.plotter.plot.scales.V.max") == 10000


def test_follow_now_fetches_only_what_is_new(browser, plotter, server):
    db = connect(server.grpc)
    try:
        s = db.create(uuidlib.uuid4(), "upmu/uPMU4", {"name": "L1MAG", "unit": "V"}, {})
        t = T0 + np.round(np.arange(120 * RATE) * (1e9 / RATE)).astype(np.int64)
        s.insert(list(zip(t.tolist(), (7000.0 + np.arange(len(t)) % 50).tolist())))
        s.flush()
        deadline = time.monotonic() + 20     # the plotter reads the stream list every 5 s
        while str(s.uuid) not in requests.get(plotter.url + "/api/streams", timeout=10).text:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        load(browser, f"{plotter.url}/#s={s.uuid}&start={T0}&end={T0 + 125 * 10**9}")
        wait(browser, "window.plotter.plot && window.plotter.stats.requests >= 1")
        before = browser.execute_script("return [window.plotter.stats.requests, "
                                        "window.plotter.last.streams[0].pw]")
        # a minute more arrives (as sync2q would insert it); the page follows
        t2 = T0 + 120 * 10**9 + np.round(np.arange(60 * RATE) * (1e9 / RATE)).astype(np.int64)
        s.insert(list(zip(t2.tolist(), [7100.0] * len(t2))))
        s.flush()
        browser.execute_script("return window.plotter.follow()")
        follow = wait(browser, "window.plotter.stats.follows >= 1 && window.plotter.stats.lastFollow")
        view = browser.execute_script("return [window.plotter.view.start, window.plotter.view.end]")
        assert view[1] > T0 + 179 * 10**9 and abs(view[1] - view[0] - 125e9) < 1e6
        # only from the last window drawn on, at the view's point width, and no full reload
        pw = before[1]
        assert follow["from"] >= T0 + 119 * 10**9 - 2**pw
        assert 0 < follow["windows"][0] <= 62e9 / 2**pw + 2
        assert browser.execute_script("return window.plotter.stats.requests") == before[0]
        # what the page holds now is what a fresh read of the new view gives
        held = browser.execute_script(
            "const s = window.plotter.last.streams[0]; return [s.times, s.mean, s.count]")
        start, end = round(view[0]), round(view[1])
        fresh = [p for p, _ in s.aligned_windows(start, round_up(end, pw), pw)]
        assert [round(x) for x in held[0]] == pytest.approx([p.time for p in fresh], abs=512)
        assert held[2] == [p.count for p in fresh]
    finally:
        db._qss_channel.close()


def test_shift_drag_pans_and_fetches_the_new_view(browser, plotter, streams):
    uuid = streams["upmu/uPMU1/L1MAG"].uuid
    start, end = T0 + 100 * 10**9, T0 + 160 * 10**9
    load(browser, f"{plotter.url}/#s={uuid}&start={start}&end={end}")
    wait(browser, "window.plotter.plot && window.plotter.stats.requests >= 1")
    requests_before = browser.execute_script("return window.plotter.stats.requests")
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    over = browser.find_element("css selector", "#chart .u-over")
    quarter = over.size["width"] // 4
    ActionChains(browser).key_down(Keys.SHIFT).move_to_element(over).click_and_hold() \
        .move_by_offset(-quarter, 0).release().key_up(Keys.SHIFT).perform()
    view = wait(browser, f"window.plotter.stats.requests > {requests_before} && "
                         "[window.plotter.view.start, window.plotter.view.end]")
    # dragged left by a quarter of the width: the view moved a quarter later, same span
    assert abs(view[0] - (start + 15e9)) < 1e9 and abs(view[1] - view[0] - 60e9) < 1e6
    assert browser.execute_script("return window.plotter.history.length") >= 1


def test_a_pan_fetches_only_the_windows_the_page_lacks(browser, plotter, streams):
    """A view that partly overlaps the windows in the page asks only for the rest, at the
    same point width, and what it draws equals a fresh read of the whole view."""
    s = streams["upmu/uPMU1/L1MAG"]
    start, end = T0 + 20 * 10**9, T0 + 260 * 10**9
    load(browser, f"{plotter.url}/#s={s.uuid}&start={start}&end={end}")
    wait(browser, "window.plotter.plot && window.plotter.stats.requests >= 1"
                  " && window.plotter.density.bins")
    count = "performance.getEntriesByType('resource').filter(e => e.name.includes('/api/data?'))"
    before = browser.execute_script(f"return {count}.length")
    pw = browser.execute_script("return window.plotter.last.streams[0].pw")
    assert pw >= 20
    browser.execute_script("window.plotter.timeNavigation(0.25)")       # a quarter later
    wait(browser, "window.plotter.stats.requests >= 2")
    wait(browser, f"{count}.length >= {before + 1}")
    time.sleep(0.3)                                # nothing more is asked for
    asked = browser.execute_script(f"return {count}.slice({before}).map(e => e.name)")
    assert len(asked) == 1, asked
    q = dict(p.split("=", 1) for p in asked[0].split("?", 1)[1].split("&"))
    w = 2**pw
    v0, v1 = browser.execute_script("return [window.plotter.view.start, window.plotter.view.end]")
    assert abs(v1 - v0 - (end - start)) < 1e6 and abs(v0 - start - (end - start) / 4) < 1e6
    # the windows from the page's last one to the new view's end (BTrDB rounds the start
    # down to a window, the plotter the end up), at the same point width
    assert int(q["pw"]) == pw
    assert int(q["start"]) >> pw << pw == round_up(end, pw)
    assert round_up(int(q["end"]), pw) == round_up(int(v1), pw)
    # the merged windows are those of a fresh read of the new view
    held = browser.execute_script(
        "const s = window.plotter.last.streams[0]; return [s.times, s.mean, s.count]")
    fresh = [p for p, _ in s.aligned_windows(int(v0) // w * w, round_up(int(v1), pw), pw)]
    assert held[2] == [p.count for p in fresh]
    assert [round(t) for t in held[0]] == pytest.approx([p.time for p in fresh], abs=512)
    assert held[1] == pytest.approx([p.mean for p in fresh], rel=1e-6)
    # back, and forward again by the same pan: both in the page, nothing asked for
    browser.execute_script("window.plotter.timeBack()")
    browser.execute_script("window.plotter.timeNavigation(0.25)")
    time.sleep(0.5)
    assert browser.execute_script(f"return {count}.length") == before + 1
    # a zoom out needs coarser windows: the whole view is fetched, once
    browser.find_element("id", "reset").click()
    wait(browser, f"{count}.length >= {before + 2}")
    time.sleep(0.3)
    asked = browser.execute_script(f"return {count}.slice({before + 1}).map(e => e.name)")
    assert len(asked) == 1 and "pw=" not in asked[0], asked


def test_twenty_streams_in_one_view(browser, plotter, server):
    db = connect(server.grpc)
    try:
        t = T0 + np.round(np.arange(30 * RATE) * (1e9 / RATE)).astype(np.int64)
        made = []
        for i in range(20):
            s = db.create(uuidlib.uuid4(), f"many/uPMU{i:02d}", {"name": "L1MAG", "unit": "V"},
                          {})
            s.insert(list(zip(t.tolist(), (7000.0 + 10 * i + np.sin(np.arange(len(t)) / 99))
                              .tolist())))
            s.flush()
            made.append(str(s.uuid))
        deadline = time.monotonic() + 20     # the plotter reads the stream list every 5 s
        while made[-1] not in requests.get(plotter.url + "/api/streams", timeout=10).text:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        load(browser, f"{plotter.url}/#s={','.join(made)}&start={T0}&end={T0 + 30 * 10**9}")
        wait(browser, "window.plotter.plot && window.plotter.last"
                      " && window.plotter.last.streams.length === 20")
        assert browser.execute_script("return window.plotter.plot.series.length") == 1 + 3 * 20
        assert browser.execute_script(
            "return document.querySelectorAll('#legend tr[data-uuid]').length") == 20
        colours = browser.execute_script("return window.plotter.selected.map(x => x.color)")
        assert len(set(colours)) == 20
        assert sum(drawn_pixels(browser, c) > 50 for c in colours) >= 18   # lines may overlap
    finally:
        db._qss_channel.close()
