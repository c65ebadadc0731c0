"""``starlock``: the operator's command line (``init``, ``verify``) for a Starlock cluster."""
