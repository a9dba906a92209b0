"""Ctrl-C (or Jupyter's "interrupt the kernel") during training: finish the step, save a checkpoint, then stop.

A KeyboardInterrupt raised in the middle of a step could leave the weights half updated, so the first SIGINT only
sets a flag that the loop reads between steps; a second one interrupts at once, as Python does by default.
"""
import signal
import threading


class DeferredInterrupt:
    """While active, SIGINT sets `requested` instead of raising; `restore()` puts the previous handler back.
    Inactive (a no-op) off the main thread, where Python cannot install signal handlers, and when not `enabled`
    (several DDP processes could stop at different steps)."""

    def __init__(self, enabled: bool = True):
        self.requested = False
        self._previous = None
        if enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
