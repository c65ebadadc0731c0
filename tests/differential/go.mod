module github.com/starlock/starlock/tests/differential

go 1.26

// Starlock's differential harness (test tooling only; nothing built here ships).
// The pins are Constellation v2's (its go.mod at 7cb5b83b): go-sev-guest v0.14.1 replaced by
// Edgeless' fork d85b756e97f2, go-tpm-tools v0.4.6, go-tpm v0.9.8, and the indirect go-eventlog,
// go-attestation and go-tdx-guest at Constellation's versions, so the harness runs the very
// verify/validate/VerifyAttestation code Constellation runs.
replace github.com/google/go-sev-guest => github.com/edgelesssys/go-sev-guest v0.0.0-20250811150530-d85b756e97f2

require (
	github.com/google/go-sev-guest v0.14.1
	github.com/google/go-tpm v0.9.8
	github.com/google/go-tpm-tools v0.4.6
	google.golang.org/protobuf v1.35.1
)

require (
	github.com/google/certificate-transparency-go v1.1.2 // indirect
	github.com/google/go-attestation v0.5.1 // indirect
	github.com/google/go-configfs-tsm v0.3.3-0.20240919001351-b4b5b84fdcbc // indirect
	github.com/google/go-eventlog v0.0.2-0.20241213203620-f921bdc3aeb0 // indirect
	github.com/google/go-tdx-guest v0.3.2-0.20260104162950-32866d7a678f // indirect
	github.com/google/go-tspi v0.3.0 // indirect
	github.com/google/logger v1.1.1 // indirect
	github.com/google/uuid v1.6.0 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	golang.org/x/crypto v0.31.0 // indirect
	golang.org/x/sys v0.28.0 // indirect
)
