"""Benchmarks: promptkit against openai-python and a single-thread floor, on a local server.

Run ``python -m benchmarks`` (or ``python benchmarks/run.py``) from the
repository root; ``--quick`` for a few-second smoke run, ``--profile`` to
also profile promptkit's per-chunk path. Needs the ``bench`` extra
(openai, matplotlib, psutil). See ``benchmarks/README.md``.
"""
