"""A whole i2v cluster on this machine (`i2v up`, `i2v down`): etcd, coordinators, nodes and
Prometheus started as subprocesses from the installed console scripts, never imported.

`plan.py` and `report.py` decide (pure); `detect.py` finds the host's facts, `launch.py` starts,
waits and stops, `state.py` keeps the record in the state dir, `commands.py` is the CLI."""
