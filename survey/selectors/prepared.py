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


class PreparedLookup:
    """``build(value)`` returns the queryset of one lookup (filtered on ``value`` once, at most one
    row: it is cut to [:1] here). ``first(value)`` runs it."""

    def __init__(self, build: Callable):
        self._build = build
        self._local = threading.local()

    def _compiled(self, using: str):
        compiled = getattr(self._local, "compiled", None)
        if compiled is None:
            compiled = self._local.compiled = {}
        if using not in compiled:
            queryset = self._build(_MARKER)[:1]
            compiler = queryset.query.get_compiler(using=using)
            sql, params = compiler.as_sql()  # also sets compiler.select and klass_info
            positions = [i for i, param in enumerate(params) if param == _MARKER]
            if len(positions) != 1:
                raise ValueError("a prepared lookup needs the value in exactly one place of its query")
            klass_info, select = compiler.klass_info, compiler.select
            start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
            compiled[using] = {
                "compiler": compiler, "sql": sql, "params": list(params), "position": positions[0],
                # The fields' converters (JSON, and the backend's), found once too.
                "converters": compiler.get_converters([column[0] for column in select[:compiler.col_count]]),
                "model": klass_info["model"], "start": start, "end": end,
                "init_list": [column[0].target.attname for column in select[start:end]],
                "related": get_related_populators(klass_info, select, using),
            }
        return compiled[using]

    def first(self, value, using: str = DEFAULT_DB_ALIAS):
        entry = self._compiled(using)
        params = list(entry["params"])
        params[entry["position"]] = value
        with connections[using].cursor() as cursor:
            cursor.execute(entry["sql"], params)
            row = cursor.fetchone()
        if row is None:
            return None
        if entry["converters"]:
            row = next(entry["compiler"].apply_converters([row], entry["converters"]))
        obj = entry["model"].from_db(using, entry["init_list"], row[entry["start"]:entry["end"]])
        for populator in entry["related"]:
            populator.populate(row, obj)
        return obj
