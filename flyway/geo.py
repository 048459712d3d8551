"""Geodesy helpers shared by the stages (vectorised; the numba kernels have their own scalar twin).

Distances on the mean-radius sphere (haversine): what short hops between
fixes, site clustering and screening need. Where accuracy matters against
WGS84, stages use ``pyproj.Geod`` instead and say so.
"""
from __future__ import annotations

import numpy as np

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean Earth radius


def haversine_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Great-circle distance in metres between lon/lat points (degrees), over arrays or scalars."""
    lo1, la1, lo2, la2 = map(np.radians, (lon1, lat1, lon2, lat2))
    h = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin((lo2 - lo1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
