"""Trusting a run's settings: a RunSpec signed with a shared secret, verified by workers.

Redis is a trust boundary (DESIGN.md rule 12): a batch's payload names tests, never what
to execute, since anyone who can write to the database could otherwise run commands on
every worker (a `command` template, an rspec `--require`). A worker runs a run's batches
with settings it trusts:

1. its own: the RunSpec the `shardrun run`/`ci` that started it passed in its environment
   (SPEC_VARIABLE), or the `shardrun worker --framework/--command/-- ARGS` command line;
2. else the run's published RunSpec, if it carries an HMAC-SHA256 of its canonical JSON
   under the secret in SECRET_VARIABLE, which the worker shares with the coordinator;
3. else none: the worker refuses the batch and says why (the coordinator reports it).

Pure apart from reading the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from shardrun.errors import ShardrunError
from shardrun.models import RunSpec

SECRET_VARIABLE = "SHARDRUN_SECRET"
SPEC_VARIABLE = "SHARDRUN_RUN_SPEC"


class UntrustedSpec(ShardrunError):
    """A worker has no settings it may run a batch with."""


def canonical(spec: RunSpec) -> bytes:
    """One byte string per spec: sorted keys, no spaces, UTF-8."""
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def signature(spec: RunSpec, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), canonical(spec), hashlib.sha256).hexdigest()


def published(spec: RunSpec, secret: str | None) -> dict[str, Any]:
    """The run meta's `spec` entry: the spec, signed when a secret is set."""
    entry: dict[str, Any] = {"settings": spec.to_dict()}
    if secret:
        entry["signature"] = signature(spec, secret)
    return entry


def verified(entry: Any, secret: str | None) -> RunSpec:
    """The published spec, if its signature holds under `secret`; UntrustedSpec says why
    not. Without a secret nothing published is trusted."""
    if not secret:
        raise UntrustedSpec(
            f"this worker has no settings of its own and no {SECRET_VARIABLE} to verify the "
            f"run's: give it --framework (and --command or -- ARGS), or set "
            f"{SECRET_VARIABLE} to the same value for the coordinator and the workers")
    if not isinstance(entry, Mapping) or not isinstance(entry.get("settings"), Mapping):
        raise UntrustedSpec("the run published no settings")
    try:
        spec = RunSpec.from_dict(dict(entry["settings"]))
    except (TypeError, ValueError) as error:
        raise UntrustedSpec(f"the run's settings are malformed ({error})") from None
    given = entry.get("signature")
    if not isinstance(given, str) or not hmac.compare_digest(given, signature(spec, secret)):
        raise UntrustedSpec(f"the run's settings are not signed with this worker's "
                            f"{SECRET_VARIABLE}: refusing to run them")
    return spec


def secret_from_environment() -> str | None:
    return os.environ.get(SECRET_VARIABLE) or None


def own_spec_from_environment() -> RunSpec | None:
    """The spec a local worker's parent passed it (and no test process inherits)."""
    text = os.environ.pop(SPEC_VARIABLE, None)
    if not text:
        return None
    return RunSpec.from_dict(json.loads(text))
