"""Hard stops for crash tests (R18): kill the process right after the k-th committed write.

Set ``CONTACT_SYNC_CRASH_AFTER_WRITES=k`` (and optionally ``CONTACT_SYNC_CRASH_SIDE=crm`` or
``outlook`` to count one side only) and the cycle SIGKILLs itself after the k-th write it
has committed, the way a power cut or an OOM kill would: no exception handler, no
``finally`` runs. Unset, this costs one dictionary lookup per write.
"""

from __future__ import annotations

import os
import signal
import threading

_ENV_AFTER = "CONTACT_SYNC_CRASH_AFTER_WRITES"
_ENV_SIDE = "CONTACT_SYNC_CRASH_SIDE"
_count = 0
_lock = threading.Lock()


def committed(side: str) -> None:
    """Count one committed write of ``side``; die hard when the configured count is reached."""
    global _count
    after = os.environ.get(_ENV_AFTER)
    if not after:
        return
    wanted = os.environ.get(_ENV_SIDE)
    if wanted and wanted != side:
        return
    with _lock:
        _count += 1
        if _count >= int(after):
            os.kill(os.getpid(), signal.SIGKILL)
