"""End-of-life dates of Python versions, from the release-schedule PEPs.

Where a PEP gives only a month (future dates), the first day of that month is
used, so an image is flagged early rather than late. Admins can override or
add dates with ``conda_python_eol_dates`` when a PEP is updated.
"""

import datetime

EOL = {
    "2.7": "2020-01-01",  # PEP 373
    "3.0": "2009-06-27",
    "3.1": "2012-04-09",  # PEP 375
    "3.2": "2016-02-20",  # PEP 392
    "3.3": "2017-09-29",  # PEP 398
    "3.4": "2019-03-18",  # PEP 429
    "3.5": "2020-09-30",  # PEP 478
    "3.6": "2021-12-23",  # PEP 494
    "3.7": "2023-06-27",  # PEP 537
    "3.8": "2024-10-07",  # PEP 569
    "3.9": "2025-10-31",  # PEP 596
    "3.10": "2026-10-01",  # PEP 619: 2026-10
    "3.11": "2027-10-01",  # PEP 664: 2027-10
    "3.12": "2028-10-01",  # PEP 693: 2028-10
    "3.13": "2029-10-01",  # PEP 719: 2029-10
    "3.14": "2030-10-01",  # PEP 745: 2030-10
}


def _key(version):
    return tuple(int(p) for p in version.split("."))


def eol_date(major_minor, overrides=()):
    """The end-of-life date of ``"3.11"``; versions older than the table are past it; None if unknown."""
    table = {**EOL, **dict(overrides)}
    if major_minor in table:
        return datetime.date.fromisoformat(table[major_minor])
    oldest = min(table, key=_key)
    if _key(major_minor) < _key(oldest):
        return datetime.date.fromisoformat(table[oldest])
    return None
