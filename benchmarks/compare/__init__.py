"""benchmarks/compare_peers.py in parts: `servers` installs and starts the servers under test
(jobwire, Node socket.io, python-socketio) and Redis, `clients` connects the WebSocket readers
and tallies what they receive, `publishers` produces each load, `runs` measures one run and
`report` turns the runs into the result record, the table and the verdicts."""
