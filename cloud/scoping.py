"""THE scoping layer: every query on tenant data goes through a TenantScope or a PlatformScope.

    scope = TenantScope(get_db(), tenant_id)
    devices = scope.all(Device, Device.project_id == project_id)
    device = scope.get(Device, device_id)          # None for another tenant's id
    scope.add(Project(name="Kitchen"))            # tenant_id filled in; another tenant's refused

Why several layers: a single forgotten ``WHERE tenant_id = ...`` would leak one customer's voice
transcripts to another, so each layer catches what the one before might miss:

1. TenantScope's own methods filter on ``tenant_id`` and check the tenant of every row they write,
   including the rows it points at (a device cannot be put into another tenant's project).
2. Hooks on the session: while a TenantScope is active, every ORM SELECT/UPDATE/DELETE gets the
   tenant criterion added (``with_loader_criteria``), and a flush refuses rows of another tenant.
   With no scope at all, ORM statements on tenant tables are refused rather than run unfiltered.
3. On PostgreSQL, row-level security (cloud/migrations/rls.py): the app runs as a non-owner role
   and the scope sets ``voxfleet.tenant_id`` for each transaction, so even hand-written SQL sees
   only that tenant's rows.

PlatformScope is for the operator portal and for system work that precedes knowing a tenant
(authenticating an API key by its prefix, pairing, ingest resolving a device from its topic).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    Table,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, sessionmaker, with_loader_criteria

from cloud.db.base import Base, Scoped
from cloud.db.session import SCOPE_KEY, CloudSession, set_scope
from cloud.db.tenants import Tenant

M = TypeVar("M", bound=Base)


class ScopeError(RuntimeError):
    """Tenant data asked for outside the rules of the scoping layer."""


class NotTenantOwned(ScopeError):
    """A TenantScope was asked for a table that does not belong to tenants."""


class CrossTenantError(ScopeError):
    """A write would touch, or point at, another tenant's rows."""


def _tenancy(model: type) -> str | None:
    return getattr(model, "__tenancy__", None)


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


class _Scope:
    _tenant_id: uuid.UUID | None = None
    _platform = False

    def __init__(self, db: Session) -> None:
        self.db = db
        self._activate()

    def _activate(self) -> None:
        """Make this the session's scope (a session may serve several scopes, one at a time)."""
        current = self.db.info.get(SCOPE_KEY)
        if current != (self._tenant_id, self._platform):
            if current is not None and (self.db.new or self.db.dirty or self.db.deleted):
                # Changes made under the previous scope are written under that scope's rules.
                self.db.flush()
            set_scope(self.db, self._tenant_id, self._platform)

    # Running statements through the scope makes sure it is the one in force when they run.
    def execute(self, statement: Any, params: Any = None) -> Any:
        self._activate()
        return self.db.execute(statement, params)

    def scalars(self, statement: Any) -> list[Any]:
        self._activate()
        found = list(self.db.scalars(statement))
        self._loaded(found)
        return found

    def _loaded(self, rows: list[Any]) -> None:
        """Rows a query returned (a TenantScope keeps the ids it may point at: see _verified)."""

    def scalar(self, statement: Any) -> Any:
        self._activate()
        return self.db.scalar(statement)

    def commit(self) -> None:
        self._activate()
        self.db.commit()

    def flush(self) -> None:
        self._activate()
        self.db.flush()

    def select(self, model: type[M], *where: Any) -> Select[tuple[M]]:
        """A SELECT of the rows this scope may see; refine it further (order, limit, join) before
        running it."""
        raise NotImplementedError

    def all(self, model: type[M], *where: Any, order_by: Any = None, limit: int | None = None) -> list[M]:
        stmt = self.select(model, *where)
        if order_by is not None:
            stmt = stmt.order_by(*(order_by if isinstance(order_by, list | tuple) else [order_by]))
        if limit is not None:
            stmt = stmt.limit(limit)
        return self.scalars(stmt)

    def first(self, model: type[M], *where: Any) -> M | None:
        return self.scalar(self.select(model, *where).limit(1))

    def get(self, model: type[M], id_: uuid.UUID | str | None) -> M | None:
        """The row with this id if this scope may see it; None for a missing or malformed id, or
        (in a TenantScope) another tenant's: callers answer 404 either way, revealing nothing."""
        if id_ is None:
            return None
        try:
            key = _as_uuid(id_)
        except ValueError:
            return None
        return self.first(model, model.id == key)  # type: ignore[attr-defined]


class TenantScope(_Scope):
    """One tenant's view of the database. Rows of other tenants cannot be read, changed or deleted."""

    def __init__(self, db: Session, tenant_id: uuid.UUID | str) -> None:
        self._tenant_id = _as_uuid(tenant_id)
        # Ids this scope found to be this tenant's rows, per table: a row's tenant never changes (no
        # scope can move a row to another tenant), so one check per id per scope is enough. Only ids
        # a query of this scope returned as this tenant's are kept (a reference check, or rows it
        # loaded: see _loaded), never ids merely written here.
        self._verified: dict[str, set[uuid.UUID]] = {}
        super().__init__(db)

    @property
    def tenant_id(self) -> uuid.UUID:
        assert self._tenant_id is not None
        return self._tenant_id

    def _loaded(self, rows: list[Any]) -> None:
        # A tenant-owned row this scope loaded, and whose tenant_id as loaded is this tenant, may be
        # pointed at without asking the database again (the ingest worker points its events at the
        # session rows it has just locked).
        for row in rows:
            if isinstance(row, Scoped) and getattr(row, "tenant_id", None) == self._tenant_id:
                self._verified.setdefault(row.__tablename__, set()).add(row.id)  # type: ignore[attr-defined]

    def _column(self, model: type) -> Any:
        kind = _tenancy(model)
        if kind in ("owned", "linked"):
            return model.tenant_id  # type: ignore[attr-defined]
        if kind == "tenant":
            return model.id  # type: ignore[attr-defined]
        raise NotTenantOwned(f"{getattr(model, '__name__', model)} is not tenant data: "
                             "use PlatformScope for platform tables")

    def criterion(self, model: type) -> ColumnElement[bool]:
        return self._column(model) == self.tenant_id

    def tenant(self) -> Tenant:
        found = self.get(Tenant, self.tenant_id)
        if found is None:
            raise ScopeError(f"tenant {self.tenant_id} does not exist")
        return found

    # --- reads ---------------------------------------------------------------------------------

    def select(self, model: type[M], *where: Any) -> Select[tuple[M]]:
        """A SELECT of this tenant's rows; refine it further (order, limit, join) before running it."""
        return select(model).where(self.criterion(model), *where)

    def count(self, model: type, *where: Any) -> int:
        return int(self.scalar(select(func.count()).select_from(model).where(self.criterion(model), *where)))

    # --- writes --------------------------------------------------------------------------------

    def add(self, obj: M) -> M:
        """Add a new row for this tenant; its references must be this tenant's rows too."""
        model = type(obj)
        kind = _tenancy(model)
        if kind not in ("owned", "linked"):
            raise NotTenantOwned(f"{model.__name__} cannot be added by a tenant")
        current = obj.tenant_id  # type: ignore[attr-defined]
        if current is not None and _as_uuid(current) != self.tenant_id:
            raise CrossTenantError(f"{model.__name__} belongs to tenant {current}, not {self.tenant_id}")
        obj.tenant_id = self.tenant_id  # type: ignore[attr-defined]
        self._check_references(model, [_column_values(obj)])
        self._activate()
        self.db.add(obj)
        return obj

    def add_all(self, objs: Iterable[M]) -> list[M]:
        return [self.add(obj) for obj in objs]

    def insert_rows(self, model: type, rows: Sequence[dict[str, Any]], *,
                    ignore_duplicates: bool = False) -> int:
        """Insert plain rows in bulk (the fast path for ingest); ``ignore_duplicates`` skips rows that
        would break a unique key (an event stored once stays stored once).

        Returns the number of rows inserted (duplicates skipped are not counted). The tenant checks
        are those of ``add``, done for the whole set at once: every row is stamped with this tenant,
        a row naming another is refused, and each foreign key is checked in one query per column.

        On PostgreSQL the rows go by COPY into a temporary staging table and on with one
        ``INSERT ... SELECT`` (``_copy_insert``): per row that costs a fraction of an executemany's
        Python work, which was most of ingest's time. RLS checks the final INSERT as any other.
        Elsewhere (SQLite) it is one executemany; the count is the driver's rowcount, summed over
        the executemany, not a RETURNING (which makes SQLAlchemy render a giant multi-VALUES
        statement per batch).
        """
        if _tenancy(model) not in ("owned", "linked"):
            raise NotTenantOwned(f"{model.__name__} cannot be added by a tenant")
        if not rows:
            return 0
        stamped = []
        for row in rows:
            if row.get("tenant_id") not in (None, self.tenant_id, str(self.tenant_id)):
                raise CrossTenantError(f"a {model.__name__} row names tenant {row['tenant_id']}")
            stamped.append({**row, "tenant_id": self.tenant_id})
        self._check_references(model, stamped)
        table = model.__table__  # type: ignore[attr-defined]
        self._activate()
        connection = self.db.connection()
        dialect = connection.dialect.name
        if dialect == "postgresql":
            return _copy_insert(connection, table, stamped, ignore_duplicates, self._staged())
        # Python-side defaults (ids, timestamps) are filled in by SQLAlchemy for Core inserts too;
        # its JSON type serializes values itself, so text already serialized goes back to a value.
        stamped = [{k: json.loads(v) if type(v) is JsonText else v for k, v in row.items()}
                   for row in stamped]
        if ignore_duplicates and dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt: Any = sqlite_insert(table).on_conflict_do_nothing()
        else:
            stmt = insert(table)
        result = connection.execute(stmt.execution_options(preserve_rowcount=True), stamped)
        count = result.rowcount
        if count < 0:  # a driver that cannot count an executemany: refuse to guess
            raise ScopeError(f"the database driver did not report how many {model.__name__} rows it inserted")
        return count

    def _staged(self) -> set[str]:
        """Staging tables known to exist in this transaction (or savepoint): made again after any
        rollback, since a rollback takes a temporary table made in it away too."""
        transaction = self.db.get_nested_transaction() or self.db.get_transaction()
        memo = self.db.info.get(STAGED_KEY)
        if memo is None or memo[0] is not transaction:
            memo = (transaction, set())
            self.db.info[STAGED_KEY] = memo
        return memo[1]

    def update(self, model: type, where: Sequence[Any], values: dict[str, Any]) -> int:
        """UPDATE this tenant's rows matching ``where``; returns how many changed."""
        column = self._column(model)
        if _tenancy(model) == "tenant":
            if "id" in values or "status" in values:
                raise CrossTenantError("a tenant cannot change its own id or status")
        elif "tenant_id" in values and _as_uuid(values["tenant_id"]) != self.tenant_id:
            raise CrossTenantError(f"cannot move a {model.__name__} to another tenant")
        self._refuse_append_only(model)
        self._check_references(model, [values])
        stmt = update(model).where(column == self.tenant_id, *where).values(**values)
        return self.execute(stmt.execution_options(synchronize_session="fetch")).rowcount

    def delete(self, model: type, *where: Any) -> int:
        """DELETE this tenant's rows matching ``where``; returns how many went."""
        column = self._column(model)
        if _tenancy(model) == "tenant":
            raise CrossTenantError("a tenant cannot delete itself")
        self._refuse_append_only(model)
        stmt = delete(model).where(column == self.tenant_id, *where)
        return self.execute(stmt.execution_options(synchronize_session="fetch")).rowcount

    def remove(self, obj: Base) -> None:
        """Delete one loaded row, after checking it is this tenant's."""
        model = type(obj)
        self._refuse_append_only(model)
        if _tenancy(model) not in ("owned", "linked") or obj.tenant_id != self.tenant_id:  # type: ignore
            raise CrossTenantError(f"this {model.__name__} is not tenant {self.tenant_id}'s")
        self._activate()
        self.db.delete(obj)

    @staticmethod
    def _refuse_append_only(model: type) -> None:
        if getattr(model, "__append_only__", False):
            raise ScopeError(f"{model.__name__} is append-only")

    def _check_references(self, model: type, rows: Sequence[dict[str, Any]]) -> None:
        """Refuse rows whose foreign keys point at another tenant's rows (projects, devices, ...)."""
        table = model.__table__  # type: ignore[attr-defined]
        for fk in table.foreign_keys:
            column = fk.parent.name
            if column == "tenant_id":
                continue
            target = _model_for_table(fk.column.table.name)
            if target is None or _tenancy(target) not in ("owned", "linked"):
                continue
            verified = self._verified.setdefault(target.__tablename__, set())  # type: ignore[attr-defined]
            wanted = {_as_uuid(row[column]) for row in rows if row.get(column) is not None} - verified
            if not wanted:
                continue
            found = set(self.scalars(select(target.id).where(  # type: ignore[attr-defined]
                target.id.in_(wanted), target.tenant_id == self.tenant_id)))  # type: ignore[attr-defined]
            verified |= found
            if wanted - found:
                raise CrossTenantError(f"{model.__name__}.{column} points at a {target.__name__} "
                                       "that is not this tenant's")


class PlatformScope(_Scope):
    """The operator's view: every tenant's rows. For the operator portal and for system work that
    must find a tenant first (API key lookup, pairing, ingest). Each use should be deliberate."""

    _platform = True

    def select(self, model: type[M], *where: Any) -> Select[tuple[M]]:
        return select(model).where(*where)

    def add(self, obj: M) -> M:
        self._activate()
        self.db.add(obj)
        return obj

    def for_tenant(self, tenant_id: uuid.UUID | str) -> TenantScope:
        """Continue on the same session as one tenant (e.g. once an API key named its tenant)."""
        return TenantScope(self.db, tenant_id)


def _column_values(obj: Base) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key, None) for c in obj.__mapper__.column_attrs}


def _model_for_table(name: str) -> type | None:
    for mapper in Base.registry.mappers:
        if mapper.local_table.name == name:
            return mapper.class_
    return None


STAGE_PREFIX = "voxfleet_stage_"
STAGED_KEY = "voxfleet.staged"  # session.info: (transaction, staging tables made in it)


def _copy_insert(connection: Connection, table: Table, rows: Sequence[dict[str, Any]],
                 ignore_duplicates: bool, staged: set[str]) -> int:
    """PostgreSQL bulk insert: COPY into a temporary staging table, then one ``INSERT ... SELECT``.

    The staging table (``pg_temp.voxfleet_stage_<table>``, the target's columns, no constraints)
    belongs to the connection and to no tenant; it is made on first use, in the same transaction,
    so a rollback takes it away too and the next call makes it again. The INSERT empties it as it
    reads it (``DELETE ... RETURNING``), so two calls in one transaction never see each other's
    rows, and ``ON COMMIT DELETE ROWS`` leaves nothing behind. Values go through the columns' own
    bind processing (UTC timestamps, JSON) and Python-side defaults (ids, times) exactly as a
    SQLAlchemy insert would do it; the count is the INSERT's rowcount (duplicates not counted).
    """
    dialect = connection.dialect
    keys = {key for row in rows for key in row}
    unknown = keys - set(table.columns.keys())
    if unknown:  # as SQLAlchemy's insert would refuse them
        raise ScopeError(f"{table.name} has no column {', '.join(sorted(unknown))}")
    columns = [c for c in table.columns if c.key in keys or _python_default(c) is not None]
    every = {c.key for c in columns}
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    quote = dialect.identifier_preparer.quote
    target, stage = quote(table.name), f"pg_temp.{quote(STAGE_PREFIX + table.name)}"
    names = ", ".join(quote(c.name) for c in columns)
    if table.name not in staged:
        connection.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {target}) "
                                   "ON COMMIT DELETE ROWS")
        staged.add(table.name)
    plan = [(c.key, _python_default(c), _copy_processor(process))
            for c, process in zip(columns, processors, strict=True)]
    driver = connection.connection.driver_connection  # psycopg's, in this session's transaction
    sql = f"COPY {stage} ({names}) FROM STDIN"
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
            write = copy.write_row
            for row in rows:
                if row.keys() == every:  # every column given (ingest's rows): the short way
                    write([row[key] if process is None else process(row[key]) for key, _, process in plan])
                    continue
                values = []
                for key, default, process in plan:
                    value = row[key] if key in row else (default(None) if default is not None else None)
                    values.append(value if process is None else process(value))
                write(values)
    except dbapi_error as exc:
        # As SQLAlchemy reports a statement's failure (DataError, IntegrityError, OperationalError...):
        # ingest tells a refused message from a database that is down by those classes.
        raise DBAPIError.instance(sql, None, exc, dbapi_error,
                                  connection_invalidated=connection.dialect.is_disconnect(exc, driver, None)
                                  ) from exc
    conflict = " ON CONFLICT DO NOTHING" if ignore_duplicates else ""
    result = connection.exec_driver_sql(
        f"WITH staged AS (DELETE FROM {stage} RETURNING {names}) "
        f"INSERT INTO {target} ({names}) SELECT {names} FROM staged{conflict}")
    return int(result.rowcount)


