"""Querysets compiled once per process (and thread), for the lookups every participant request
makes: building and compiling a queryset (with its study joined) cost about three times what
running it did. The queryset is built once with a marker in place of the looked-up value; each
call runs the compiled SQL with the value and makes the instances as the ORM does (converters,
select_related, deferred fields), so the result is the same as ``build(value).first()``."""
from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.query import get_related_populators

_MARKER = "\x00survey-prepared-value\x00"
_INTEGER_MARKER = -7_302_518_446_019  # for a value of an integer column (no row id or count is this)


class _Prepared:
    """A query built once per process, thread and database with the marker in place of its one
    looked-up value (``integer``: of an integer column); ``_compiled(using)`` holds what
    ``_prepare`` made of it."""

    def __init__(self, build: Callable, *, integer: bool = False):
        self._build = build
        self._marker = _INTEGER_MARKER if integer else _MARKER
        self._local = threading.local()

    def _compiled(self, using: str) -> dict:
        compiled = getattr(self._local, "compiled", None)
        if compiled is None:
            compiled = self._local.compiled = {}
        if using not in compiled:
            compiler = self._queryset(self._build(self._marker)).query.get_compiler(using=using)
            sql, params = compiler.as_sql()  # also sets compiler.select and klass_info
            positions = [i for i, param in enumerate(params) if param == self._marker]
            if len(positions) != 1:
                raise ValueError("a prepared query needs the value in exactly one place of its query")
            compiled[using] = {"sql": sql, "params": list(params), "position": positions[0], **self._prepare(compiler, using)}
        return compiled[using]

    def _sql(self, value, using: str) -> tuple[dict, str, list]:
        entry = self._compiled(using)
        params = list(entry["params"])
        params[entry["position"]] = value
        return entry, entry["sql"], params

    def _queryset(self, queryset):
        return queryset

    def _prepare(self, compiler, using: str) -> dict:
        return {}


class PreparedSubquery(_Prepared):
    """``build(value)`` returns a queryset of one value (a count, say) to be used inside another
    statement; ``sql(value)`` gives its SQL and parameters, for a ``RawSQL``."""

    def sql(self, value, using: str = DEFAULT_DB_ALIAS) -> tuple[str, tuple]:
        _entry, sql, params = self._sql(value, using)
        return sql, tuple(params)


class PreparedLookup(_Prepared):
    """``build(value)`` returns the queryset of one lookup (filtered on ``value`` once, at most one
    row: it is cut to [:1] here). ``first(value)`` runs it."""

    def _queryset(self, queryset):
        return queryset[:1]

    def _prepare(self, compiler, using: str) -> dict:
        klass_info, select = compiler.klass_info, compiler.select
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return {
            "compiler": compiler,
            # The fields' converters (JSON, and the backend's), found once too.
            "converters": compiler.get_converters([column[0] for column in select[:compiler.col_count]]),
            "model": klass_info["model"], "start": start, "end": end,
            "init_list": [column[0].target.attname for column in select[start:end]],
            "related": get_related_populators(klass_info, select, using),
        }

    def first(self, value, using: str = DEFAULT_DB_ALIAS):
        entry, sql, params = self._sql(value, using)
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        if entry["converters"]:
            row = next(entry["compiler"].apply_converters([row], entry["converters"]))
        obj = entry["model"].from_db(using, entry["init_list"], row[entry["start"]:entry["end"]])
        for populator in entry["related"]:
            populator.populate(row, obj)
        return obj
