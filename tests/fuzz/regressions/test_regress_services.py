"""Crashes of the join and init request targets, as minimal reproducers.

Each test fails until the fix its docstring names is made (the file is outside this harness).
"""

from __future__ import annotations


def test_init_too_many_cert_sans_is_refused_before_the_node_lock() -> None:
    """Found by target init_request (its "no failure after the node lock" invariant): an InitRequest
    with the right init secret and 256 ``apiserver_cert_sans`` passes every check before the node
    lock; after it, ``ssh.install_ca_and_host_certificate`` gets 1 + 256 principals and
    cryptography's ``SSHCertificateBuilder.valid_principals`` raises ``ValueError`` (at most 256).
    The node is then locked to the cluster ID with nothing initialized (``fatal_error`` set): an
    unusable node from a malformed request.

    Fix (services/bootstrapper/src/starlock/bootstrapper/initserver.py, ``InitServer._init``,
    before ``self._lock.try_lock_once``): build ``principals = [*self._principals(),
    *req.apiserver_cert_sans]`` there, and if ``len(principals) > 256`` raise
    ``InitFailed(grpc.StatusCode.INVALID_ARGUMENT, "apiserver_cert_sans: at most 256 SSH principals
    in all")``; pass ``principals`` to ``_bootstrap`` instead of rebuilding it.
    """
    import targets_services

    from starlock.bootstrapper.initserver import InitFailed
    from starlock.joinproto import init_pb2

    one = targets_services.build_init_request()
    request = init_pb2.InitRequest.FromString(targets_services.init_seeds()[0])
    one(request.SerializeToString())  # the seed itself initializes the node

    request.apiserver_cert_sans.extend(["san"] * 256)
    try:
        one(request.SerializeToString())
    except InitFailed as exc:  # refused before the lock: the behaviour the fix gives
        assert exc.code.name == "INVALID_ARGUMENT", exc.code


def test_init_secret_longer_than_72_bytes_is_a_typed_refusal() -> None:
    """Found by target init_request (crash input: an InitRequest whose init_secret is 120 bytes):
    ``InitServer._init`` accepts init secrets up to ``MAX_INIT_SECRET`` = 1024 bytes and passes them
    to ``bcrypt.checkpw``, which (bcrypt >= 4.1/5) raises ``ValueError: password cannot be longer
    than 72 bytes``. Any unauthenticated caller of ``/init.API/Init`` gets an unhandled exception
    (gRPC UNKNOWN) instead of PERMISSION_DENIED.

    Fix (services/bootstrapper/src/starlock/bootstrapper/initserver.py): set ``MAX_INIT_SECRET = 72``
    (bcrypt's input limit; Go's ``bcrypt.GenerateFromPassword`` refuses longer secrets, so no valid
    hash exists for one), so line 151 refuses it before ``checkpw`` with
    ``InitFailed(PERMISSION_DENIED, "invalid init secret")``.
    """
    import targets_services

    from starlock.bootstrapper.initserver import InitFailed
    from starlock.joinproto import init_pb2

    one = targets_services.build_init_request()
    request = init_pb2.InitRequest.FromString(targets_services.init_seeds()[0])
    request.init_secret = b"x" * 73
    try:
        one(request.SerializeToString())
    except InitFailed as exc:
        assert exc.code.name == "PERMISSION_DENIED", exc.code
    else:
        raise AssertionError("a wrong init secret initialized the node")
