"""pytest (nbval) on the chapters alone, e.g. ``pytest book/09_scaling_up.ipynb``: tiny mode.

The committed outputs are tiny-mode outputs, so nbval must compare against a tiny-mode run even on
a machine with a GPU and the real weights (``ivlite.book.run_mode``). The kernels inherit this.
"""

import os

os.environ.setdefault("IVLITE_BOOK_MODE", "tiny")
# The chapters' outputs were executed with one thread; float sums in another order could change
# the last printed digits after a training run, so the nbval kernels use one thread too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
