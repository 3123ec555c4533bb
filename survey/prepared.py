"""Statements compiled once per process (and thread) and database, for what every participant
request reads and writes: building and compiling a queryset or an INSERT/UPDATE (with its study
joined, its conflict clause, ...) cost about three times what running it did.

Reads. The queryset is built once with a marker in place of each looked-up value; each call runs
the compiled SQL with the values and makes the result as the ORM does (converters,
select_related, deferred fields), so ``first(a, b)`` gives what ``build(a, b).first()`` gives.
The values are described by their kinds, in order: ``TEXT`` (the default, one text value) or
``INTEGER`` (a value of an integer column: a row id, say). Each value must appear exactly once in
the compiled query.

Writes. ``PreparedInsert`` and ``PreparedUpsert``, per number of rows: ``save(rows)`` does what
``bulk_create(rows)``, or ``bulk_create(rows, update_conflicts=True, unique_fields=...,
update_fields=...)``, does (INSERT [... ON CONFLICT DO UPDATE] ... RETURNING the row ids, the ids
set on the rows). The values are prepared as the ORM prepares them (``pre_save``: the rows'
timestamps; ``get_db_prep_save``), so the statement and its parameters are the ones
``bulk_create`` sends (tests/survey/test_prepared.py compares them). ``PreparedUpdate``, per set
of columns: ``update(pk, **values)`` does what ``filter(pk=pk).update(**values)`` does for plain
values and ``RawSQL`` ones (the participant row's progress, with the attention count as a
subquery)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import chain

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import AutoField
from django.db.models.constants import OnConflict
from django.db.models.expressions import RawSQL
from django.db.models.query import get_related_populators
from django.db.models.sql import InsertQuery

TEXT = "text"
INTEGER = "integer"
_TEXT_MARKER = "\x00survey-prepared-value-{}\x00"
# Minus the value's index. Within every integer column's range (Django answers a lookup out of a
# column's range with no query at all); a constant of the query equal to a marker is refused below.
_INTEGER_MARKER = 32_767


def _per_thread(local: threading.local) -> dict:
    """This thread's cache of compiled statements (a connection, and so its statements, is per thread)."""
    return local.__dict__.setdefault("compiled", {})


def _marker(kind: str, index: int):
    if kind == TEXT:
        return _TEXT_MARKER.format(index)
    if kind == INTEGER:
        return _INTEGER_MARKER - index
    raise ValueError(f"a prepared value is {TEXT!r} or {INTEGER!r}, not {kind!r}")


class _Prepared:
    """A query built once per process, thread and database with markers in place of its
    looked-up values; ``_compiled(using)`` holds what ``_prepare`` made of it."""

    def __init__(self, build: Callable, *, kinds: tuple[str, ...] = (TEXT,), limit: int | None = None):
        self._build = build
        self._markers = tuple(_marker(kind, index) for index, kind in enumerate(kinds))
        self._limit = limit  # the query cut to at most this many rows (None: not cut)
        self._local = threading.local()

    def _compiled(self, using: str) -> dict:
        compiled = _per_thread(self._local)
        if using not in compiled:
            compiler = self._queryset(self._build(*self._markers)).query.get_compiler(using=using)
            sql, params = compiler.as_sql()  # also sets compiler.select and klass_info
            positions = []
            for marker in self._markers:
                found = [i for i, param in enumerate(params) if isinstance(param, type(marker)) and param == marker]
                if len(found) != 1:
                    raise ValueError("a prepared query needs each of its values in exactly one place of its query")
                # The backend's own type for the value (psycopg's Int2 for a small integer column, say), as the ORM passes it.
                positions.append((found[0], type(params[found[0]])))
            compiled[using] = {"sql": sql, "params": list(params), "positions": positions, **self._prepare(compiler, using)}
        return compiled[using]

    def _sql(self, values: tuple, using: str) -> tuple[dict, str, list]:
        if len(values) != len(self._markers):
            raise TypeError(f"this prepared query takes {len(self._markers)} values, not {len(values)}")
        entry = self._compiled(using)
        params = list(entry["params"])
        for (position, kind), value in zip(entry["positions"], values):
            params[position] = value if value is None or type(value) is kind else kind(value)
        return entry, entry["sql"], params

    def _queryset(self, queryset):
        return queryset if self._limit is None else queryset[:self._limit]

    def _prepare(self, compiler, using: str) -> dict:
        return {}

    def _fetch(self, values: tuple, using: str) -> tuple[dict, list]:
        entry, sql, params = self._sql(values, using)
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if rows and entry.get("converters"):
            rows = list(entry["compiler"].apply_converters(rows, entry["converters"]))
        return entry, rows


