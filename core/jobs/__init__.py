"""The one job system: durable jobs in the database, run by `pacsdesk worker` (or the worker
that `pacsdesk serve` supervises), retried with back-off, visible on the Jobs page.

Packages register job kinds and periodic jobs in their ``init_app``
(``core.jobs.registry``), queue jobs in their own transactions (``core.jobs.queue``), and
the worker (``core.jobs.worker``) claims and runs them under a lease.
"""
