"""The benchmark scripts and the straightforward reference MoMoK (``reference.py``), importable as
``benchmarks.reference`` by the tests (the repository root is on pytest's ``pythonpath``)."""
