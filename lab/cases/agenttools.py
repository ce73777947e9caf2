"""The deterministic tools of the bundled agent cases (`bundled:agents`, agents.yaml beside
this file names it as its environment module): a calculator, unit conversion, a small
key-value store, a calendar and a product catalogue.

Each function is named like its tool and takes the tool's arguments; the ones with a `state`
parameter read (and the key-value store writes) the trajectory's own state, a deep copy of the
case's `environment.state`. The calendar and the catalogue fall back to the data below when a
case's state does not bring its own. Bad input raises (ValueError, KeyError): the lab records
the exception as the tool's error answer and the model reads it.

    calculator("17 * 23")                          # 391
    convert_units(3.5, "km", "m")                  # 3500
"""

from __future__ import annotations

import ast
import operator
from typing import Any

CALENDAR: dict[str, list[str]] = {
    "2026-03-02": ["09:00 team standup", "14:00 budget review"],
    "2026-03-05": ["11:30 lunch with Ana"],
    "2026-03-10": ["10:00 dentist"],
    "2026-03-14": ["all day: Pi day party"],
    "2026-03-20": ["16:00 flight to Lisbon"],
}
CATALOGUE: list[dict[str, Any]] = [
    {"name": "desk lamp", "category": "lighting", "price": 24, "stock": 12},
    {"name": "floor lamp", "category": "lighting", "price": 59, "stock": 0},
    {"name": "office chair", "category": "furniture", "price": 149, "stock": 4},
    {"name": "bookshelf", "category": "furniture", "price": 89, "stock": 7},
    {"name": "notebook", "category": "stationery", "price": 3, "stock": 250},
    {"name": "fountain pen", "category": "stationery", "price": 35, "stock": 9},
]

_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 1e15 else round(float(x), 6)


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return float(_OPERATORS[type(node.op)](left, right))
    raise ValueError("only numbers, + - * / // % ** and parentheses")


def calculator(expression: str) -> float | int:
    """Evaluate an arithmetic expression (x and ^ are read as * and **)."""
    text = expression.replace("x", "*").replace("×", "*").replace("^", "**").replace(",", "")
    return _number(_evaluate(ast.parse(text, mode="eval")))


_UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0),
    "km": ("length", 1000.0), "in": ("length", 0.0254), "ft": ("length", 0.3048),
    "mi": ("length", 1609.344), "g": ("mass", 0.001), "kg": ("mass", 1.0),
    "lb": ("mass", 0.45359237), "oz": ("mass", 0.028349523125), "s": ("time", 1.0),
    "min": ("time", 60.0), "h": ("time", 3600.0), "day": ("time", 86400.0),
    "ml": ("volume", 0.001), "l": ("volume", 1.0),
}  # fmt: skip
_ALIASES = {
    "meter": "m", "meters": "m", "metre": "m", "kilometer": "km", "kilometers": "km",
    "mile": "mi", "miles": "mi", "foot": "ft", "feet": "ft", "inch": "in", "inches": "in",
    "gram": "g", "grams": "g", "kilogram": "kg", "kilograms": "kg", "pound": "lb",
    "pounds": "lb", "second": "s", "seconds": "s", "minute": "min", "minutes": "min",
    "hour": "h", "hours": "h", "days": "day", "liter": "l", "liters": "l", "litre": "l",
    "celsius": "c", "fahrenheit": "f", "kelvin": "k",
}  # fmt: skip


def _unit(name: str) -> str:
    key = name.strip().lower().rstrip(".")
    return _ALIASES.get(key, key)


def convert_units(value: float, from_unit: str, to_unit: str) -> float | int:
    """Convert between units of length, mass, time, volume or temperature (c, f, k)."""
    a, b = _unit(from_unit), _unit(to_unit)
    temps = {"c", "f", "k"}
    if a in temps and b in temps:
        celsius = {"c": value, "f": (value - 32) * 5 / 9, "k": value - 273.15}[a]
        return _number({"c": celsius, "f": celsius * 9 / 5 + 32, "k": celsius + 273.15}[b])
    if a not in _UNITS or b not in _UNITS:
        raise ValueError(f"unknown unit {from_unit if a not in _UNITS else to_unit!r}")
    (kind_a, factor_a), (kind_b, factor_b) = _UNITS[a], _UNITS[b]
    if kind_a != kind_b:
        raise ValueError(f"cannot convert {kind_a} to {kind_b}")
    return _number(value * factor_a / factor_b)


def kv_get(key: str, state: dict[str, Any]) -> Any:
    """The value stored under `key`."""
    store = state.setdefault("kv", {})
    if key not in store:
        raise KeyError(f"no key {key!r}; keys: {', '.join(sorted(store)) or 'none'}")
    return store[key]


def kv_set(key: str, value: Any, state: dict[str, Any]) -> str:
    """Store `value` under `key`."""
    state.setdefault("kv", {})[key] = value
    return "ok"


def kv_delete(key: str, state: dict[str, Any]) -> str:
    """Remove `key`."""
    store = state.setdefault("kv", {})
    if key not in store:
        raise KeyError(f"no key {key!r}")
    del store[key]
    return "ok"


def calendar_events(date: str, state: dict[str, Any]) -> list[str]:
    """The events on a date (YYYY-MM-DD)."""
    return list(state.get("calendar", CALENDAR).get(date.strip(), []))


def calendar_find(text: str, state: dict[str, Any]) -> list[str]:
    """The dates whose events mention `text`, as 'DATE: EVENT'."""
    needle = text.strip().lower()
    calendar = state.get("calendar", CALENDAR)
    return [f"{d}: {ev}" for d in sorted(calendar) for ev in calendar[d] if needle in ev.lower()]


def catalogue_search(query: str, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Products whose name or category contains `query`."""
    needle = query.strip().lower()
    items = state.get("catalogue", CATALOGUE)
    return [p for p in items if needle in p["name"].lower() or needle in p["category"].lower()]


def catalogue_price(name: str, state: dict[str, Any]) -> int | float:
    """The price of a product (by exact name)."""
    for product in state.get("catalogue", CATALOGUE):
        if product["name"].lower() == name.strip().lower():
            return product["price"]  # type: ignore[no-any-return]
    raise KeyError(f"no product named {name!r}")
