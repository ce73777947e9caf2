"""Cases: what a variance run samples, and everything that describes one.

model.py      Case (prompt or messages, checks, tags, metadata), case_from_record, fingerprint
loaders.py    load_cases: bundled sets, JSONL / YAML / CSV files, saved `datasets` dirs
checks.py     does one output pass (exact, normalized, contains, regex, numeric, one_of,
              json + JSON Schema, python callable), with the reason and extracted answer
specs.py      check specs (YAML / JSON mappings) -> validated Check objects
textinfo.py   what an input looks like: text, language, script, tokens, structured fields
cohorts.py    cohort buckets (tags, locale, length bands, schema shape, intent) over cases

    from lab.cases import load_cases
    cases = load_cases("bundled:basic")
"""

from lab.cases.loaders import load_cases
from lab.cases.model import Case, cases_fingerprint

__all__ = ["Case", "cases_fingerprint", "load_cases"]
