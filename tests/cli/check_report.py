#!/usr/bin/python3
"""check_report.py REPORT.html MIN_IMAGES [SCREENSHOT.png]: the report is one self-contained page.

Parses the HTML, checks that every <img> is a PNG inside the page (data: URI) that decodes and
loads, that there are at least MIN_IMAGES of them, that every inline SVG is well-formed XML, and
that nothing is fetched from elsewhere (no src/href to a file or the network). Then renders the
page in headless chromium (installed by scripts/install-deps.sh) and checks the
screenshot is not blank.
"""
import base64
import html.parser
import io
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

from PIL import Image


class Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.references, self.svg_depth, self.svgs, self.current = [], [], 0, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if key in attrs and tag != "img":
                self.references.append((tag, attrs[key]))
        if tag == "link" or tag == "script":
            self.references.append((tag, attrs.get("href") or attrs.get("src") or "inline"))


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


def main():
    path, min_images = sys.argv[1], int(sys.argv[2])
    text = open(path, encoding="utf-8").read()
    collector = Collector()
    collector.feed(text)
    if collector.references:
        fail(f"the page references other resources: {collector.references[:3]}")
    if len(collector.images) < min_images:
        fail(f"{len(collector.images)} images, expected at least {min_images}")
    for i, src in enumerate(collector.images):
        prefix = "data:image/png;base64,"
        if not src.startswith(prefix):
            fail(f"image {i} is not an inline PNG: {src[:60]}")
        picture = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):], validate=True)))
        picture.load()
        if picture.format != "PNG" or picture.width < 8 or picture.height < 8:
            fail(f"image {i}: {picture.format} {picture.size}")
    start = 0
    svgs = 0
    while (begin := text.find("<svg", start)) >= 0:
        end = text.index("</svg>", begin) + len("</svg>")
        ET.fromstring(text[begin:end])  # raises on malformed SVG
        svgs += 1
        start = end
    if svgs < 2:
        fail(f"{svgs} inline SVG charts, expected the learning curves")
    for needle in ("Test metrics", "ged", "Learning curves"):
        if needle not in text:
            fail(f"the page lacks '{needle}'")
    print(f"ok: {len(collector.images)} inline PNGs load, {svgs} SVG charts parse")
    chromium = shutil.which("chromium")
    if not chromium:
        fail("chromium is not installed (scripts/install-deps.sh installs it): the page must be "
             "rendered in a real browser")
    if chromium:
        with tempfile.TemporaryDirectory() as home:
            shot = sys.argv[3] if len(sys.argv) > 3 else os.path.join(home, "shot.png")
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                            f"--user-data-dir={home}", "--window-size=1400,2000",
                            f"--screenshot={shot}", "file://" + os.path.abspath(path)],
                           check=True, capture_output=True, timeout=120)
            colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
            if colours is None or len(colours) < 50:
                fail("the headless chromium screenshot is (nearly) blank")
            print(f"ok: chromium rendered the page ({len(colours)} colours in the screenshot)")


main()
