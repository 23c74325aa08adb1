"""``index.html`` of a frames folder: the source stages, then one row of stage images per frame.

The page is static (relative links only, no external resources). A small inline script counts the
images that failed to load and shows a banner if any did; it also records the counts on
``<body data-images=… data-broken=…>`` so that a headless browser can check the page.
"""

from __future__ import annotations

import html
from pathlib import Path

from retarget.io.atomic import write_bytes_atomic

_STYLE = """
body { font-family: system-ui, sans-serif; background: #161616; color: #e8e8e8; margin: 1.2em; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
.settings { color: #aaa; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; background: #222; padding: 6px; border-radius: 4px; }
figure img { display: block; height: 180px; image-rendering: pixelated; }
figcaption { font-size: 0.8em; color: #ccc; margin-top: 4px; max-width: 240px; }
table { border-collapse: collapse; }
td, th { padding: 4px; vertical-align: top; border-bottom: 1px solid #333; }
th { font-weight: normal; color: #aaa; font-size: 0.8em; text-align: left; }
td img { display: block; height: 150px; image-rendering: pixelated; }
.note { color: #f0c060; font-size: 0.8em; }
#broken { display: none; background: #802020; padding: 0.5em; }
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (im) { return !im.complete || im.naturalWidth === 0; });
  document.body.setAttribute('data-images', String(images.length));
  document.body.setAttribute('data-broken', String(broken.length));
  if (broken.length) {
    var box = document.getElementById('broken');
    box.style.display = 'block';
    box.textContent = broken.length + ' image(s) failed to load: ' +
      broken.map(function (im) { return im.getAttribute('src'); }).join(', ');
  }
});
"""


def _img(path: str, caption: str) -> str:
    src = html.escape(path, quote=True)
    return (f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(caption, quote=True)}"></a>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_index(result, title: str, settings: str = "") -> str:
    """The page as a string (see module docstring)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", '<div id="broken"></div>']
    if settings:
        parts.append(f'<p class="settings">{html.escape(settings)}</p>')
    if result.source:
        parts.append("<h2>Source (computed once)</h2><div class=\"grid\">")
        parts += [_img(f.path, f.caption) for f in result.source]
        parts.append("</div>")
    if result.frames:
        parts.append(f"<h2>Frames ({len(result.frames)})</h2><table>")
        header = [f.caption.split(" (")[0] for f in result.frames[0].figures]
        header = [h if not h.startswith("driver frame") else "driver frame" for h in header]
        parts.append("<tr><th>frame</th>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                     + "<th>contact sheet</th></tr>")
        for entry in result.frames:
            cells = [f"<td>{entry.index}<br>{entry.time:.2f} s"
                     + (f'<br><span class="note">{html.escape(entry.note)}</span>' if entry.note else "") + "</td>"]
            for figure in entry.figures:
                src = html.escape(figure.path, quote=True)
                cells.append(f'<td><a href="{src}"><img src="{src}" alt="{html.escape(figure.caption, quote=True)}"'
                             f' title="{html.escape(figure.caption, quote=True)}"></a></td>')
            sheet = html.escape(entry.sheet, quote=True)
            cells.append(f'<td><a href="{sheet}"><img src="{sheet}" alt="contact sheet {entry.index}"></a></td>')
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def write_index(result, title: str, settings: str = "") -> Path:
    """Write ``result.index_html`` atomically."""
    path = Path(result.index_html)
    text = render_index(result, title, settings)
    return write_bytes_atomic(path, text)
