#!/usr/bin/env python3
"""Regenerates every number-intelligence data file from ONE libphonenumber release.

The release is VERSION below, and nowhere else. libphonenumber's data is taken as published in
the `phonenumbers` package on PyPI (David Drysdale's Python port, which ships libphonenumber's
PhoneNumberMetadata.xml compiled to Python, and its geocoding and time-zone prefix files).
One command (needs network for pip; run by hand, never by the build or the tests):

    python3 tools/gen_data.py            # pip-downloads phonenumbers==VERSION into a temp dir
    python3 tools/gen_data.py /tmp/pn    # or: a directory where its wheel is unpacked

It writes, deterministically (gzip with mtime 0):

  crates/core/data/metadata.txt.gz  the numbering plan (tab separated, UTF-8):
      V <version>
      C <calling code> <region,region,...>   regions of a code, main region first (lib order)
      M <cc,cc,...>                           codes whose mobile numbers are geographic
      R <id> <cc> <intl prefix> <preferred intl> <national prefix> <npfp> <transform> <leading digits> <country name>
      D <type> <national number pattern> <possible lengths> <local-only lengths>   (for the R above)
      R lines of "001" are the non-geographic entities (+800, +882, ...).
  crates/core/data/geo.txt.gz       geocoding (English) and time zones per E.164 prefix:
      S <text> <subdivision>  string table (n-th S line is string n); subdivision is ISO 3166-2
                              ("US-NJ") when the text names a US state or Canadian province
      G <prefix> <n>          E.164 prefix -> description string n
      T <prefix> <n>          E.164 prefix -> time zones string n ("&"-separated IANA names)
  crates/core/tests/data/corpus.tsv.gz  the reference corpus (see corpus() below): input, trunk
      region, then libphonenumber's answer: E.164 (empty: parse error), valid, type, region,
      geocoder description (en), time zones ("&"; empty for libphonenumber's Etc/Unknown).
"""
import gzip
import importlib
import os
import random
import re
import subprocess
import sys
import tempfile

VERSION = "9.0.43"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TYPES = [
    ("general", "general_desc"),
    ("fixed", "fixed_line"),
    ("mobile", "mobile"),
    ("toll_free", "toll_free"),
    ("premium", "premium_rate"),
    ("shared_cost", "shared_cost"),
    ("voip", "voip"),
    ("personal", "personal_number"),
    ("pager", "pager"),
    ("uan", "uan"),
    ("voicemail", "voicemail"),
]

US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "Washington D.C.",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington State", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
}
CA_PROVINCES = {
    "AB": "Alberta", "BC": "British Columbia", "MB": "Manitoba", "NB": "New Brunswick",
    "NL": "Newfoundland and Labrador", "NS": "Nova Scotia", "NT": "Northwest Territories",
    "NU": "Nunavut", "ON": "Ontario", "PE": "Prince Edward Island", "QC": "Quebec",
    "SK": "Saskatchewan", "YT": "Yukon",
}
NAME_TO_SUB = {v: "US-" + k for k, v in US_STATES.items()}
NAME_TO_SUB.update({v: "CA-" + k for k, v in CA_PROVINCES.items()})
NAME_TO_SUB.update({"Washington": "US-WA", "Washington DC": "US-DC", "District of Columbia": "US-DC",
                    "Newfoundland": "CA-NL", "Yukon Territory": "CA-YT"})


def subdivision(prefix, text):
    """ISO 3166-2 code for a NANP description: "City, NJ" or a state/province name."""
    if not prefix.startswith("1"):
        return ""
    if text in NAME_TO_SUB:
        return NAME_TO_SUB[text]
    m = re.search(r", ([A-Z]{2})$", text)
    if m:
        code = m.group(1)
        if code in US_STATES:
            return "US-" + code
        if code in CA_PROVINCES:
            return "CA-" + code
    return ""


def load(pkg_dir):
    sys.path.insert(0, pkg_dir)
    pn = importlib.import_module("phonenumbers")
    if pn.__version__ != VERSION:
        sys.exit(f"phonenumbers in {pkg_dir} is {pn.__version__}, VERSION says {VERSION}")
    return pn


