"""Planning: gather the inputs of a plan, then compute it.

Gathering reads the checkout and the outside world: `discovery` finds the test files,
`history` keeps the timing history on disk, `imports` reads timing files other tools wrote,
`splitting` lists the examples of files too long for one batch. Computing is pure:
`timings` estimates each unit, `planner` splits the units into shards (LPT), `batching`
cuts the queue's batches. Nothing here talks to Redis or runs a test.
"""
