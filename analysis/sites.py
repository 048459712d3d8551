"""Sites: stops of all individuals clustered into the places the birds depend on.

Stops of one species are clustered on the sphere (great-circle distance; a
k-d tree of unit vectors, whose chord length orders pairs as the great-circle
distance does) with DBSCAN (default) or HDBSCAN. Each site becomes a polygon: the convex hull
of its stop centroids, buffered by the larger of ``buffer_m`` and the widest
stop radius, built in a sinusoidal projection centred on the site (equal-area,
exact distances along parallels and meridians near the centre) so a 2 km
buffer is 2 km on the ground anywhere on the flyway.

Per site the use statistics of track2KBA (Beal et al. 2021): individuals, the
share of the tracked population of that species that used it, bird-days,
stop events, seasons, kinds and countries.

Site ids are a hash of the species and the sorted (individual, stop) ids of
the members: the same stops always give the same ids, whatever the row order.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Literal, Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from flyway import schema as S
from flyway.analysis._geodesy import EARTH_RADIUS_M  # IUGG mean radius
from flyway.analysis.countries import stop_countries
from flyway.errors import ConfigError, InputError

log = logging.getLogger(__name__)

_QUERY_CHUNK = 4096  # neighbourhood queries per chunk: bounds memory on dense sites


@dataclass(frozen=True)
class SiteParams:
    """Parameters of the site clustering of one species.

    Parameters
    ----------
    eps_m : float
        Neighbourhood radius in metres: stops closer than this (great-circle)
        are neighbours. Default 10 km (stopover wetlands of cranes and
        spoonbills; trackintel and the Demoiselle-crane pipeline use 10-30 km).
    min_samples : int
        DBSCAN core-point threshold, the stop itself included. 1 keeps sites
        used by a single stop (DBSCAN then equals single-linkage at ``eps_m``).
    buffer_m : float
        Buffer around the hull of the stop centroids, in metres; the widest
        stop radius of the site is used when larger.
    method : {"dbscan", "hdbscan"}
        HDBSCAN (scikit-learn, haversine) uses ``min_cluster_size`` and takes
        ``eps_m`` as its ``cluster_selection_epsilon``; it needs O(n^2) time,
        so keep it for a few thousand stops per species.
    min_cluster_size : int
        HDBSCAN only: smallest cluster (>= 2).
    """

    eps_m: float = 10_000.0
    min_samples: int = 1
    buffer_m: float = 2_000.0
    method: Literal["dbscan", "hdbscan"] = "dbscan"
    min_cluster_size: int = 2

    def __post_init__(self) -> None:
        if not (np.isfinite(self.eps_m) and 0 < self.eps_m <= 500_000):
            raise ConfigError(f"SiteParams.eps_m = {self.eps_m!r}: expected metres in (0, 500000]")
        if not (isinstance(self.min_samples, (int, np.integer)) and self.min_samples >= 1):
            raise ConfigError(f"SiteParams.min_samples = {self.min_samples!r}: expected an integer >= 1")
        if not (np.isfinite(self.buffer_m) and 0 <= self.buffer_m <= 100_000):
            raise ConfigError(f"SiteParams.buffer_m = {self.buffer_m!r}: expected metres in [0, 100000]")
        if self.method not in ("dbscan", "hdbscan"):
            raise ConfigError(f"SiteParams.method = {self.method!r}: expected 'dbscan' or 'hdbscan'")
        if not (isinstance(self.min_cluster_size, (int, np.integer)) and self.min_cluster_size >= 2):
            raise ConfigError(
                f"SiteParams.min_cluster_size = {self.min_cluster_size!r}: expected an integer >= 2")


SiteParamsLike = SiteParams | Mapping[str, SiteParams] | None


def _params_for(params: SiteParamsLike, species: str) -> SiteParams:
    if params is None:
        return SiteParams()
    if isinstance(params, SiteParams):
        return params
    got = params.get(species, params.get("*", SiteParams()))
    if not isinstance(got, SiteParams):
        raise ConfigError(f"site parameters for {species!r}: expected SiteParams, got {type(got).__name__}")
    return got


# ---------------------------------------------------------------------------
# clustering kernels (arrays in radians, distances in metres)
# ---------------------------------------------------------------------------
def _unit(X: np.ndarray) -> np.ndarray:
    """(lat, lon) radians as unit vectors: chord length orders pairs as the great-circle distance does."""
    lat, lon = X[:, 0], X[:, 1]
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _chord(angle_rad: float) -> float:
    """The chord of a great-circle angle (a haversine radius as a k-d tree radius)."""
    return 2.0 * np.sin(min(angle_rad, np.pi) / 2.0)


def _linked_components(X: np.ndarray, eps_rad: float) -> np.ndarray:
    """Connected components of the graph 'closer than eps' (single linkage).

    Neighbour pairs come from a k-d tree of unit vectors, a chunk of query
    points at a time, and are folded into the labels at once, so memory stays
    bounded by one chunk's neighbours, not all pairs. Dense data (stops
    crowd at their sites) go through cells instead (:func:`_cell_components`).
    """
    n = X.shape[0]
    labels = np.arange(n)
    if n == 0:
        return labels
    P = _unit(X)
    r = _chord(eps_rad)
    cells = _cells(P, r)
    if len(cells[0]) * _DENSE <= n:
        return np.unique(_cell_components(P, r, *cells), return_inverse=True)[1]
    tree = cKDTree(P)
    for start in range(0, n, _QUERY_CHUNK):
        stop = min(n, start + _QUERY_CHUNK)
        pairs = cKDTree(P[start:stop]).sparse_distance_matrix(tree, r, output_type="ndarray")
        a, b = labels[pairs["i"] + start], labels[pairs["j"]]
        keep = a != b
        if not keep.any():
            continue
        graph = coo_matrix((np.ones(int(keep.sum()), dtype=np.int8), (a[keep], b[keep])), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        labels = comp[labels]
    return np.unique(labels, return_inverse=True)[1]


_DENSE = 8  # at least this many points per occupied cell on average: link cells, not point pairs


def _cells(P: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Cubes of side just under r/sqrt(3) (two points in one cube lie within r): cells, cell of each point."""
    h = r / np.sqrt(3.0) * (1.0 - 1e-9)
    cells, cell_of = np.unique(np.floor(P / h).astype(np.int64), axis=0, return_inverse=True)
    return cells, cell_of.ravel()


