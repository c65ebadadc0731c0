"""starlock-joinservice: verifies joining nodes over aTLS and issues join and rejoin tickets.

``starlock-joinservice`` (:mod:`starlock.joinservice.cli`) is the process; the ticket logic is in
:mod:`starlock.joinservice.ticket` on adapters for the key service, Kubernetes and the cluster files.
"""

from starlock.joinservice.errors import BadRequest, Conflict, JoinServiceError, Unavailable
from starlock.joinservice.ticket import ClusterFiles, TicketIssuer

__all__ = ["BadRequest", "ClusterFiles", "Conflict", "JoinServiceError", "TicketIssuer", "Unavailable"]
