"""Reporting: results in, what people and tools read out.

`merge` makes one report from every batch (each test once, its earlier attempts kept);
`junit_reader` and `junit_writer` read and write JUnit XML; `summary` words the report for a
terminal; `runlog` records how the run went (`records`: that record as data, read back
checked) and `dashboard` turns the history into JSON and a page; `terminal` makes outside
text safe to print. Pure except for writing files.
"""
