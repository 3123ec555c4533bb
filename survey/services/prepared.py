"""The writes every page's save makes, compiled once per process (and thread) and database.

``PreparedInsert`` and ``PreparedUpsert``, per number of rows: ``save(rows)`` does what ``bulk_create(rows)``, or ``bulk_create(rows, update_conflicts=True,
unique_fields=..., update_fields=...)`` does (INSERT ... ON CONFLICT DO UPDATE ... RETURNING the
row ids, the ids set on the rows), without the ORM building and compiling the statement again
on every POST. The values are prepared as the ORM prepares them (``pre_save``: the rows'
timestamps; ``get_db_prep_save``), so the statement and its parameters are the ones
``bulk_create`` sends (tests/survey/services/test_prepared.py compares them).

``PreparedUpdate``, per set of columns: ``update(pk, **values)`` does what
``filter(pk=pk).update(**values)`` does for plain values and ``RawSQL`` ones (the participant
row's progress, with the attention count as a subquery)."""
from __future__ import annotations

import threading
from itertools import chain

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import AutoField
from django.db.models.expressions import RawSQL
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery


class PreparedInsert:
    """``save(rows)``: what ``bulk_create(rows)`` does (INSERT ... RETURNING the ids), compiled once
    per number of rows. For the rows a page makes once (a participant, their consent, their persona);
    no signals are sent, as bulk_create sends none."""

    unique_fields: list[str] = []
    update_fields: list[str] = []

    def __init__(self, model):
        self.model = model
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
        compiled = self._local.__dict__.setdefault("compiled", {})
        key = (using, len(rows))
        if key not in compiled:
            query = self._query()
            fields = self._fields()
            query.insert_values(fields, rows, raw=False)
            compiler = query.get_compiler(using=using)
            compiler.returning_fields = self.model._meta.db_returning_fields
            [(sql, _params)] = compiler.as_sql()
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
        super().__init__(model)
        self.unique_fields = unique_fields
        self.update_fields = update_fields


class PreparedUpdate:
    def __init__(self, model):
        self.model = model
        self._local = threading.local()

    def _compiled(self, values: dict, using: str) -> str:
        compiled = self._local.__dict__.setdefault("compiled", {})
        # A RawSQL value's SQL is part of the statement; its parameters are not.
        key = (using, tuple((name, value.sql if isinstance(value, RawSQL) else None) for name, value in values.items()))
        if key not in compiled:
            opts, ops = self.model._meta, connections[using].ops
            assignments = []
            for name, value in values.items():
                column = ops.quote_name(opts.get_field(name).column)
                assignments.append(f"{column} = ({value.sql})" if isinstance(value, RawSQL) else f"{column} = %s")
            compiled[key] = (f"UPDATE {ops.quote_name(opts.db_table)} SET {', '.join(assignments)} "
                             f"WHERE {ops.quote_name(opts.pk.column)} = %s")
        return compiled[key]

    def update(self, pk, using: str = DEFAULT_DB_ALIAS, **values) -> int:
        """Set ``values`` on the row ``pk``; the number of rows changed (0: no such row)."""
        connection = connections[using]
        sql = self._compiled(values, using)
        params = []
        for name, value in values.items():
            if isinstance(value, RawSQL):
                params.extend(value.params)
            else:
                params.append(self.model._meta.get_field(name).get_db_prep_save(value, connection))
        params.append(pk)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount
