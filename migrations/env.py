"""Alembic environment for PACS Desk (run through `pacsdesk db ...`)."""

import logging

from alembic import context
from flask import current_app

from audit.trail.search_index import autogenerate_include as include_object

logger = logging.getLogger("alembic.env")
config = context.config


def get_engine():
    """The app's engine."""
    return current_app.extensions["migrate"].db.engine


def get_metadata():
    """The models' metadata."""
    return current_app.extensions["migrate"].db.metadata


def render_item(type_, obj, autogen_context):
    """Render the app's UTCDateTime as a plain timezone-aware DateTime."""
    if type_ == "type" and obj.__class__.__name__ == "UTCDateTime":
        return "sa.DateTime(timezone=True)"
    return False


config.set_main_option(
    "sqlalchemy.url", get_engine().url.render_as_string(hide_password=False).replace("%", "%%")
)


def run_migrations_offline():
    """Emit SQL without a database connection."""
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=get_metadata(), literal_binds=True,
                      render_as_batch=True, render_item=render_item,
                      include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations on the app's database."""

    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args.setdefault("render_as_batch", True)
    conf_args.setdefault("compare_type", True)
    conf_args.setdefault("include_object", include_object)
    with get_engine().connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite's batch mode rebuilds a table by copying it, which foreign keys pointing at it
            # would refuse; they are switched off (outside any transaction, as SQLite requires)
            # for the migration and checked once it is done.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        context.configure(connection=connection, target_metadata=get_metadata(),
                          render_item=render_item, **conf_args)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            broken = connection.connection.dbapi_connection.execute("PRAGMA foreign_key_check").fetchall()
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")
            if broken:
                raise RuntimeError(f"the migration left {len(broken)} rows whose foreign keys point nowhere")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
