#!/usr/bin/env python3
"""Render an HTML report of the plugin to a PNG (Qt WebKit, offscreen): the README's report screenshots.

    .venv/bin/python scripts/render_report.py REPORT.html OUT.png [--width 1100] [--max-height 1200]

The reports are self-contained (inline CSS, SVG and data-URI images), so nothing is fetched.
"""

import argparse
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt5.QtCore import QEventLoop, QSize, QUrl  # noqa: E402
from PyQt5.QtGui import QImage, QPainter  # noqa: E402
from PyQt5.QtWebKitWidgets import QWebPage  # noqa: E402
from PyQt5.QtWidgets import QApplication  # noqa: E402


def render(html_path: str, png_path: str, width: int, max_height: int = 0) -> None:
    app = QApplication.instance() or QApplication(sys.argv)
    page = QWebPage()
    page.setViewportSize(QSize(width, 800))
    loop = QEventLoop()
    page.mainFrame().loadFinished.connect(loop.quit)
    page.mainFrame().load(QUrl.fromLocalFile(os.path.abspath(html_path)))
    loop.exec_()
    size = page.mainFrame().contentsSize()
    page.setViewportSize(QSize(width, size.height()))
    image = QImage(QSize(width, size.height()), QImage.Format_ARGB32)
    image.fill(0xFFFFFFFF)
    painter = QPainter(image)
    page.mainFrame().render(painter)
    painter.end()
    if max_height and image.height() > max_height:
        image = image.copy(0, 0, width, max_height)
    if not image.save(png_path):
        raise SystemExit(f"cannot write {png_path}")
    del app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html")
    parser.add_argument("png")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--max-height", type=int, default=0, help="crop the page to this height (0: whole page)")
    args = parser.parse_args()
    render(args.html, args.png, args.width, args.max_height)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
