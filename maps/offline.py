"""Self-contained maps: inline the JavaScript and CSS a folium map needs from local copies.

folium writes ``<script src="https://cdn...">`` and ``<link href="https://cdn...">``
tags. Field stations and some member countries cannot reach those CDNs, so
:func:`inline_assets` replaces each tag with the file's text from
``flyway/maps/static/`` (Leaflet, MarkerCluster, Leaflet.heat, TimeDimension,
jQuery, moment, iso8601; versions and licences in ``static/LICENSES.md``).
Images referenced by the CSS become ``data:`` URIs. Assets folium adds by default
that flyway's maps never use (Bootstrap, Font Awesome, awesome-markers, jQuery UI,
highlight.js) are dropped in both modes, which also makes the online map open
faster. An external asset we have no copy of is an error in self-contained mode,
never a silent network dependency.
"""
from __future__ import annotations

import base64
import logging
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from flyway.errors import ConfigError

log = logging.getLogger(__name__)

# last path segment of the CDN URL -> file under maps/static/
ASSETS: dict[str, str] = {
    "leaflet.js": "leaflet/leaflet.js",
    "leaflet.css": "leaflet/leaflet.css",
    "jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "jquery.min.js": "jquery/jquery.min.js",
    "leaflet.markercluster.js": "markercluster/leaflet.markercluster.js",
    "MarkerCluster.css": "markercluster/MarkerCluster.css",
    "MarkerCluster.Default.css": "markercluster/MarkerCluster.Default.css",
    "leaflet_heat.min.js": "leaflet_heat/leaflet_heat.min.js",
    "leaflet.timedimension.min.js": "timedimension/leaflet.timedimension.min.js",
    "leaflet.timedimension.control.css": "timedimension/leaflet.timedimension.control.css",
    "leaflet.timedimension.control.min.css": "timedimension/leaflet.timedimension.control.css",
    "iso8601.min.js": "iso8601/iso8601.js",
    "moment.min.js": "moment/moment.min.js",
}
# folium defaults flyway's maps do not use: removed from every map
UNUSED: frozenset[str] = frozenset({
    "bootstrap.bundle.min.js", "bootstrap.min.css", "bootstrap-glyphicons.css", "all.min.css",
    "leaflet.awesome-markers.js", "leaflet.awesome-markers.css", "leaflet.awesome.rotate.min.css",
    "jquery-ui.min.js", "default.min.css",
})

_SCRIPT = re.compile(r'<script\s+src="(?P<url>[^"]+)"\s*>\s*</script>', re.IGNORECASE)
_LINK = re.compile(r'<link\s+rel="stylesheet"\s+href="(?P<url>[^"]+)"\s*/?>', re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*['\"]?(?P<ref>images/[^'\")]+)['\"]?\s*\)")
_SOURCE_MAP = re.compile(r"^\s*//# sourceMappingURL=.*$", re.MULTILINE)
_EXTERNAL = re.compile(r'<(?:script|link)\b[^>]*(?:src|href)="(?:https?:)?//[^"]*"', re.IGNORECASE)


def _name(url: str) -> str:
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _static() -> Path:
    return Path(str(resources.files("flyway.maps") / "static"))


@lru_cache(maxsize=None)
def _asset_text(relative: str) -> str:
    path = _static() / relative
    if not path.is_file():
        raise ConfigError(f"{path}: bundled map asset missing (reinstall flyway-telemetry)")
    text = _SOURCE_MAP.sub("", path.read_text(encoding="utf-8"))
    if relative.endswith(".css"):
        def data_uri(match: re.Match) -> str:
            image = path.parent / match.group("ref")
            data = base64.b64encode(image.read_bytes()).decode("ascii")
            return f"url(data:image/png;base64,{data})"
        text = _CSS_URL.sub(data_uri, text)
    return text


def _script(text: str) -> str:
    # a literal "</script" inside inlined code would end the element early
    return "<script>" + text.replace("</script", "<\\/script") + "</script>"


def inline_assets(page: str, self_contained: bool = True) -> str:
    """Inline (or keep as CDN links) the JS/CSS tags of a rendered folium page.

    Parameters
    ----------
    page : str
        HTML of ``folium.Map.get_root().render()``.
    self_contained : bool
        Inline every asset from the bundled copies; otherwise only drop the
        unused folium defaults and keep CDN links.

    Returns
    -------
    str
        The page. Each asset appears once even when several plugins ask for it.

    Raises
    ------
    ConfigError
        In self-contained mode, when the page references an external script or
        stylesheet flyway has no copy of.
    """
    seen: set[str] = set()

    def replace(match: re.Match, css: bool) -> str:
        url = match.group("url")
        name = _name(url)
        if name in UNUSED:
            return ""
        if not self_contained:
            return match.group(0)
        relative = ASSETS.get(name)
        if relative is None:
            raise ConfigError(f"self-contained map: no bundled copy of {url} (add it to maps/static/ "
                              "and flyway.maps.offline.ASSETS)")
        if relative in seen:
            return ""
        seen.add(relative)
        text = _asset_text(relative)
        return f"<style>{text}</style>" if css else _script(text)

    page = _SCRIPT.sub(lambda m: replace(m, css=False), page)
    page = _LINK.sub(lambda m: replace(m, css=True), page)
    if self_contained:
        left = _EXTERNAL.findall(page)
        if left:
            raise ConfigError(f"self-contained map still references external assets: {left[:3]}")
    return page


def save_map(m, path: str | os.PathLike[str], *, self_contained: bool = False) -> Path:
    """Render a folium map to ``path`` (atomically), inlining assets when asked.

    Parameters
    ----------
    m : folium.Map
    path : path
        Output HTML file.
    self_contained : bool
        Inline Leaflet and plugins so the file opens with no network.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> save_map(flyway.gap_map(store="birds/"), "map.html", self_contained=True)  # doctest: +SKIP
    """
    path = Path(path)
    page = inline_assets(m.get_root().render(), self_contained=self_contained)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    log.info("map written to %s (%.1f MB%s)", path, path.stat().st_size / 1e6,
             ", self-contained" if self_contained else "")
    return path