def _converters(compiler) -> dict:
    # The fields' converters (JSON, and the backend's), found once too.
    return {"compiler": compiler,
            "converters": compiler.get_converters([column[0] for column in compiler.select[:compiler.col_count]])}


class PreparedSubquery(_Prepared):
    """``build(*values)`` returns a queryset of one value (a count, say) to be used inside another
    statement; ``sql(*values)`` gives its SQL and parameters, for a ``RawSQL``."""

    def sql(self, *values, using: str = DEFAULT_DB_ALIAS) -> tuple[str, tuple]:
        _entry, sql, params = self._sql(values, using)
        return sql, tuple(params)


class PreparedRows(_Prepared):
    """``build(*values)`` returns a ``values_list`` queryset; ``rows(*values)`` runs it and gives its
    rows as tuples (``limit``: at most that many)."""

    def _prepare(self, compiler, using: str) -> dict:
        return _converters(compiler)

    def rows(self, *values, using: str = DEFAULT_DB_ALIAS) -> list[tuple]:
        entry, rows = self._fetch(values, using)
        width = entry["compiler"].col_count
        return [tuple(row[:width]) for row in rows]


class PreparedLookup(_Prepared):
    """``build(*values)`` returns the queryset of a lookup of model instances; ``first(*values)``
    runs it cut to one row, ``all(*values)`` to ``limit`` rows (None: every row)."""

    def __init__(self, build: Callable, *, kinds: tuple[str, ...] = (TEXT,), limit: int | None = 1):
        super().__init__(build, kinds=kinds, limit=limit)

    def _prepare(self, compiler, using: str) -> dict:
        klass_info, select = compiler.klass_info, compiler.select
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return {
            **_converters(compiler),
            "model": klass_info["model"], "start": start, "end": end,
            "init_list": [column[0].target.attname for column in select[start:end]],
            "related": get_related_populators(klass_info, select, using),
        }

    def all(self, *values, using: str = DEFAULT_DB_ALIAS) -> list:
        entry, rows = self._fetch(values, using)
        found = []
        for row in rows:
            obj = entry["model"].from_db(using, entry["init_list"], row[entry["start"]:entry["end"]])
            for populator in entry["related"]:
                populator.populate(row, obj)
            found.append(obj)
        return found

    def first(self, *values, using: str = DEFAULT_DB_ALIAS):
        if self._limit != 1:
            raise TypeError("first() is for a lookup of one row (limit=1)")
        found = self.all(*values, using=using)
        return found[0] if found else None


# --- Writes ------------------------------------------------------------------------------------


