"""starlock-bootstrapper: initializes the first node or joins a node, exactly once per node.

The process is ``starlock-bootstrapper`` (:mod:`starlock.bootstrapper.cli`); the parts: the init
server, the join client, the rejoin and the recovery server, metadata providers, the LUKS2 and
file state disks, the ``kubeadm`` and ``local`` drivers (see the README).
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
