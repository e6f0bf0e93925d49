"""Marathon, in one adapter: everything oceand knows about Marathon lives in this package.

    client.py     MarathonClient: the REST calls (read apps, PUT a count, the event stream), URL rotation
    errors.py     MarathonError ─ Transient (─ Locked), Permanent (─ AppNotFound)
    model.py      AppState, Task: an app as Marathon describes it
    sse.py        SSEParser: the event stream's frames (used by the client)
    watcher.py    ClusterWatcher: the stream as cache invalidation of the watched apps (uses the client)
    attempts.py   Attempt, AttemptLog: each write recorded before it is sent
    actuation.py  the engine's seam: Actuator, AppView, Outcome, Settled, RecordingActuator
    apply.py      MarathonActuator, set_instances, settle: the bounded, retried write of one decision
    cluster.py    ClusterRuntime: client + watcher + actuator of one configured cluster; what its apps
                  do leaves through a callback

Dependencies point one way, down this list's reverse: model/errors/sse ← client ← watcher ← apply ←
cluster. Callers outside the package import from here.
"""

from actuators.marathon.actuation import Actuator, AppView, Outcome, RecordingActuator, Settled
from actuators.marathon.apply import APPLY_DEADLINE, MarathonActuator, set_instances, settle
from actuators.marathon.attempts import ABANDONED, APPLIED, FAILED, PENDING, Attempt, AttemptLog
from actuators.marathon.client import STREAM_OPENED, ClusterConfig, MarathonClient, ScaleResult, app_path
from actuators.marathon.cluster import AppChanged, ClusterRuntime, ClusterSettings, start_clusters
from actuators.marathon.errors import AppNotFound, Locked, MarathonError, Permanent, Transient
from actuators.marathon.model import AppState, Task, parse_time, task_endpoints
from actuators.marathon.watcher import ClusterWatcher

__all__ = [
    "ABANDONED",
    "APPLIED",
    "APPLY_DEADLINE",
    "FAILED",
    "PENDING",
    "STREAM_OPENED",
    "Actuator",
    "AppChanged",
    "AppNotFound",
    "AppState",
    "AppView",
    "Attempt",
    "AttemptLog",
    "ClusterConfig",
    "ClusterRuntime",
    "ClusterSettings",
    "ClusterWatcher",
    "Locked",
    "MarathonActuator",
    "MarathonClient",
    "MarathonError",
    "Outcome",
    "Permanent",
    "RecordingActuator",
    "ScaleResult",
    "Settled",
    "Task",
    "Transient",
    "app_path",
    "parse_time",
    "set_instances",
    "settle",
    "start_clusters",
    "task_endpoints",
]
