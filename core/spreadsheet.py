"""CSV that is safe to open in a spreadsheet. Every CSV the platform writes goes
through `safe_csv_writer` / `safe_dict_writer`.

- Formula injection (OWASP "CSV Injection"): a text cell that begins with
  ``=``, ``+``, ``-``, ``@``, tab or carriage return is prefixed with a single
  quote, so Excel, LibreOffice and Google Sheets show it as text instead of
  evaluating it. Only strings are neutralised: int, float and bool values are
  written as they are, so numeric columns (e.g. a weight of -0.5) stay numbers.
- Bidirectional controls (U+202A–U+202E embeddings/overrides, U+2066–U+2069
  isolates, U+200E/U+200F marks) are removed from text cells: they can make a
  cell display something other than what it contains ("Trojan Source").

JSONL exports are not spreadsheet files and keep the raw text.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def spreadsheet_safe(value):
    """One cell's value as it is safe to write; non-strings are left alone."""
    if not isinstance(value, str):
        return value
    text = BIDI_CONTROLS.sub("", value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


class SafeCsvWriter:
    """csv.writer whose every text cell is passed through `spreadsheet_safe`."""

    def __init__(self, out, **kwargs):
        self._writer = csv.writer(out, **kwargs)

    def writerow(self, row: Iterable):
        return self._writer.writerow([spreadsheet_safe(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable]):
        for row in rows:
            self.writerow(row)


class SafeDictWriter(csv.DictWriter):
    """csv.DictWriter whose every text cell (header included) is made safe."""

    def writeheader(self):
        return self.writer.writerow([spreadsheet_safe(name) for name in self.fieldnames])

    def _dict_to_list(self, rowdict: Mapping):
        return [spreadsheet_safe(cell) for cell in super()._dict_to_list(rowdict)]


def safe_csv_writer(out, **kwargs) -> SafeCsvWriter:
    return SafeCsvWriter(out, **kwargs)


def safe_dict_writer(out, fieldnames, **kwargs) -> SafeDictWriter:
    return SafeDictWriter(out, fieldnames=fieldnames, **kwargs)
