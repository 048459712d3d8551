"""Data contracts of flyway: the fixes, stops and sites tables.

This module is the only place a column name is spelled out. Every other module
imports the constants below (``from flyway import schema as S`` then
``S.TIMESTAMP``) or the table contracts (``S.FIXES``, ``S.STOPS``, ``S.SITES``).

Units are SI unless the column name says otherwise (``duration_h``,
``radius_m``, ``bird_days``). Times are UTC, microsecond precision.
Coordinates are WGS84 longitude/latitude in decimal degrees (EPSG:4326).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable

import pyarrow as pa

from flyway.errors import SchemaError

# --------------------------------------------------------------------------
# Column names (shared by several tables where the meaning is the same)
# --------------------------------------------------------------------------
STUDY = "study"
INDIVIDUAL_ID = "individual_id"
TAG_ID = "tag_id"
SPECIES = "species"
TIMESTAMP = "timestamp"
LON = "lon"
LAT = "lat"
GEOMETRY = "geometry"
ALTITUDE_M = "altitude_m"
HDOP = "hdop"
SATELLITES = "satellites"
SENSOR_TYPE = "sensor_type"
EVENT_ID = "event_id"
SOURCE_FILE = "source_file"
SOURCE_LINE = "source_line"
BATCH_ID = "batch_id"
QC_FLAGS = "qc_flags"
GROUND_SPEED_MS = "ground_speed_ms"
ARGOS_LC = "argos_lc"
SEX = "sex"
LIFE_STAGE = "life_stage"

STOP_ID = "stop_id"
START_TIME = "start_time"
END_TIME = "end_time"
DURATION_H = "duration_h"
RADIUS_M = "radius_m"
N_FIXES = "n_fixes"
KIND = "kind"
SEASON = "season"
COUNTRY = "country"

SITE_ID = "site_id"
N_INDIVIDUALS = "n_individuals"
N_STOPS = "n_stops"
SHARE_OF_TRACKED = "share_of_tracked"
BIRD_DAYS = "bird_days"
SEASONS = "seasons"
KINDS = "kinds"
COUNTRIES = "countries"
PROTECTED_FRACTION = "protected_fraction"
PROTECTED_BY = "protected_by"
NEAREST_INFRASTRUCTURE_KM = "nearest_infrastructure_km"

# --- sites, protected areas, coverage, infrastructure, countries, grid (issue 5) ---
AREA_KM2 = "area_km2"
PROTECTED_FIX_FRACTION = "protected_fix_fraction"
PROTECTED_BIRD_DAYS = "protected_bird_days"
PROTECTED_SHARE = "protected_share"  # share of bird-days inside protected areas
UNPROTECTED_BIRD_DAYS = "unprotected_bird_days"
GAP_RANK = "gap_rank"
# cleaned protected areas (WDPA fields under flyway names; aliases in analysis/protected.py)
PA_ID = "pa_id"
PA_NAME = "pa_name"
DESIGNATION = "designation"
IUCN_CAT = "iucn_cat"
STATUS = "status"
STATUS_YEAR = "status_year"
ISO3 = "iso3"
PARENT_ISO3 = "parent_iso3"
REALM = "realm"
SITE_TYPE = "site_type"
REP_AREA_KM2 = "rep_area_km2"
GIS_AREA_KM2 = "gis_area_km2"
# energy infrastructure and exposure
FACILITY_ID = "facility_id"
FACILITY_NAME = "facility_name"
FACILITY_KIND = "facility_kind"  # power_plant | wind_turbine | power_line | ...
FACILITY_SOURCE = "facility_source"  # fuel / generator source (wind, coal, hydro ...)
CAPACITY_MW = "capacity_mw"
DISTANCE_KM = "distance_km"
N_INSIDE = "n_inside"  # facilities inside a site polygon
N_WITHIN_KM = "n_within_{km:g}km"  # .format(km=5) -> n_within_5km
SHARE_FIXES_WITHIN_KM = "share_fixes_within_{km:g}km"
# transboundary view
COUNTRY_NAME = "country_name"
BREEDING_COUNTRY = "breeding_country"
WINTERING_COUNTRY = "wintering_country"
# gridded use intensity (NetCDF)
TIME = "time"
CRS_VARIABLE = "crs"

# --- scenario outputs: collisions, counterfactual metrics, PBR (issue 9) ---
# (facility column: FACILITY_ID; species: SPECIES; per-year metric columns of the
#  side-by-side summary are f"{CPS_MEDIAN}_y{year}" etc.)
SCENARIO = "scenario"
YEAR = "year"
CRM_MODEL = "model"
COLLISIONS_MEAN = "collisions_mean"
COLLISIONS_SD = "collisions_sd"
COLLISIONS_MEDIAN = "collisions_median"
COLLISIONS_Q2_5 = "collisions_q2.5"
COLLISIONS_Q97_5 = "collisions_q97.5"
ADDED_MORTALITY_RATE = "added_mortality_rate"
ADDED_VS_NATURAL_ADULT_MORTALITY = "added_vs_natural_adult_mortality"
PBR = "pbr"
COLLISIONS_OVER_PBR = "collisions_over_pbr"
LAMBDA_MAX = "lambda_max"
CPS_MEDIAN = "cps_median"
CPS_MEAN = "cps_mean"
CPS_Q2_5 = "cps_q2.5"
CPS_Q97_5 = "cps_q97.5"
CGR_MEDIAN = "cgr_median"
CGR_Q2_5 = "cgr_q2.5"
CGR_Q97_5 = "cgr_q97.5"
N_RATIO = "n_ratio"  # matched replicates with a baseline > 0
P_DECLINE_50 = "p_decline_50"
P_QUASI_EXTINCTION = "p_quasi_extinction"
N_MEDIAN = "n_median"
N_Q2_5 = "n_q2.5"
N_Q97_5 = "n_q97.5"
# summaries of Monte-Carlo draws (labels say exactly which quantile)
PERIOD = "period"
MEAN = "mean"
SD = "sd"
MEDIAN = "median"
Q2_5 = "q2.5"
Q25 = "q25"
Q75 = "q75"
Q97_5 = "q97.5"
PARAMETER = "parameter"
PARAMETER_VALUE = "value"
PARAMETER_SOURCE = "source"
PARAMETER_PROXY = "proxy"
PARAMETER_NOTE = "note"
# exposure from tracks (issue 9 item 4/5): where each facility x species number came from
EXPOSURE_SOURCE = "exposure_source"  # tracks | typed-in (and why)
EXPOSURE_NOTE = "exposure_note"
HEIGHT_SOURCE = "height_source"  # tracks (GPS altitude - local ground) | species table | none
TRACKED_INDIVIDUALS = "tracked_individuals"  # tracked birds of the species
TRACKED_BIRD_DAYS = "tracked_bird_days"  # tracked time of those birds (segments <= max gap)
TRACKED_BIRDS_EXPOSED = "tracked_birds_exposed"  # of them, birds with >= 1 transit / crossing
TRACKED_TRANSITS = "tracked_transits"  # passages of tracked birds through a wind-farm footprint
TRACKED_CROSSINGS = "tracked_crossings"  # crossings of a power line by tracked birds
TRACKED_FLIGHT_H_INSIDE = "tracked_flight_h_inside"  # tracked in-flight hours inside the footprint
ROTOR_HEIGHT_SHARE = "rotor_height_share"  # share of that time at rotor height
WIRE_HEIGHT_SHARE = "wire_height_share"  # share of crossings at wire height
GROUND_LEVEL_M = "ground_level_m"  # local ground: median GPS altitude of stationary fixes nearby
DENSITY_KM2 = "density_km2"  # population in flight over the footprint, 24-h mean (birds/km2)
CROSSINGS_PER_YEAR = "crossings_per_year"  # population crossings of a line per year
NIGHT_CROSSING_SHARE = "night_crossing_share"  # share of tracked crossings at night (sun below -0.833 deg)

# --- nightly alerts (issue 8): one JSON object per line in STORE/_alerts/alerts.jsonl ---
# (also INDIVIDUAL_ID, SPECIES, TIME, LON, LAT)
ALERT_ID = "alert_id"
ALERT_KIND = "kind"  # silent_tag | possible_mortality | unprotected_stop | ... (flyway.alerts.ALERT_KINDS)
ALERT_MESSAGE = "message"
RUN_ID = "run_id"
ALERT_FIELDS = (ALERT_ID, ALERT_KIND, INDIVIDUAL_ID, SPECIES, TIME, LON, LAT, ALERT_MESSAGE, RUN_ID)

# Stop kinds (values of KIND)
KIND_BREEDING = "breeding"
KIND_WINTERING = "wintering"
KIND_STOPOVER = "stopover"
KIND_UNKNOWN = "unknown"
STOP_KINDS = (KIND_BREEDING, KIND_WINTERING, KIND_STOPOVER, KIND_UNKNOWN)

# --------------------------------------------------------------------------
# Movebank attribute names that no FIXES column carries (the others are the
# ``movebank`` field of the FIXES columns: ``FIXES[TIMESTAMP].movebank``).
# Event data:
MB_VISIBLE = "visible"
MB_HEADING = "heading"
MB_IMPORT_MARKED_OUTLIER = "import-marked-outlier"
MB_MANUALLY_MARKED_OUTLIER = "manually-marked-outlier"
# Reference (deployment) data; animal-sex / animal-life-stage are
# FIXES[SEX].movebank / FIXES[LIFE_STAGE].movebank:
MB_REF_TAG_ID = "tag-id"
MB_REF_ANIMAL_ID = "animal-id"
MB_REF_ANIMAL_TAXON = "animal-taxon"
MB_REF_DEPLOY_ON = "deploy-on-date"
MB_REF_DEPLOY_OFF = "deploy-off-date"
MB_REF_STUDY_SITE = "study-site"
# --------------------------------------------------------------------------

# --- quarantine table (flyway.ingest.quarantine; also SOURCE_FILE, BATCH_ID) ---
Q_LINE = "line"      # physical line of the row in its file (header = line 1)
Q_COLUMN = "column"  # source column the reason is about ("" for the whole row)
Q_REASON = "reason"  # stable reason code (flyway.ingest.quarantine)
Q_DETAIL = "detail"  # human-readable expectation
Q_VALUE = "value"    # the offending cell text
Q_ACTION = "action"  # row (row not stored) | value (value nulled, row stored)
Q_RAW = "raw"        # the row's original text

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
CRS = "EPSG:4326"


class QCFlag(enum.IntFlag):
    """Quality-control flags of a fix (bitmask in ``qc_flags``; 0 = clean).

    Flags mark, they never delete: a flagged fix stays in the store and is
    left out of stop detection by default.
    """

    IMPOSSIBLE_COORDINATES = 1 << 0
    NULL_ISLAND = 1 << 1
    DUPLICATE_TIMESTAMP = 1 << 2
    SPEED = 1 << 3
    HDOP = 1 << 4
    FEW_SATELLITES = 1 << 5
    FUTURE_TIMESTAMP = 1 << 6
    OUTSIDE_DEPLOYMENT = 1 << 7
    MOVEBANK_OUTLIER = 1 << 8
    SENTINEL_VALUE = 1 << 9
    UNKNOWN_TIMEZONE_OFFSET = 1 << 10

    @classmethod
    def names_of(cls, value: int) -> list[str]:
        """Names (lower case) of the flags set in ``value``."""
        return [f.name.lower() for f in cls if value & f]


@dataclass(frozen=True)
class Column:
    """One column of a contract: name, Arrow type, nullability, unit, meaning."""

    name: str
    type: pa.DataType
    nullable: bool
    unit: str = ""
    description: str = ""
    movebank: str = ""  # Movebank attribute it comes from, if any

    def field(self) -> pa.Field:
        meta = {"unit": self.unit, "description": self.description}
        if self.movebank:
            meta["movebank"] = self.movebank
        return pa.field(self.name, self.type, nullable=self.nullable, metadata=meta)


@dataclass(frozen=True)
class TableSchema:
    """A table contract: ordered columns, and the geometry column if any."""

    name: str
    columns: tuple[Column, ...]
    geometry: str | None = None
    _by_name: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})
        object.__setattr__(self, "_arrow", pa.schema([c.field() for c in self.columns]))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> Column:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def arrow_schema(self) -> pa.Schema:
        return self._arrow  # type: ignore[attr-defined]

    def validate(self, table: pa.Table) -> None:
        """Raise :class:`SchemaError` unless ``table`` follows this contract.

        Checks presence, Arrow type and nullability of every column; extra
        columns are an error too (they would silently leak into the store).
        """
        have = set(table.column_names)
        missing = [c.name for c in self.columns if c.name not in have]
        if missing:
            raise SchemaError(f"{self.name} table: missing column(s) {', '.join(missing)}")
        extra = [n for n in table.column_names if n not in self._by_name]
        if extra:
            raise SchemaError(f"{self.name} table: unexpected column(s) {', '.join(extra)}")
        for col in self.columns:
            arr = table.column(col.name)
            if not arr.type.equals(col.type):
                raise SchemaError(
                    f"{self.name} table: column {col.name} has type {arr.type}, expected {col.type}"
                )
            if not col.nullable and arr.null_count:
                raise SchemaError(
                    f"{self.name} table: column {col.name} has {arr.null_count} null(s); it is required"
                )

    def conform(self, table: pa.Table) -> pa.Table:
        """Order and cast the columns of ``table`` to this contract, then validate.

        Missing nullable columns are added as nulls; a missing required column
        is an error.
        """
        cols = []
        for col in self.columns:
            if col.name in table.column_names:
                arr = table.column(col.name)
                if not arr.type.equals(col.type):
                    arr = arr.cast(col.type)
            elif col.nullable:
                arr = pa.nulls(table.num_rows, type=col.type)
            else:
                raise SchemaError(f"{self.name} table: missing required column {col.name}")
            cols.append(arr)
        out = pa.Table.from_arrays(cols, schema=self.arrow_schema())
        self.validate(out)
        return out

    def empty(self) -> pa.Table:
        return self.arrow_schema().empty_table()

    def describe(self) -> list[dict]:
        """The data dictionary: one dict per column (name, type, unit, meaning)."""
        return [
            {
                "column": c.name,
                "type": str(c.type),
                "required": not c.nullable,
                "unit": c.unit,
                "description": c.description,
                "movebank_attribute": c.movebank,
            }
            for c in self.columns
        ]


def _cols(rows: Iterable[tuple]) -> tuple[Column, ...]:
    return tuple(Column(*r) for r in rows)


FIXES = TableSchema(
    "fixes",
    _cols(
        [
            (STUDY, pa.string(), False, "", "study or data set name", "study-name"),
            (INDIVIDUAL_ID, pa.string(), False, "", "animal identifier", "individual-local-identifier"),
            (TAG_ID, pa.string(), True, "", "tag identifier", "tag-local-identifier"),
            (SPECIES, pa.string(), False, "", "scientific name", "individual-taxon-canonical-name"),
            (TIMESTAMP, TIMESTAMP_TYPE, False, "UTC", "time of the fix", "timestamp"),
            (LON, pa.float64(), False, "degree_east", "WGS84 longitude", "location-long"),
            (LAT, pa.float64(), False, "degree_north", "WGS84 latitude", "location-lat"),
            (GEOMETRY, pa.binary(), False, "", "WKB point, EPSG:4326", ""),
            (ALTITUDE_M, pa.float32(), True, "m", "height above ellipsoid (or MSL when the source has only that)", "height-above-ellipsoid"),
            (HDOP, pa.float32(), True, "1", "horizontal dilution of precision", "gps:hdop"),
            (SATELLITES, pa.int16(), True, "count", "satellites used for the fix", "gps:satellite-count"),
            (GROUND_SPEED_MS, pa.float32(), True, "m/s", "speed reported by the tag", "ground-speed"),
            (SENSOR_TYPE, pa.string(), False, "", "sensor type (gps, gnss, argos-doppler-shift ...)", "sensor-type"),
            (ARGOS_LC, pa.string(), True, "", "Argos location class (G, 3, 2, 1, 0, A, B, Z)", "argos:lc"),
            (EVENT_ID, pa.int64(), True, "", "source event id", "event-id"),
            (SEX, pa.string(), True, "", "m | f | u (reference data)", "animal-sex"),
            (LIFE_STAGE, pa.string(), True, "", "life stage (reference data)", "animal-life-stage"),
            (SOURCE_FILE, pa.string(), False, "", "name of the file the fix came from", ""),
            (SOURCE_LINE, pa.int64(), False, "", "line number of the fix in its file (header = line 1)", ""),
            (BATCH_ID, pa.string(), False, "", "ingest batch that wrote the fix", ""),
            (QC_FLAGS, pa.uint32(), False, "", "QC bitmask, 0 = clean (see flyway.schema.QCFlag)", ""),
        ]
    ),
    geometry=GEOMETRY,
)

STOPS = TableSchema(
    "stops",
    _cols(
        [
            (INDIVIDUAL_ID, pa.string(), False, "", "animal identifier"),
            (SPECIES, pa.string(), False, "", "scientific name"),
            (STOP_ID, pa.string(), False, "", "stop identifier, stable for the same data and parameters"),
            (START_TIME, TIMESTAMP_TYPE, False, "UTC", "time of the first fix of the stop"),
            (END_TIME, TIMESTAMP_TYPE, False, "UTC", "time of the last fix of the stop"),
            (DURATION_H, pa.float64(), False, "h", "end_time - start_time"),
            (LON, pa.float64(), False, "degree_east", "centroid longitude"),
            (LAT, pa.float64(), False, "degree_north", "centroid latitude"),
            (RADIUS_M, pa.float64(), False, "m", "largest distance of a fix from the centroid"),
            (N_FIXES, pa.int64(), False, "count", "fixes in the stop"),
            (KIND, pa.string(), False, "", "breeding | wintering | stopover | unknown"),
            (SEASON, pa.string(), True, "", "e.g. 2024-spring, 2024-autumn"),
            (COUNTRY, pa.string(), True, "", "ISO 3166-1 alpha-3 of the centroid"),
            (GEOMETRY, pa.binary(), False, "", "WKB point of the centroid, EPSG:4326"),
        ]
    ),
    geometry=GEOMETRY,
)

SITES = TableSchema(
    "sites",
    _cols(
        [
            (SITE_ID, pa.string(), False, "", "site identifier, stable across re-runs on the same data"),
            (GEOMETRY, pa.binary(), False, "", "WKB polygon, EPSG:4326"),
            (LON, pa.float64(), False, "degree_east", "site centre longitude"),
            (LAT, pa.float64(), False, "degree_north", "site centre latitude"),
            (SPECIES, pa.string(), False, "", "scientific name"),
            (N_INDIVIDUALS, pa.int64(), False, "count", "tracked individuals that used the site"),
            (N_STOPS, pa.int64(), False, "count", "stop events at the site"),
            (SHARE_OF_TRACKED, pa.float64(), False, "1", "fraction of tracked birds of the species that used it"),
            (BIRD_DAYS, pa.float64(), False, "d", "sum of stop durations at the site"),
            (SEASONS, pa.string(), True, "", "seasons of use, ';'-separated"),
            (KINDS, pa.string(), True, "", "stop kinds seen, ';'-separated"),
            (COUNTRIES, pa.string(), True, "", "ISO3 codes, ';'-separated"),
            (PROTECTED_FRACTION, pa.float64(), True, "1", "share of the site's area inside protected areas"),
            (PROTECTED_BY, pa.string(), True, "", "protected areas covering the site, ';'-separated"),
            (NEAREST_INFRASTRUCTURE_KM, pa.float64(), True, "km", "distance to the nearest energy facility"),
        ]
    ),
    geometry=GEOMETRY,
)

TABLES = {t.name: t for t in (FIXES, STOPS, SITES)}