class JsonText(str):
    """A JSON value already serialized (pydantic's ``model_dump_json``), for a JSON column of
    ``insert_rows``: stored as it is rather than serialized again. It must be valid JSON; the
    database parses it (PostgreSQL) or SQLAlchemy does (elsewhere)."""


def _copy_processor(process: Any) -> Any:
    """A column's bind processing for COPY: JsonText passes as the text it already is."""
    if process is None:
        return None

    def run(value: Any) -> Any:
        return value if type(value) is JsonText else process(value)

    return run


def _python_default(column: Any) -> Any:
    """The column's Python-side default as a one-argument callable (SQLAlchemy's form), or None."""
    default = column.default
    if default is None or default.is_sequence or default.is_clause_element:
        return None  # made by the database, not here
    if default.is_callable:
        return default.arg
    value = default.arg
    return lambda _context: value


# --- session hooks: the second layer -----------------------------------------------------------

def _scoped_mappers(state: ORMExecuteState) -> list[str]:
    return [m.class_.__name__ for m in state.all_mappers if _tenancy(m.class_)]


def _on_execute(state: ORMExecuteState) -> None:
    scope = state.session.info.get(SCOPE_KEY)
    if scope is None:
        touched = _scoped_mappers(state)
        if touched:
            raise ScopeError(f"{', '.join(touched)}: tenant data read or written without a scope; "
                             "use TenantScope or PlatformScope (cloud/scoping.py)")
        return
    tenant_id, platform = scope
    if platform or not (state.is_select or state.is_update or state.is_delete):
        return
    state.statement = state.statement.options(*_tenant_criteria(tenant_id))


