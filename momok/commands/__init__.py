"""The ``momok train`` and ``momok evaluate`` commands: argument parsing over :mod:`momok.training` and
:mod:`momok.assembly` (the other commands live beside the module that does their job)."""
