"""Imported last by the workers' fork server (``workers.PRELOAD``): moves every object
the imports made into the garbage collector's permanent generation (``gc.freeze``).

A worker is a fork of that server: without this, each of the worker's full collections
walks the ~300,000 objects of the stages, pandas and Great Expectations (~0.2 s each,
several per worker and task), objects that live as long as the worker and never become
garbage; walking them also writes to their pages, which fork then copies per worker.
This is what the ``gc`` documentation recommends for a process that forks workers.
"""

import gc

gc.freeze()
