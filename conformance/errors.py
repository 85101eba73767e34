"""Exceptions that decide a test's verdict.

Why: the plugin maps a test outcome to pass/fail/broken/unsupported by exception type, so
adapters and helpers raise these instead of generic errors:

* `RuntimeFailure` -- the runtime under test misbehaved or could not do what was asked
  (start a container, exec, remove...). Verdict: fail, with the runtime's message.
* `Unsupported` -- the adapter or host cannot express what a test asks for. Verdict:
  unsupported, with the reason.
* anything else raised by harness code -- verdict: broken.
"""

from __future__ import annotations


class RuntimeFailure(AssertionError):
    """The runtime under test failed an operation; the message carries its own error text.

    An AssertionError subclass so plain pytest (without the plugin) also reports a failure.
    """


class RuntimeTimeout(RuntimeFailure):
    """A runtime command did not finish in time (the process group was killed)."""


class Unsupported(Exception):
    """The adapter or host cannot do what a test asks. ``reason`` says what is missing;
    ``str()`` is ``unsupported: <reason>``, the text the report shows. The verdict comes
    from the type, never from that text."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"unsupported: {reason}")