@functools.lru_cache(maxsize=1024)
def _tenant_criteria(tenant_id: uuid.UUID) -> tuple[Any, ...]:
    """The loader criteria that confine ORM statements to one tenant, made once per tenant: building
    one per scoped model for every statement was a measurable share of ingest's time. The options
    are immutable; the same tuple serves every statement of that tenant."""
    return (*(with_loader_criteria(model, lambda cls: cls.tenant_id == tenant_id, include_aliases=True)
              for model in _scoped_models()),
            with_loader_criteria(Tenant, lambda cls: cls.id == tenant_id, include_aliases=True))


_SCOPED: list[type] = []


def _scoped_models() -> list[type]:
    # Per mapped class: a criterion on the Scoped mixin itself cannot be built (it maps no column).
    if not _SCOPED:
        _SCOPED.extend(m.class_ for m in Base.registry.mappers if issubclass(m.class_, Scoped))
    return _SCOPED


def _on_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    scope = session.info.get(SCOPE_KEY)
    for obj in (*session.new, *session.dirty, *session.deleted):
        kind = _tenancy(type(obj))
        if not kind:
            continue
        if scope is None:
            raise ScopeError(f"{type(obj).__name__} written without a scope; "
                             "use TenantScope or PlatformScope")
        tenant_id, platform = scope
        if platform:
            continue
        owner = obj.id if kind == "tenant" else obj.tenant_id
        if owner != tenant_id:
            raise CrossTenantError(f"{type(obj).__name__} of tenant {owner} "
                                   f"written in tenant {tenant_id}'s scope")


# Registered once, on the app's session class only.
if not event.contains(CloudSession, "do_orm_execute", _on_execute):
    event.listen(CloudSession, "do_orm_execute", _on_execute)
    event.listen(CloudSession, "before_flush", _on_flush)


def session_factory(engine: Engine) -> sessionmaker[CloudSession]:
    """Make every session through this: importing this module is what installs the scoping layer's
    checks on CloudSession, so a session made here can never skip them."""
    return sessionmaker(engine, class_=CloudSession, expire_on_commit=False)
