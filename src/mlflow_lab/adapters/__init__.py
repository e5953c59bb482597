"""The one place each library's private names are used: one module per library.

Everything the lab needs from MLServer or MLflow that they offer no public way to do goes
through mlserver_internals or mlflow_internals. tests/unit/test_library_contracts.py checks
each of those names against the locked versions, so an upgrade that moves one fails there, by
name; tests/static/test_library_internals.py keeps the names out of every other module.
"""
