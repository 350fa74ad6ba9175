#!/bin/sh
# Entrypoint of the shardrun worker images (workers/Dockerfile.rspec, workers/Dockerfile.pytest).
#
# Runs `shardrun worker` against the Redis in SHARDRUN_REDIS_URL for the project mounted at
# /project. There is deliberately no --run-id: the worker serves every run announced on that
# Redis, one batch at a time, so one pool of containers can serve many builds. Arguments
# given to the container are appended, e.g. `--run-id ID` (serve one run only), `--burst`
# (exit when the queue is empty) or `--worker-index 2` (TEST_ENV_NUMBER=2); click keeps the
# last value of an option given twice, so `--root DIR` here overrides /project. With
# SHARDRUN_WORKER_GROUP set (docker-compose.yml) and no index, shardrun takes the group's
# next number from Redis: each scaled container gets its own TEST_ENV_NUMBER.
#
# tini is PID 1 (see the Dockerfiles): it forwards SIGTERM from `docker stop` to shardrun and
# reaps the orphans a test process leaves behind. `exec` makes shardrun tini's direct child.
set -eu

if [ -z "${SHARDRUN_REDIS_URL:-}" ]; then
    echo "shardrun-entrypoint: error: SHARDRUN_REDIS_URL is not set; pass the Redis the" \
        "coordinator uses, e.g. -e SHARDRUN_REDIS_URL=redis://redis:6379/0" >&2
    exit 2
fi

exec shardrun worker --redis-url "$SHARDRUN_REDIS_URL" --root /project "$@"
