"""The command line: click commands, the only place that prints for humans or exits.

`main` is the `shardrun` group and its small commands, `run` the `run` and `ci` commands,
`worker` the `worker` command (importable alone so local workers start fast), `options` the
options they share.
"""
