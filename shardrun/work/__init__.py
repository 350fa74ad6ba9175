"""The worker side: what happens between a batch leaving the queue and its result.

`rq_worker` is the RQ job function a worker runs for each batch; `worker` holds the
worker's context and runs a batch through `warm` (a runner process kept between batches)
or `process` (one process tree per batch, with its time limit); `accounting` settles each
batch test by test; `lifeline` ties child processes to their parent's life.
"""