def _cell_components(P: np.ndarray, r: float, cells: np.ndarray, cell_of: np.ndarray) -> np.ndarray:
    """Single-linkage components through cells: the points of a cell are linked to each other, and
    two cells (at most two cells apart on every axis) are linked when some pair across lies within r."""
    m = len(cells)
    order = np.argsort(cell_of, kind="stable")
    bounds = np.searchsorted(cell_of[order], np.arange(m + 1))
    members = [P[order[bounds[i]:bounds[i + 1]]] for i in range(m)]
    index = {tuple(c): i for i, c in enumerate(cells.tolist())}
    offsets = [(dx, dy, dz) for dx in range(-2, 3) for dy in range(-2, 3) for dz in range(-2, 3)
               if (dx, dy, dz) > (0, 0, 0)]
    parent = list(range(m))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    trees: dict[int, cKDTree] = {}
    for i, (x, y, z) in enumerate(cells.tolist()):
        for dx, dy, dz in offsets:
            j = index.get((x + dx, y + dy, z + dz))
            if j is None or find(i) == find(j):
                continue
            a, b = (i, j) if len(members[i]) <= len(members[j]) else (j, i)
            tree = trees.get(b) or trees.setdefault(b, cKDTree(members[b]))
            d, _ = tree.query(members[a], k=1, distance_upper_bound=r * (1.0 + 1e-9))
            if (d <= r).any():
                parent[find(i)] = find(j)
    root = np.array([find(i) for i in range(m)], dtype=np.int64)
    return root[cell_of]


def _dbscan_haversine(X: np.ndarray, eps_rad: float, min_samples: int) -> np.ndarray:
    """DBSCAN on the sphere with bounded memory; -1 marks noise.

    Core points and their clusters are those of scikit-learn's DBSCAN; a
    border point joins the cluster of its nearest core point (scikit-learn
    takes whichever core reached it first).
    """
    n = X.shape[0]
    if min_samples <= 1:
        return _linked_components(X, eps_rad)
    P = _unit(X)
    r = _chord(eps_rad)
    counts = cKDTree(P).query_ball_point(P, r, return_length=True) if n else np.empty(0, dtype=np.int64)
    core = np.asarray(counts) >= min_samples
    labels = np.full(n, -1, dtype=np.int64)
    if not core.any():
        return labels
    core_idx = np.flatnonzero(core)
    labels[core_idx] = _linked_components(X[core_idx], eps_rad)
    border = np.flatnonzero(~core)
    if border.size:
        dist, nearest = cKDTree(P[core_idx]).query(P[border], k=1)
        reached = dist <= r
        labels[border[reached]] = labels[core_idx[nearest[reached]]]
    return labels


