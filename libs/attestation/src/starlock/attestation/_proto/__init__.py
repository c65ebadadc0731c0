"""Binary protobuf form of go-tpm-tools' ``attest.Attestation`` (private).

``tpm.proto`` and ``attest.proto`` declare the wire shape of the go-tpm-tools packages ``tpm``
and ``attest``; ``*_pb2.py``/``*_pb2.pyi`` are generated from them by ``scripts/genproto.py``
and never edited by hand. :mod:`.convert` maps the binary form to and from
:class:`starlock.attestation.document.Attestation`.
"""