def all_metadata(pn):
    PM = pn.PhoneMetadata
    out = []
    for r in sorted(pn.SUPPORTED_REGIONS):
        out.append(("R", r, PM.metadata_for_region(r)))
    for cc in sorted(pn.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        out.append(("N", "001", PM.metadata_for_nongeo_region(cc)))
    return out


def write_gz(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        for line in lines:
            assert "\n" not in line
            f.write((line + "\n").encode("utf-8"))


def esc(s):
    s = "" if s is None else s
    assert "\t" not in s
    return s


def metadata_lines(pn):
    geocoder = importlib.import_module("phonenumbers.geocoder")
    putil = importlib.import_module("phonenumbers.phonenumberutil")
    yield f"# libphonenumber metadata from the phonenumbers {VERSION} package on PyPI (Apache-2.0); tools/gen_data.py"
    yield f"V\t{VERSION}"
    for cc in sorted(pn.COUNTRY_CODE_TO_REGION_CODE):
        yield f"C\t{cc}\t{','.join(pn.COUNTRY_CODE_TO_REGION_CODE[cc])}"
    yield "M\t" + ",".join(str(c) for c in sorted(putil._GEO_MOBILE_COUNTRIES))
    for kind, rid, m in all_metadata(pn):
        name = geocoder._region_display_name(rid, "en") if rid != "001" else ""
        yield "\t".join(["R", rid, str(m.country_code), esc(m.international_prefix),
                         esc(m.preferred_international_prefix), esc(m.national_prefix),
                         esc(m.national_prefix_for_parsing), esc(m.national_prefix_transform_rule),
                         esc(m.leading_digits), esc(name)])
        for tname, attr in TYPES:
            d = getattr(m, attr)
            if d is None or d.national_number_pattern is None:
                continue
            pl = ",".join(str(x) for x in (d.possible_length or ()))
            ll = ",".join(str(x) for x in (d.possible_length_local_only or ()))
            yield "\t".join(["D", tname, d.national_number_pattern, pl, ll])


def geo_lines(pn):
    geodata = importlib.import_module("phonenumbers.geodata").GEOCODE_DATA
    tzdata = importlib.import_module("phonenumbers.tzdata").TIMEZONE_DATA
    strings, index = [], {}

    def intern(s, sub=""):
        key = (s, sub)
        if key not in index:
            index[key] = len(strings)
            strings.append(key)
        return index[key]

    geo = sorted((p, intern(v["en"], subdivision(p, v["en"]))) for p, v in geodata.items() if v.get("en"))
    tz = sorted((p, intern("&".join(v) if isinstance(v, (tuple, list)) else v)) for p, v in tzdata.items() if v)
    yield f"# libphonenumber geocoding (en) and time-zone prefix data, from the phonenumbers {VERSION} package on PyPI (Apache-2.0); tools/gen_data.py"
    yield f"# {len(geo)} geography prefixes, {len(tz)} time-zone prefixes, {len(strings)} strings"
    for s, sub in strings:
        yield f"S\t{esc(s)}\t{sub}"
    for p, i in geo:
        yield f"G\t{p}\t{i}"
    for p, i in tz:
        yield f"T\t{p}\t{i}"


# ----------------------------------------------------------------------------- the corpus

def idd_samples(pattern, rng, n=3):
    """Digit strings of 2-5 digits that the region's internationalPrefix matches in full."""
    rx = re.compile(pattern)
    found = []
    for length in range(2, 6):
        for i in range(10 ** length):
            s = str(i).zfill(length)
            if rx.fullmatch(s):
                found.append(s)
        if len(found) > 200:
            break
    if not found:
        return []
    rng.shuffle(found)
    return sorted(found[:n])


def corpus(pn):
    rng = random.Random(17)
    geocoder = importlib.import_module("phonenumbers.geocoder")
    timezone = importlib.import_module("phonenumbers.timezone")
    PNF = pn.PhoneNumberFormat
    type_names = {
        pn.PhoneNumberType.FIXED_LINE: "fixed", pn.PhoneNumberType.MOBILE: "mobile",
        pn.PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed-or-mobile",
        pn.PhoneNumberType.TOLL_FREE: "toll-free", pn.PhoneNumberType.PREMIUM_RATE: "premium",
        pn.PhoneNumberType.SHARED_COST: "shared-cost", pn.PhoneNumberType.VOIP: "voip",
        pn.PhoneNumberType.PERSONAL_NUMBER: "personal", pn.PhoneNumberType.PAGER: "pager",
        pn.PhoneNumberType.UAN: "uan", pn.PhoneNumberType.VOICEMAIL: "voicemail",
        pn.PhoneNumberType.UNKNOWN: "unknown",
    }
    rows = {}

    def add(raw, region, tag):
        key = (raw, region)
        if key in rows:
            return
        try:
            n = pn.parse(raw, region)
        except pn.NumberParseException:
            rows[key] = (tag, "", "false", "unknown", "", "", "")
            return
        e164 = pn.format_number(n, PNF.E164)
        valid = pn.is_valid_number(n)
        t = type_names.get(pn.number_type(n), "unknown")
        reg = pn.region_code_for_number(n) or ""
        desc = geocoder.description_for_number(n, "en")
        tzs = timezone.time_zones_for_number(n)
        tz = "" if tuple(tzs) == ("Etc/Unknown",) else "&".join(tzs)
        rows[key] = (tag, e164, "true" if valid else "false", t, reg, desc, tz)

    def vary(nsn, k):
        d = list(nsn)
        for i in range(max(0, len(d) - k), len(d)):
            d[i] = str(rng.randrange(10))
        return "".join(d)

    metas = all_metadata(pn)
    geo_regions = [rid for kind, rid, m in metas if kind == "R"]
    # A few foreign numbers every region's IDD is dialled with.
    foreign = []
    for r in ["GB", "US", "DE", "FR", "IN", "BR", "JP", "AU", "CN", "NG"]:
        ex = pn.example_number_for_type(r, pn.PhoneNumberType.FIXED_LINE) or pn.example_number(r)
        foreign.append(ex)
    for kind, rid, m in metas:
        cc = m.country_code
        trunk = rid if rid != "001" else "US"
        np_ = m.national_prefix
        for tname, attr in TYPES[1:]:
            d = getattr(m, attr)
            if d is None or not d.example_number:
                continue
            ex = d.example_number
            for i in range(8):
                nsn = ex if i == 0 else vary(ex, 1 + i % 4)
                add(f"+{cc}{nsn}", trunk, f"example-{tname}")
                if i < 4:
                    add(f"+{cc} {nsn}", "US", f"example-{tname}-intl")
                # Invalid variants: too long, too short, another leading digit.
                if i == 1:
                    add(f"+{cc}{nsn}{rng.randrange(10)}", trunk, f"too-long-{tname}")
                    add(f"+{cc}{nsn[:-1]}", trunk, f"too-short-{tname}")
                    lead = str((int(nsn[0]) + 1 + rng.randrange(9)) % 10)
                    add(f"+{cc}{lead}{nsn[1:]}", trunk, f"wrong-lead-{tname}")
                try:
                    num = pn.parse(f"+{cc}{nsn}", None)
                except pn.NumberParseException:
                    continue
                if rid == "001":
                    continue
                if i < 3:
                    nat = pn.format_number(num, PNF.NATIONAL)
                    add(nat, rid, f"national-format-{tname}")
                    digits = re.sub(r"\D", "", nat)
                    add(digits, rid, f"national-digits-{tname}")
                    intl = pn.format_number(num, PNF.INTERNATIONAL)
                    add(intl, rid, f"international-format-{tname}")
                if i == 1:
                    nat = pn.format_number(num, PNF.NATIONAL)
                    for sep in "/.-":
                        add(re.sub(r"[ \u00a0]", sep, nat), rid, f"separator{sep}-{tname}")
                    intl = pn.format_number(num, PNF.INTERNATIONAL)
                    add(intl.replace(" ", "-"), rid, f"separator--intl-{tname}")
                    add(intl.replace(" ", "."), rid, f"separator.-intl-{tname}")
                if i == 2 and np_ and not nsn.startswith(np_):
                    add(f"+{cc} ({np_}){nsn}", rid, f"plus-cc-paren-np-{tname}")
                    add(f"+{cc} ({np_}) {nsn}", "US", f"plus-cc-paren-np-{tname}")
        if rid == "001" or not m.international_prefix:
            continue
        for idd in idd_samples(m.international_prefix, rng):
            for ex in rng.sample(foreign, 4):
                if ex.country_code == cc:
                    continue
                nsn = pn.national_significant_number(ex)
                add(f"{idd}{ex.country_code}{vary(nsn, 3)}", rid, "idd")
                add(f"{idd} {ex.country_code} {vary(nsn, 3)}", rid, "idd-spaced")
    # Bare foreign digits (a carrier that dropped the `+`) on other regions' trunks: the engine
    # reads a valid foreign number where the national reading is no number of the region, which
    # libphonenumber does not (crates/core/tests/data/differences.tsv lists each).
    for trunk in ["US", "GB", "DE", "FR", "IN"]:
        for ex in foreign:
            if pn.region_code_for_number(ex) == trunk:
                continue
            add(f"{ex.country_code}{pn.national_significant_number(ex)}", trunk, "bare-foreign")
    out = [f"# reference corpus: libphonenumber {VERSION} (phonenumbers on PyPI) answers; tools/gen_data.py",
           "# input\ttrunk region\ttag\te164\tvalid\ttype\tregion\tdescription\ttime zones"]
    for (raw, region), v in sorted(rows.items(), key=lambda kv: (kv[1][0], kv[0])):
        assert "\t" not in raw
        out.append("\t".join([raw, region] + [esc(x) for x in v]))
    return out


def main():
    if len(sys.argv) > 1:
        pkg = sys.argv[1]
    else:
        pkg = tempfile.mkdtemp(prefix="phonenumbers-")
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps",
                               f"phonenumbers=={VERSION}", "-d", pkg])
        whl = [f for f in os.listdir(pkg) if f.endswith(".whl")][0]
        subprocess.check_call(["unzip", "-q", "-o", os.path.join(pkg, whl), "-d", pkg])
    pn = load(pkg)
    write_gz(os.path.join(ROOT, "crates/core/data/metadata.txt.gz"), metadata_lines(pn))
    write_gz(os.path.join(ROOT, "crates/core/data/geo.txt.gz"), geo_lines(pn))
    rows = corpus(pn)
    write_gz(os.path.join(ROOT, "crates/core/tests/data/corpus.tsv.gz"), rows)
    print(f"phonenumbers {VERSION}: metadata, geography and {len(rows) - 2} corpus rows written")


if __name__ == "__main__":
    main()
