"""starlock-bootstrapper: initializes the first node or joins a node, exactly once per node.

Status: the init server, the node state, the cleaner, the file-backed state disk and the
``local`` driver exist; the join client, the rejoin, the LUKS2 disk, the ``kubeadm`` driver and
the process entry point do not yet (see the README).
"""

from starlock.bootstrapper.cleaner import Cleaner
from starlock.bootstrapper.initserver import InitParams, InitServer
from starlock.bootstrapper.nodestate import NodeState, Role, read_node_state, write_node_state
from starlock.bootstrapper.statedisk import FileStateDisk, StateDisk, StateDiskError

__all__ = [
    "Cleaner",
    "FileStateDisk",
    "InitParams",
    "InitServer",
    "NodeState",
    "Role",
    "StateDisk",
    "StateDiskError",
    "read_node_state",
    "write_node_state",
]
