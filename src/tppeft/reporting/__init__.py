"""Reporting: a finished comparison's summary as text, Markdown/HTML reports and figures.

``stats`` (bootstrap intervals, paired differences, sign test) -> ``report`` (the verdict, tables and the report
files, built from ``summary.json`` and the runs' metrics lines, never from live objects) with ``document`` (a small
Markdown/HTML block model) and ``plots`` (the figures); ``compare`` puts several run folders in one table.
"""
