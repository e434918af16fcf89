"""A model of the Garonne reach around Toulouse: river courses, virtual stations, satellite missions, and a
seasonal water level. The demo products (rasters, series) are drawn from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import numpy as np

BBOX = (1.30, 43.50, 1.50, 43.70)
# Metres per degree at the reach's latitude: good enough for distances over ~20 km.
M_PER_DEG_LAT = 111_132.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(43.6))


@dataclass(frozen=True)
class River:
    name: str
    course: tuple[tuple[float, float], ...]  # (lon, lat), upstream to downstream
    downstream_wse: float | None  # m above EGM2008 at the last vertex; None: the Garonne level there
    slope: float  # m per km
    half_width: float  # m at mean stage
    width_per_m: float  # half-width gain per metre of stage anomaly
    stage_amplitude: float  # scales the shared seasonal anomaly


# Approximate real courses through Toulouse; tributary downstream ends sit on the Garonne.
GARONNE = River(
    "GARONNE",
    (
        (1.352, 43.500),
        (1.372, 43.507),
        (1.398, 43.519),
        (1.405, 43.531),
        (1.418, 43.553),
        (1.436, 43.576),
        (1.440, 43.588),
        (1.437, 43.5995),
        (1.431, 43.604),
        (1.422, 43.613),
        (1.413, 43.625),
        (1.402, 43.642),
        (1.392, 43.675),
        (1.375, 43.700),
    ),
    downstream_wse=128.0,
    slope=0.8,
    half_width=75.0,
    width_per_m=28.0,
    stage_amplitude=1.0,
)
ARIEGE = River(
    "ARIEGE",
    ((1.430, 43.500), (1.418, 43.505), (1.406, 43.512), (1.398, 43.519)),
    downstream_wse=None,
    slope=1.2,
    half_width=40.0,
    width_per_m=15.0,
    stage_amplitude=0.8,
)
TOUCH = River(
    "TOUCH",
    ((1.330, 43.575), (1.345, 43.590), (1.362, 43.612), (1.380, 43.628), (1.406, 43.636)),
    downstream_wse=None,
    slope=1.5,
    half_width=18.0,
    width_per_m=6.0,
    stage_amplitude=0.5,
)
RIVERS = (ARIEGE, TOUCH, GARONNE)


@dataclass(frozen=True)
class Mission:
    name: str
    repeat_days: float
    pass_time: tuple[int, int]
    sigma: float  # m


MISSIONS = {
    m.name: m
    for m in (
        Mission("SENTINEL3A", 27.0, (10, 21), 0.15),
        Mission("SENTINEL3B", 27.0, (21, 35), 0.15),
        Mission("SENTINEL6A", 9.9156, (5, 48), 0.10),
        Mission("SWOT", 20.86, (14, 12), 0.06),
    )
}


@dataclass(frozen=True)
class Station:
    id: str
    river: River
    chainage_km: float  # from the river's upstream vertex
    missions: tuple[str, ...]
    first_pass_day: int  # day offset of each mission's first pass in the year

    @property
    def true_name(self) -> str:
        return f"R_GARONNE_{self.id}"


STATIONS = (
    Station("GARONNE_KM0349", GARONNE, 2.0, ("SENTINEL3A", "SENTINEL3B"), 3),
    Station("GARONNE_KM0342", GARONNE, 9.5, ("SENTINEL6A",), 1),
    Station("GARONNE_KM0336", GARONNE, 15.0, ("SENTINEL3A", "SENTINEL3B"), 11),
    Station("GARONNE_KM0328", GARONNE, 23.0, ("SWOT", "SENTINEL3B"), 6),
    Station("ARIEGE_KM0003", ARIEGE, 1.0, ("SENTINEL3A", "SWOT"), 8),
    Station("TOUCH_KM0004", TOUCH, 4.0, ("SENTINEL3B", "SWOT"), 14),
)


# --- geometry and hydraulics -------------------------------------------------------------------------


def _to_metres(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (lon - BBOX[0]) * M_PER_DEG_LON, (lat - BBOX[1]) * M_PER_DEG_LAT


@cache
def _course_metres(river: River) -> np.ndarray:
    """The course in local metres, rounded off by Chaikin corner cutting (end points kept)."""
    pts = np.array(river.course, dtype=np.float64)
    x, y = _to_metres(pts[:, 0], pts[:, 1])
    verts = np.stack([x, y], axis=1)
    for _ in range(3):
        a, b = verts[:-1], verts[1:]
        cut = np.empty((2 * len(a), 2))
        cut[0::2], cut[1::2] = 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b
        verts = np.vstack([verts[:1], cut[1:-1], verts[-1:]])
    verts.flags.writeable = False
    return verts


def river_length_km(river: River) -> float:
    return float(np.linalg.norm(np.diff(_course_metres(river), axis=0), axis=1).sum()) / 1000.0


def distance_and_chainage(river: River, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (m) from each point to the river course and chainage (km from upstream) of its projection."""
    px, py = _to_metres(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    verts = _course_metres(river)
    best_d = np.full(px.shape, np.inf)
    best_s = np.zeros(px.shape)
    start = 0.0
    for (ax, ay), (bx, by) in zip(verts[:-1], verts[1:]):
        seg_len = math.hypot(bx - ax, by - ay)
        t = np.clip(((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / seg_len**2, 0.0, 1.0)
        d = np.hypot(px - (ax + t * (bx - ax)), py - (ay + t * (by - ay)))
        closer = d < best_d
        best_d = np.where(closer, d, best_d)
        best_s = np.where(closer, (start + t * seg_len) / 1000.0, best_s)
        start += seg_len
    return best_d, best_s


def point_at(river: River, chainage_km: float) -> tuple[float, float]:
    """(lon, lat) of the point at chainage_km along the course."""
    verts = _course_metres(river)
    remaining = chainage_km * 1000.0
    for a, b in zip(verts[:-1], verts[1:]):
        seg_len = float(np.linalg.norm(b - a))
        if remaining <= seg_len:
            x, y = a + (b - a) * (remaining / seg_len)
            return BBOX[0] + x / M_PER_DEG_LON, BBOX[1] + y / M_PER_DEG_LAT
        remaining -= seg_len
    raise ValueError(f"chainage {chainage_km} km beyond the {river.name} course")


def _downstream_wse(river: River) -> float:
    if river.downstream_wse is not None:
        return river.downstream_wse
    _, s = distance_and_chainage(GARONNE, np.array(river.course[-1][0]), np.array(river.course[-1][1]))
    return float(mean_wse(GARONNE, float(s)))


def mean_wse(river: River, chainage_km: float | np.ndarray) -> float | np.ndarray:
    """Mean-stage water-surface elevation (m, EGM2008) along the river; tributaries meet the Garonne level."""
    return _downstream_wse(river) + river.slope * (river_length_km(river) - chainage_km)


def stage_anomaly(when: datetime) -> float:
    """Shared stage anomaly (m): high in winter/spring with a May snowmelt peak, low in late summer."""
    doy = when.timetuple().tm_yday + (when.hour + when.minute / 60.0) / 24.0
    seasonal = 0.9 * math.cos(2.0 * math.pi * (doy - 60.0) / 365.0)
    snowmelt = 1.1 * math.exp(-(((doy - 135.0) / 18.0) ** 2))
    winter_flood = 0.8 * math.exp(-(((doy - 32.0) / 6.0) ** 2))
    return seasonal + snowmelt + winter_flood
