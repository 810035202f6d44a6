#!/usr/bin/env python3
"""Drives the browser page (web/dist, built by web/build.sh) through its self-test in headless
Chromium, over WebDriver (Debian: chromium, chromium-driver, python3-selenium):

1. WebGPU asked for (`?selftest`) in a Chromium with WebGPU on (`--enable-unsafe-webgpu
   --enable-features=Vulkan`: SwiftShader's Vulkan device where there is no GPU);
2. the CPU engine asked for (`?selftest&backend=cpu`);
3. WebGPU asked for in a Chromium with WebGPU off: the page must fall back to the CPU engine
   by itself and say why.

Each must end with `document.title == "eie selftest done"` and `window.eieSelfTest` reporting
the native figure's correct count (assets/lenet/results.json) and outputs within the tolerance
of the native CPU engine's. When run 1 finds no WebGPU adapter the page runs its fallback; the
test says so and passes (or fails with --require-webgpu). After run 1 it draws a digit on the
page's pad and saves a screenshot. Exit status 0 when every check holds.
"""

import argparse
import json
import pathlib
import socket
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(dist):
    """A static file server on 127.0.0.1 (Python's, which serves .wasm as application/wasm)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "-d", str(dist), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the static file server did not start")


def browser(args, webgpu):
    o = webdriver.ChromeOptions()
    o.binary_location = args.chromium
    for a in ["--headless=new", "--no-sandbox", "--window-size=1000,1200"]:
        o.add_argument(a)
    if webgpu:
        o.add_argument("--enable-unsafe-webgpu")
        o.add_argument("--enable-features=Vulkan")
    else:
        o.add_argument("--disable-features=WebGPU")
    return webdriver.Chrome(service=Service(args.chromedriver), options=o)


def self_test(driver, url, timeout):
    driver.get(url)
    WebDriverWait(driver, timeout).until(lambda d: d.title.startswith("eie selftest"))
    return driver.title, driver.execute_script("return window.eieSelfTest")


def check(name, title, r, want_backend, args):
    """The failures of one run, as sentences (empty when it passed)."""
    if title != "eie selftest done":
        return [f"{name}: title `{title}`"]
    bad = []
    if want_backend and r["backend"] != want_backend:
        bad.append(f"{name}: ran on {r['backend']}, expected {want_backend}")
    if r["total"] != args.expect_total or r["correct"] != args.expect_correct:
        bad.append(f"{name}: {r['correct']} of {r['total']} correct, expected "
                   f"{args.expect_correct} of {args.expect_total} (the native figure)")
    if not r["max_abs_diff_vs_native"] <= args.tolerance:
        bad.append(f"{name}: outputs differ from the native CPU engine's by "
                   f"{r['max_abs_diff_vs_native']:.3g} > {args.tolerance:g}")
    return bad


def report(name, r):
    fb = f"; fallback because: {r['fallback']}" if r.get("fallback") else ""
    print(f"{name}: backend {r['backend']} ({r['adapter']}){fb}\n"
          f"  {r['correct']}/{r['total']} correct, max |diff| vs native "
          f"{r['max_abs_diff_vs_native']:.3g}, {r['ms_per_image']:.4f} ms/image, "
          f"first result {r['load_to_first_result_ms']:.0f} ms after navigation")


def draw_digit(driver, shot):
    """Draws a 7 on the pad with the mouse, waits for the page's prediction, saves a
    screenshot; returns the prediction text."""
    pad = driver.find_element(By.ID, "pad")
    before = driver.find_element(By.ID, "timing").text
    # Offsets from the pad's centre (280×280 canvas): the bar, then the stem.
    ActionChains(driver).move_to_element_with_offset(pad, -60, -80).click_and_hold() \
        .move_by_offset(60, 0).move_by_offset(60, 0) \
        .move_by_offset(-30, 60).move_by_offset(-30, 60).move_by_offset(-20, 60) \
        .release().perform()
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "prediction").text
        and d.find_element(By.ID, "timing").text != before)
    shot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shot))
    return driver.find_element(By.ID, "prediction").text


def main():
    results = json.loads((ROOT / "assets/lenet/results.json").read_text())
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dist", default=str(ROOT / "web/dist"))
    p.add_argument("--out", default=str(ROOT / "target/web"), help="screenshots and results")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("--timeout", type=float, default=300, help="seconds per self-test")
    p.add_argument("--expect-correct", type=int,
                   default=results["correct_of_first_1000"]["compressed"])
    p.add_argument("--expect-total", type=int, default=1000)
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.add_argument("--require-webgpu", action="store_true",
                   help="fail when run 1 finds no WebGPU adapter")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    server, base = serve(args.dist)
    failures, record = [], {}
    try:
        driver = browser(args, webgpu=True)
        try:
            title, r = self_test(driver, base + "?selftest", args.timeout)
            failures += check("webgpu", title, r, None, args)
            if r and "backend" in r:
                report("webgpu", r)
                record["webgpu"] = r
                if r["backend"] != "webgpu":
                    msg = ("WebGPU unavailable in this Chromium; the page fell back to the CPU "
                           "engine, which is what this run checked")
                    print(f"  {msg}")
                    if args.require_webgpu:
                        failures.append("webgpu: " + msg)
                prediction = draw_digit(driver, out / "page-after-drawing.png")
                print(f"  drew a 7 on the pad: {prediction}; screenshot "
                      f"{out / 'page-after-drawing.png'}")
            title, r = self_test(driver, base + "?selftest&backend=cpu", args.timeout)
            failures += check("cpu", title, r, "cpu", args)
            if r and "backend" in r:
                report("cpu", r)
                record["cpu"] = r
        finally:
            driver.quit()
        driver = browser(args, webgpu=False)
        try:
            title, r = self_test(driver, base + "?selftest", args.timeout)
            failures += check("no-webgpu", title, r, "cpu", args)
            if r and "backend" in r:
                report("no-webgpu (WebGPU off, the page falls back by itself)", r)
                record["no-webgpu"] = r
                if not r.get("fallback"):
                    failures.append("no-webgpu: the page did not say why it fell back")
        finally:
            driver.quit()
    finally:
        server.kill()
    (out / "selftest.json").write_text(json.dumps(record, indent=1))
    for f in failures:
        print("FAILED", f, file=sys.stderr)
    print("web self-test:", "failed" if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
