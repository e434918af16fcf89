"""Copy the web view's front-end libraries from node_modules (installed by `npm ci` from package-lock.json) into
the package's static/vendor directory, which is not committed. The bootstrap (`./eolake`) runs this after `npm ci`:

    python -m eolake_web.assets [--node-modules apps/web/node_modules] [--dest DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_DIR = HERE.parents[1]  # apps/web
# package → files of its dist folder the page loads (the CSP build of MapLibre: its worker is a file, not a blob).
FILES: dict[str, list[str]] = {
    "maplibre-gl": ["dist/maplibre-gl-csp.js", "dist/maplibre-gl-csp-worker.js", "dist/maplibre-gl.css", "LICENSE.txt"],
    "uplot": ["dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"],
    # Every service's API documentation page (eolake_kit.docs) loads Swagger UI from here.
    "swagger-ui-dist": ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"],
    # The basemap: land, coastlines and borders (Natural Earth 1:50m, public domain) as TopoJSON, read in the page.
    "world-atlas": ["countries-50m.json", "LICENSE"],
    "topojson-client": ["dist/topojson-client.min.js", "LICENSE"],
    # Collection descriptions are Markdown: parsed, then sanitised before they reach the page.
    "marked": ["lib/marked.umd.js", "LICENSE"],
    "dompurify": ["dist/purify.min.js", "LICENSE"],
}
# Rivers and lakes (OpenStreetMap water areas, ODbL, generalised by geo-maps): one world file each is too big for
# a page (14 MB), so they are cut into CELL° squares; the map loads the squares it shows, from zoom 6 on.
WATER = {"rivers": "@geo-maps/earth-rivers-500m", "lakes": "@geo-maps/earth-lakes-1km"}
WATER_FILE, WATER_LICENSE = "map.geo.json", "LICENSE"
CELL = 2
BASEMAP = "basemap"
MANIFEST = "manifest.json"


def digest(base: Path, skip: Path | None = None) -> str:
    """A digest of every file under `base` (its path and bytes), leaving out `skip` (a folder) and the manifest."""
    files = []
    for folder, subfolders, names in os.walk(base):
        subfolders[:] = [name for name in subfolders if Path(folder, name) != skip]  # not even listed
        files += [Path(folder, name) for name in names if (folder, name) != (str(base), MANIFEST)]
    found = hashlib.sha256()
    for path in sorted(files):
        found.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes())
    return found.hexdigest()


def recorded_digest(dest: Path) -> str:
    """The digest `build` recorded in the manifest (computed when the files were written); computed now when the
    manifest has none (a folder filled otherwise)."""
    try:
        return json.loads((dest / MANIFEST).read_text())["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        return digest(dest)


def expected_files() -> list[str]:
    return [f"{package}/{Path(name).name}" for package, names in FILES.items() for name in names] + [
        f"{BASEMAP}/index.json"
    ]


def cell_of(lon: float, lat: float) -> str:
    return f"{math.floor(lon / CELL)}_{math.floor(lat / CELL)}"


def cut_water(source: Path, target: Path) -> list[str]:
    """Write one GeoJSON file per square holding a polygon's first vertex; returns the squares written."""
    geometry = json.loads(source.read_text())
    polygons = [
        p
        for g in geometry.get("geometries", [geometry])
        for p in (g["coordinates"] if g["type"] == "MultiPolygon" else [g["coordinates"]])
    ]
    cells: dict[str, list] = {}
    for polygon in polygons:
        lon, lat = polygon[0][0][:2]
        cells.setdefault(cell_of(lon, lat), []).append(polygon)
    target.mkdir(parents=True, exist_ok=True)
    for cell, parts in cells.items():
        body = {"type": "Feature", "properties": {}, "geometry": {"type": "MultiPolygon", "coordinates": parts}}
        tmp = target / f"{cell}.json.tmp"
        tmp.write_text(json.dumps(body, separators=(",", ":")))
        tmp.replace(target / f"{cell}.json")
    return sorted(cells)


def build_basemap(node_modules: Path, dest: Path) -> None:
    index: dict = {"cell": CELL, "layers": {}}
    for layer, package in WATER.items():
        folder = dest / BASEMAP / layer
        shutil.rmtree(folder, ignore_errors=True)
        index["layers"][layer] = cut_water(node_modules / package / WATER_FILE, folder)
        shutil.copyfile(node_modules / package / WATER_LICENSE, folder / "LICENSE")
    (dest / BASEMAP / "index.json").write_text(json.dumps(index, separators=(",", ":")))


def build(node_modules: Path, dest: Path) -> dict[str, str]:
    """Copy the files (atomically per file); returns {package: version}. Raises FileNotFoundError naming what is
    missing, so that a forgotten `npm ci` is reported rather than served as a blank page."""
    wanted = [(p, n) for p, names in FILES.items() for n in names] + [(p, WATER_FILE) for p in WATER.values()]
    missing = [str(node_modules / p / n) for p, n in wanted if not (node_modules / p / n).is_file()]
    if missing:
        raise FileNotFoundError(f"run `npm ci` in {node_modules.parent}: missing {', '.join(missing)}")
    versions = {}
    for package, names in FILES.items():
        versions[package] = json.loads((node_modules / package / "package.json").read_text())["version"]
        target = dest / package
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            tmp = target / (Path(name).name + ".tmp")
            shutil.copyfile(node_modules / package / name, tmp)
            tmp.replace(target / Path(name).name)
    for package in WATER.values():
        versions[package] = json.loads((node_modules / package / "package.json").read_text())["version"]
    build_basemap(node_modules, dest)
    manifest = {"versions": versions, "files": expected_files(), "digest": digest(dest)}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return versions


def check(dest: Path) -> None:
    """Raise when a vendor file is missing (the web view's readiness check)."""
    missing = [name for name in expected_files() if not (dest / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"run `npm ci` in apps/web, then `python -m eolake_web.assets`: {len(missing)} "
            f"front-end files missing in {dest} ({', '.join(missing)})"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="copy the web view's npm libraries into its static directory")
    p.add_argument("--node-modules", type=Path, default=APP_DIR / "node_modules")
    p.add_argument("--dest", type=Path, default=HERE / "static" / "vendor")
    args = p.parse_args(argv)
    try:
        versions = build(args.node_modules, args.dest)
    except (OSError, ValueError) as exc:
        print(f"eolake_web.assets: {exc}", file=sys.stderr)
        return 1
    print("web assets: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + f" -> {args.dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
