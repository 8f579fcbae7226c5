#!/usr/bin/env python3
"""Builds crates/core/data/geo.txt.gz: caller geography and time zones per number prefix.

Source: libphonenumber's geocoding (English) and time-zone prefix data as published in the
`phonenumbers` package on PyPI. Usage:

    pip download --no-deps phonenumbers==9.0.43 -d /tmp/pn && unzip -q -o /tmp/pn/*.whl -d /tmp/pn
    python3 tools/gen_geo.py /tmp/pn crates/core/data/geo.txt.gz

Output (gzip, UTF-8, tab separated, one record per line, deterministic):
    # comment lines (source, version)
    S <text>              string table; the n-th S line is string n
    G <prefix> <n>        E.164 prefix (digits, calling code first) -> description string n
    T <prefix> <n>        E.164 prefix -> time zones string n ("&"-separated IANA names)
Descriptions identical to the country name alone are kept: they still say "this country".
"""
import gzip
import importlib
import sys


def main(pkg_dir, out_path):
    sys.path.insert(0, pkg_dir)
    pn = importlib.import_module("phonenumbers")
    geodata = importlib.import_module("phonenumbers.geodata").GEOCODE_DATA
    tzdata = importlib.import_module("phonenumbers.tzdata").TIMEZONE_DATA
    strings, index = [], {}

    def intern(s):
        if s not in index:
            index[s] = len(strings)
            strings.append(s)
        return index[s]

    geo = sorted((p, intern(v["en"])) for p, v in geodata.items() if v.get("en"))
    tz = sorted((p, intern("&".join(v) if isinstance(v, (tuple, list)) else v)) for p, v in tzdata.items() if v)
    with gzip.GzipFile(out_path, "wb", mtime=0) as f:
        w = lambda line: f.write((line + "\n").encode("utf-8"))
        w(f"# libphonenumber geocoding (en) and time-zone prefix data, from the phonenumbers {pn.__version__} package on PyPI (Apache-2.0)")
        w(f"# {len(geo)} geography prefixes, {len(tz)} time-zone prefixes, {len(strings)} strings")
        for s in strings:
            assert "\t" not in s and "\n" not in s
            w(f"S\t{s}")
        for p, i in geo:
            w(f"G\t{p}\t{i}")
        for p, i in tz:
            w(f"T\t{p}\t{i}")
    print(f"{out_path}: {len(geo)} geography prefixes, {len(tz)} time-zone prefixes, {len(strings)} strings")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
