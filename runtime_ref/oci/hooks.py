"""OCI hooks: each runs with the container's state as JSON on its stdin.

Why here and not in the lifecycle: createContainer and startContainer hooks run
inside the container's init (after its mounts, and just before the user
program), where the host's Python tree may be out of reach: `preload` imports
what running them needs before the init is forked (only when there are hooks:
subprocess is a start-up cost every container without hooks would pay).
"""

from __future__ import annotations

from .. import jsonc as json
from ..errors import RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class HookError(RrefError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 1)


def preload(spec: dict[str, Any]) -> None:
    """Import what `run` needs if `spec` has hooks (before a fork that may pivot_root)."""
    if any((spec.get("hooks") or {}).values()):
        import subprocess  # noqa: F401


def run(spec: dict[str, Any], kind: str, state: dict[str, Any]) -> None:
    """Run every `kind` hook in order; the first that fails raises HookError."""
    hooks = (spec.get("hooks") or {}).get(kind) or []
    if not hooks:
        return
    import subprocess

    data = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        args = hook.get("args") or [hook["path"]]
        what = f"{kind} hook #{i} ({hook['path']})"
        try:
            p = subprocess.run(
                args,
                executable=hook["path"],
                input=data,
                env=dict(e.split("=", 1) for e in hook.get("env") or []),
                capture_output=True,
                timeout=hook.get("timeout"),
                close_fds=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise HookError(f"{what} timed out after {hook['timeout']}s") from None
        except OSError as e:
            raise HookError(f"{what}: {e.strerror}") from None
        if p.returncode != 0:
            tail = p.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            code = p.returncode if p.returncode >= 0 else f"signal {-p.returncode}"
            raise HookError(f"{what} failed (exit {code}) {tail[0]}".rstrip())


def run_all(spec: dict[str, Any], kind: str, state: dict[str, Any]) -> list[str]:
    """Run every `kind` hook even when one fails (poststart, poststop): the warnings."""
    warnings: list[str] = []
    for i, hook in enumerate((spec.get("hooks") or {}).get(kind) or []):
        one = {**spec, "hooks": {kind: [hook]}}
        try:
            run(one, kind, state)
        except HookError as e:
            warnings.append(str(e).replace(f"{kind} hook #0", f"{kind} hook #{i}", 1))
    return warnings