def _hdbscan_haversine(X: np.ndarray, p: SiteParams) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    if X.shape[0] < p.min_cluster_size:
        return np.full(X.shape[0], -1, dtype=np.int64)
    model = HDBSCAN(min_cluster_size=p.min_cluster_size, min_samples=p.min_samples,
                    metric="haversine", algorithm="ball_tree",
                    cluster_selection_epsilon=p.eps_m / EARTH_RADIUS_M, copy=True)
    return model.fit_predict(X).astype(np.int64)


def _stop_keys(stops: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash per stop of (individual_id, stop_id), independent of row order."""
    key = stops[S.INDIVIDUAL_ID].astype(str) + "\x1f" + stops[S.STOP_ID].astype(str)
    return pd.util.hash_array(key.to_numpy(dtype=object))


def _check_stops(stops: pd.DataFrame) -> None:
    need = [S.INDIVIDUAL_ID, S.SPECIES, S.STOP_ID, S.LON, S.LAT, S.DURATION_H]
    missing = [c for c in need if c not in stops.columns]
    if missing:
        raise InputError(f"stops table lacks column(s) {', '.join(missing)}")
    lon, lat = stops[S.LON].to_numpy(float), stops[S.LAT].to_numpy(float)
    bad = ~(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"stop row {i}: lon/lat = ({lon[i]}, {lat[i]}) is not a valid WGS84 position",
                         column=S.LON)


def assign_sites(stops: pd.DataFrame, params: SiteParamsLike = None) -> pd.Series:
    """The site id of every stop (missing for DBSCAN/HDBSCAN noise).

    Parameters
    ----------
    stops : pandas.DataFrame
        Stops in the :data:`flyway.schema.STOPS` layout (at least
        individual_id, species, stop_id, lon, lat, duration_h).
    params : SiteParams or mapping of species to SiteParams, optional
        Clustering parameters; a mapping may hold a ``"*"`` default.

    Returns
    -------
    pandas.Series
        Site ids (string dtype) aligned with ``stops.index``.
    """
    _check_stops(stops)
    cluster = np.full(len(stops), -1, dtype=np.int64)
    offset = 0
    species = stops[S.SPECIES].astype(str).to_numpy()
    for sp in np.unique(species):  # a handful of species, each clustered at once
        rows = np.flatnonzero(species == sp)
        p = _params_for(params, sp)
        X = np.radians(np.column_stack([stops[S.LAT].to_numpy(float)[rows],
                                        stops[S.LON].to_numpy(float)[rows]]))
        if p.method == "hdbscan":
            lab = _hdbscan_haversine(X, p)
        else:
            lab = _dbscan_haversine(X, p.eps_m / EARTH_RADIUS_M, p.min_samples)
        ok = lab >= 0
        cluster[rows[ok]] = lab[ok] + offset
        offset += int(lab.max()) + 1 if ok.any() else 0
    ids = np.full(len(stops), None, dtype=object)
    member = cluster >= 0
    if member.any():
        site_ids = _site_ids(cluster[member], _stop_keys(stops.loc[member]), species[member])
        ids[member] = site_ids
    return pd.Series(ids, index=stops.index, name=S.SITE_ID, dtype="string")


def _site_ids(cluster: np.ndarray, keys: np.ndarray, species: np.ndarray) -> np.ndarray:
    """Stable ids: XOR of member-stop hashes (order-free) mixed with the species hash."""
    order = np.argsort(cluster, kind="stable")
    c_sorted = cluster[order]
    starts = np.flatnonzero(np.r_[True, c_sorted[1:] != c_sorted[:-1]])
    mixed = np.bitwise_xor.reduceat(keys[order], starts)
    mixed ^= pd.util.hash_array(species[order][starts].astype(object))
    labels = np.array([f"site-{v:016x}" for v in mixed], dtype=object)
    return labels[np.searchsorted(c_sorted[starts], cluster)]


# ---------------------------------------------------------------------------
# polygons and statistics
# ---------------------------------------------------------------------------
def _spherical_mean(lon: np.ndarray, lat: np.ndarray, w: np.ndarray, group: np.ndarray, n: int):
    """Weighted mean position per group on the unit sphere (antimeridian-safe)."""
    lo, la = np.radians(lon), np.radians(lat)
    xyz = [np.bincount(group, w * f, minlength=n)
           for f in (np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la))]
    return (np.degrees(np.arctan2(xyz[1], xyz[0])),
            np.degrees(np.arctan2(xyz[2], np.hypot(xyz[0], xyz[1]))))


def _site_polygons(lon, lat, radius_m, group, lon0, lat0, buffer_m):
    """Buffered hulls built in a sinusoidal projection centred on each site.

    Returns the polygons in lon/lat and their areas in km^2 (the sinusoidal
    projection is equal-area).
    """
    n = lon0.shape[0]
    order = np.argsort(group, kind="stable")
    g = group[order]
    dlon = (lon[order] - lon0[g] + 180.0) % 360.0 - 180.0
    x = EARTH_RADIUS_M * np.radians(dlon) * np.cos(np.radians(lat[order]))
    y = EARTH_RADIUS_M * np.radians(lat[order] - lat0[g])
    hulls = shapely.convex_hull(shapely.multipoints(np.column_stack([x, y]), indices=g))
    widest = np.zeros(n)
    np.maximum.at(widest, group, np.nan_to_num(radius_m, nan=0.0))
    dist = np.maximum(buffer_m, widest)
    polys = shapely.buffer(hulls, np.where(dist > 0, dist, 1.0), quad_segs=16)
    area_km2 = shapely.area(polys) / 1e6
    xy, idx = shapely.get_coordinates(polys, return_index=True)
    plat = lat0[idx] + np.degrees(xy[:, 1] / EARTH_RADIUS_M)
    plon = lon0[idx] + np.degrees(xy[:, 0] / (EARTH_RADIUS_M * np.cos(np.radians(plat))))
    return shapely.set_coordinates(polys, np.column_stack([plon, plat])), area_km2


def _joined(values: pd.Series, group: np.ndarray, n: int) -> np.ndarray:
    """Sorted distinct non-empty values per group, ';'-joined (None when none)."""
    v = values.astype("string")
    ok = (v.notna() & (v != "")).fillna(False).to_numpy(bool)
    codes, uniques = pd.factorize(v[ok], sort=True)
    k = max(len(uniques), 1)
    pairs = np.unique(group[ok].astype(np.int64) * k + codes)  # sorted by group, then value
    pg, pv = np.divmod(pairs, k)
    names = np.asarray(uniques, dtype=object)[pv]
    starts = np.flatnonzero(np.r_[True, pg[1:] != pg[:-1]]) if len(pg) else np.empty(0, dtype=np.int64)
    out = np.full(n, None, dtype=object)
    out[pg[starts]] = [";".join(part) for part in np.split(names, starts[1:])] if len(pg) else []
    return out


def find_sites(stops: pd.DataFrame, params: SiteParamsLike = None, *,
               n_tracked: Mapping[str, int] | None = None) -> gpd.GeoDataFrame:
    """Cluster the stops of all individuals into sites, with per-site use statistics.

    Parameters
    ----------
    stops : pandas.DataFrame
        Stops in the :data:`flyway.schema.STOPS` layout. A missing
        ``country`` is looked up from the stop's position (packaged Natural
        Earth outlines).
    params : SiteParams or mapping of species to SiteParams, optional
        Clustering parameters (per species; ``"*"`` key for the rest).
    n_tracked : mapping of species to int, optional
        Size of the tracked population per species, the denominator of
        ``share_of_tracked`` (track2KBA). Defaults to the individuals of that
        species present in ``stops``; pass the count of tagged birds when
        some never stopped.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per site in the :data:`flyway.schema.SITES` column order, plus
        ``area_km2`` (equal-area), EPSG:4326, sorted by species then
        descending bird-days; ``attrs["flyway_params"]`` holds the effective
        parameters per species (for the table's metadata). ``protected_fraction``, ``protected_by`` and
        ``nearest_infrastructure_km`` are left missing for
        :func:`flyway.analysis.coverage.coverage` and the exposure step.

    Examples
    --------
    >>> sites = find_sites(stops, {"Grus monacha": SiteParams(eps_m=15_000)})
    >>> sites[["site_id", "n_individuals", "share_of_tracked", "bird_days"]].head()
    """
    site = assign_sites(stops, params)
    member = site.notna().to_numpy()
    st = stops.loc[member]
    if not len(st):
        return _empty_sites()
    codes, uniques = pd.factorize(site[member], sort=True)
    n = len(uniques)
    lon, lat = st[S.LON].to_numpy(float), st[S.LAT].to_numpy(float)
    days = st[S.DURATION_H].to_numpy(float) / 24.0
    weight = np.where(days > 0, days, 1e-9)
    lon0, lat0 = _spherical_mean(lon, lat, weight, codes, n)
    species = np.empty(n, dtype=object)
    species[codes] = st[S.SPECIES].astype(str).to_numpy()
    buffer_m = np.array([_params_for(params, sp).buffer_m for sp in species])
    radius = st[S.RADIUS_M].to_numpy(float) if S.RADIUS_M in st else np.zeros(len(st))
    polys, area_km2 = _site_polygons(lon, lat, radius, codes, lon0, lat0, buffer_m)

    n_ind = pd.Series(st[S.INDIVIDUAL_ID].to_numpy()).groupby(codes).nunique().to_numpy()
    tracked = stops.groupby(S.SPECIES)[S.INDIVIDUAL_ID].nunique().to_dict()
    if n_tracked is not None:
        for sp, k in n_tracked.items():
            if not (isinstance(k, (int, np.integer)) and k >= 1):
                raise ConfigError(f"n_tracked[{sp!r}] = {k!r}: expected a positive integer")
            if k < tracked.get(sp, 0):
                raise ConfigError(f"n_tracked[{sp!r}] = {k} is less than the {tracked[sp]} individuals "
                                  "of that species in the stops")
        tracked.update(n_tracked)
    denom = np.array([tracked[sp] for sp in species], dtype=float)

    def _col(name):
        return _joined(st[name], codes, n) if name in st else np.full(n, None, dtype=object)

    sites = gpd.GeoDataFrame({
        S.SITE_ID: np.asarray(uniques, dtype=object),
        S.LON: lon0, S.LAT: lat0, S.SPECIES: species,
        S.N_INDIVIDUALS: n_ind.astype(np.int64),
        S.N_STOPS: np.bincount(codes, minlength=n).astype(np.int64),
        S.SHARE_OF_TRACKED: n_ind / denom,
        S.BIRD_DAYS: np.bincount(codes, days, minlength=n),
        S.SEASONS: _col(S.SEASON), S.KINDS: _col(S.KIND),
        S.COUNTRIES: _joined(pd.Series(stop_countries(st), dtype=object), codes, n),
        S.PROTECTED_FRACTION: np.nan, S.PROTECTED_BY: None, S.NEAREST_INFRASTRUCTURE_KM: np.nan,
        S.AREA_KM2: area_km2,
    }, geometry=gpd.GeoSeries(polys, name=S.GEOMETRY, crs=S.CRS), crs=S.CRS)
    cols = [c for c in S.SITES.names] + [S.AREA_KM2]
    sites = sites[cols].sort_values([S.SPECIES, S.BIRD_DAYS, S.SITE_ID], ascending=[True, False, True])
    log.info("%d stops -> %d sites (%d stops left as noise)", len(stops), n, int((~member).sum()))
    sites = sites.reset_index(drop=True)
    sites.attrs["flyway_params"] = {sp: asdict(_params_for(params, sp)) for sp in np.unique(species)}
    return sites


def _empty_sites() -> gpd.GeoDataFrame:
    cols = {c: pd.Series(dtype=object) for c in S.SITES.names if c != S.GEOMETRY}
    cols[S.AREA_KM2] = pd.Series(dtype=float)
    cols[S.GEOMETRY] = gpd.GeoSeries([], crs=S.CRS)
    return gpd.GeoDataFrame(cols, geometry=S.GEOMETRY, crs=S.CRS)[S.SITES.names + [S.AREA_KM2]]
