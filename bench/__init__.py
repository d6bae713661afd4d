"""Benchmarks, each runnable alone (``.venv/bin/python bench/pipeline.py``); see issue 7."""