class PreparedInsert:
    """``save(rows)``: what ``bulk_create(rows)`` does (INSERT ... RETURNING the ids), compiled once
    per number of rows. For the rows a page makes once (a participant, their consent, their persona);
    no signals are sent, as bulk_create sends none."""

    def __init__(self, model, *, unique_fields: list[str] | None = None, update_fields: list[str] | None = None):
        self.model = model
        # Set by PreparedUpsert: the unique key a row that exists already is met on, and what it updates.
        self.unique_fields = unique_fields or []
        self.update_fields = update_fields or []
        self._local = threading.local()

    def _query(self):
        opts = self.model._meta
        if not self.unique_fields:
            return InsertQuery(self.model)
        return InsertQuery(self.model, on_conflict=OnConflict.UPDATE,
                           update_fields=[opts.get_field(name) for name in self.update_fields],
                           unique_fields=[opts.get_field(name) for name in self.unique_fields])

    def _bulk_create(self, rows: list, using: str) -> list:
        conflicts = dict(update_conflicts=True, unique_fields=self.unique_fields, update_fields=self.update_fields) if self.unique_fields else {}
        return self.model._default_manager.using(using).bulk_create(rows, **conflicts)

    def _fields(self) -> list:
        # What bulk_create inserts for rows without a primary key: every stored field but the row id.
        return [f for f in self.model._meta.concrete_fields if not f.generated and not isinstance(f, AutoField)]

    def _compiled(self, rows: list, using: str) -> tuple:
        compiled = _per_thread(self._local)
        key = (using, len(rows))
        if key not in compiled:
            query = self._query()
            fields = self._fields()
            query.insert_values(fields, rows, raw=False)
            compiler = query.get_compiler(using=using)
            compiler.returning_fields = self.model._meta.db_returning_fields
            [(sql, _params)] = compiler.as_sql()
            query.objs = []  # the statement is kept, not the first call's rows
            compiled[key] = (compiler, fields, sql)
        return compiled[key]

    def statement(self, rows: list, using: str = DEFAULT_DB_ALIAS) -> tuple[str, list] | None:
        """The SQL and parameters for these rows; None when a value is an expression (its SQL
        depends on it: the ORM's own path then)."""
        compiler, fields, sql = self._compiled(rows, using)
        value_rows = [[compiler.prepare_value(field, compiler.pre_save_val(field, row)) for field in fields] for row in rows]
        if any(hasattr(value, "as_sql") for values in value_rows for value in values):
            return None
        _placeholders, param_rows = compiler.assemble_as_sql(fields, value_rows)
        return sql, list(chain.from_iterable(param_rows))

    def save(self, rows: list, using: str = DEFAULT_DB_ALIAS) -> list:
        """Insert the rows (an upsert: or update the row each one meets on ``unique_fields``); the rows get their ids."""
        if not rows:
            return rows
        statement = self.statement(rows, using)
        if statement is None:
            return self._bulk_create(rows, using)
        with connections[using].cursor() as cursor:
            cursor.execute(*statement)
            returned = cursor.fetchall()
        returning = self.model._meta.db_returning_fields
        for row, values in zip(rows, returned):
            for field, value in zip(returning, values):
                setattr(row, field.attname, value)
            row._state.adding = False
            row._state.db = using
        return rows


class PreparedUpsert(PreparedInsert):
    """``save(rows)``: what ``bulk_create(rows, update_conflicts=True, unique_fields=...,
    update_fields=...)`` does, compiled once per number of rows."""

    def __init__(self, model, *, unique_fields: list[str], update_fields: list[str]):
        super().__init__(model, unique_fields=unique_fields, update_fields=update_fields)


class PreparedUpdate:
    def __init__(self, model):
        self.model = model
        self._local = threading.local()

    def _compiled(self, values: dict, using: str) -> tuple[str, list]:
        """The statement, and the field of each value in order."""
        compiled = _per_thread(self._local)
        # A RawSQL value's SQL is part of the statement; its parameters are not.
        key = (using, tuple((name, value.sql if isinstance(value, RawSQL) else None) for name, value in values.items()))
        if key not in compiled:
            opts, ops = self.model._meta, connections[using].ops
            fields = [opts.get_field(name) for name in values]
            assignments = [f"{ops.quote_name(field.column)} = ({value.sql})" if isinstance(value, RawSQL)
                           else f"{ops.quote_name(field.column)} = %s" for field, value in zip(fields, values.values())]
            compiled[key] = (f"UPDATE {ops.quote_name(opts.db_table)} SET {', '.join(assignments)} "
                             f"WHERE {ops.quote_name(opts.pk.column)} = %s", fields)
        return compiled[key]

    def update(self, pk, using: str = DEFAULT_DB_ALIAS, **values) -> int:
        """Set ``values`` on the row ``pk``; the number of rows changed (0: no such row)."""
        connection = connections[using]
        sql, fields = self._compiled(values, using)
        params = []
        for field, value in zip(fields, values.values()):
            if isinstance(value, RawSQL):
                params.extend(value.params)
            else:
                params.append(field.get_db_prep_save(value, connection))
        params.append(pk)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount
