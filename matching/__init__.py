"""Pure, vectorised matching library for simrecon.

Every function here takes and returns Arrow (or pandas/numpy) columns. Nothing
in this package reads files, logs citizen data, or knows about Airflow: the
stages in ``pipelines`` do the I/O and call into it.
"""
