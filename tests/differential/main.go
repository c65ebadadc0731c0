// Command differential runs Google's go-sev-guest (verify + validate) and go-tpm-tools
// (server.VerifyAttestation) on evidence given as JSON lines on stdin, one case per line, and
// prints one JSON verdict per line: {"id", "accept", "stage", "reason"}.
//
// Test tooling for Starlock's differential tests (tests/differential); nothing here ships.
// An SNP case mirrors Constellation's use of go-sev-guest: the ARK given is the trusted root,
// the ASK/ASVK given is the product's signing key, no network, no revocation check.
package main

import (
	"bufio"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"
)

type snpPolicy struct {
	ReportData        string   `json:"report_data"`
	Measurement       string   `json:"measurement"`
	HostData          string   `json:"host_data"`
	VMPL              *int     `json:"vmpl"`
	MinLaunchTCB      *[4]int  `json:"min_launch_tcb"`
	MinTCB            *[4]int  `json:"min_tcb"`
	Debug             bool     `json:"debug"`
	SMT               bool     `json:"smt"`
	MigrateMA         bool     `json:"migrate_ma"`
	CXL               bool     `json:"cxl"`
	ABI               [2]uint8 `json:"abi"`
	PermitProvisional bool     `json:"permit_provisional"`
	IDKeyHashes       []string `json:"id_key_hashes"`
	MinGuestSVN       uint32   `json:"min_guest_svn"`
}

type request struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// snp
	Report  []byte    `json:"report"`
	Signer  []byte    `json:"signer"`
	Chain   [][]byte  `json:"chain"`
	Ark     []byte    `json:"ark"`
	Product string    `json:"product"`
	Now     string    `json:"now"`
	Policy  snpPolicy `json:"policy"`
	// tpm
	Attestation   []byte   `json:"attestation"`
	Nonce         []byte   `json:"nonce"`
	TrustedAKs    [][]byte `json:"trusted_aks"`
	Roots         [][]byte `json:"roots"`
	Intermediates [][]byte `json:"intermediates"`
	AllowSHA1     bool     `json:"allow_sha1"`
}

type verdict struct {
	ID     string `json:"id"`
	Accept bool   `json:"accept"`
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
}

func unhex(name, value string) ([]byte, error) {
	if value == "" {
		return nil, nil
	}
	out, err := hex.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %v", name, err)
	}
	return out, nil
}

func tcbParts(v *[4]int) kds.TCBParts {
	if v == nil {
		return kds.TCBParts{}
	}
	return kds.TCBParts{BlSpl: uint8(v[0]), TeeSpl: uint8(v[1]), SnpSpl: uint8(v[2]), UcodeSpl: uint8(v[3])}
}

var productNames = map[string]spb.SevProduct_SevProductName{
	"Milan": spb.SevProduct_SEV_PRODUCT_MILAN,
	"Genoa": spb.SevProduct_SEV_PRODUCT_GENOA,
	"Turin": spb.SevProduct_SEV_PRODUCT_TURIN,
}

func runSNP(r *request) verdict {
	fail := func(stage string, err error) verdict { return verdict{ID: r.ID, Stage: stage, Reason: err.Error()} }
	now, err := time.Parse(time.RFC3339, r.Now)
	if err != nil {
		return fail("input", err)
	}
	ark, err := x509.ParseCertificate(r.Ark)
	if err != nil {
		return fail("input", fmt.Errorf("trusted ARK: %v", err))
	}
	name, ok := productNames[r.Product]
	if !ok {
		return fail("input", fmt.Errorf("unknown product %q", r.Product))
	}
	report, err := abi.ReportToProto(r.Report)
	if err != nil {
		return fail("parse", err)
	}
	info, err := abi.ParseSignerInfo(report.GetSignerInfo())
	if err != nil {
		return fail("parse", err)
	}
	chain := &spb.CertificateChain{}
	if info.SigningKey == abi.VlekReportSigner {
		chain.VlekCert = r.Signer
	} else {
		chain.VcekCert = r.Signer
	}
	certs := &trust.ProductCerts{Ark: ark}
	// Like Constellation's ParseCertChain (internal/attestation/snp): each certificate of the
	// issuer's chain is classified by subject CN; SEV-<Line> / SEV-VLEK-<Line> is the ASK, an
	// ARK-<Line> is ignored (the ARK is the configured root), anything else is an error. There is no
	// KDS fallback here, so a chain without a usable ASK fails.
	for i, raw := range r.Chain {
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return fail("chain", fmt.Errorf("chain certificate %d: %v", i, err))
		}
		switch cert.Subject.CommonName {
		case "SEV-" + r.Product, "SEV-VLEK-" + r.Product:
			if certs.Ask == nil {
				certs.Ask, certs.Asvk = cert, cert
			}
		case "ARK-" + r.Product:
		default:
			return fail("chain", fmt.Errorf("chain certificate %d: unexpected subject CN %q", i, cert.Subject.CommonName))
		}
	}
	if certs.Ask == nil {
		return fail("chain", fmt.Errorf("no ASK/ASVK in the chain"))
	}
	att := &spb.Attestation{Report: report, CertificateChain: chain, Product: &spb.SevProduct{Name: name}}
	vopts := &verify.Options{
		DisableCertFetching: true,
		Now:                 now,
		Product:             &spb.SevProduct{Name: name},
		TrustedRoots: map[string][]*trust.AMDRootCerts{
			r.Product: {{Product: r.Product, ProductLine: r.Product, ProductCerts: certs}},
		},
	}
	if err := verify.SnpAttestation(att, vopts); err != nil {
		return fail("verify", err)
	}
	p := r.Policy
	vals := map[string][]byte{}
	for k, v := range map[string]string{"report_data": p.ReportData, "measurement": p.Measurement, "host_data": p.HostData} {
		b, err := unhex(k, v)
		if err != nil {
			return fail("input", err)
		}
		vals[k] = b
	}
	var idHashes [][]byte
	if p.IDKeyHashes != nil {
		idHashes = [][]byte{}
	}
	for _, h := range p.IDKeyHashes {
		b, err := unhex("id_key_hashes", h)
		if err != nil {
			return fail("input", err)
		}
		idHashes = append(idHashes, b)
	}
	opts := &validate.Options{
		GuestPolicy: abi.SnpPolicy{
			Debug: p.Debug, SMT: p.SMT, MigrateMA: p.MigrateMA, CXLAllowed: p.CXL,
			ABIMajor: p.ABI[0], ABIMinor: p.ABI[1],
		},
		MinimumGuestSvn:           p.MinGuestSVN,
		ReportData:                vals["report_data"],
		Measurement:               vals["measurement"],
		HostData:                  vals["host_data"],
		VMPL:                      p.VMPL,
		MinimumLaunchTCB:          tcbParts(p.MinLaunchTCB),
		MinimumTCB:                tcbParts(p.MinTCB),
		PermitProvisionalFirmware: p.PermitProvisional,
	}
	if idHashes != nil {
		opts.RequireIDBlock = true
		opts.TrustedIDKeyHashes = idHashes
	}
	if err := validate.SnpAttestation(att, opts); err != nil {
		return fail("validate", err)
	}
	return verdict{ID: r.ID, Accept: true, Stage: "accept"}
}

func runTPM(r *request) verdict {
	fail := func(stage string, err error) verdict { return verdict{ID: r.ID, Stage: stage, Reason: err.Error()} }
	att := &attest.Attestation{}
	if err := proto.Unmarshal(r.Attestation, att); err != nil {
		return fail("parse", err)
	}
	opts := server.VerifyOpts{Nonce: r.Nonce, AllowSHA1: r.AllowSHA1}
	for _, raw := range r.TrustedAKs {
		pub, err := tpm2.DecodePublic(raw)
		if err != nil {
			return fail("input", fmt.Errorf("trusted AK: %v", err))
		}
		key, err := pub.Key()
		if err != nil {
			return fail("input", fmt.Errorf("trusted AK key: %v", err))
		}
		opts.TrustedAKs = append(opts.TrustedAKs, crypto.PublicKey(key))
	}
	for _, raw := range r.Roots {
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return fail("input", fmt.Errorf("root: %v", err))
		}
		opts.TrustedRootCerts = append(opts.TrustedRootCerts, cert)
	}
	for _, raw := range r.Intermediates {
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return fail("input", fmt.Errorf("intermediate: %v", err))
		}
		opts.IntermediateCerts = append(opts.IntermediateCerts, cert)
	}
	if _, err := server.VerifyAttestation(att, opts); err != nil {
		return fail("verify", err)
	}
	return verdict{ID: r.ID, Accept: true, Stage: "accept"}
}

func run(line []byte) (v verdict) {
	var r request
	if err := json.Unmarshal(line, &r); err != nil {
		return verdict{Stage: "input", Reason: "bad request line: " + err.Error()}
	}
	defer func() {
		if p := recover(); p != nil {
			v = verdict{ID: r.ID, Stage: "panic", Reason: fmt.Sprint(p)}
		}
	}()
	switch r.Kind {
	case "snp":
		return runSNP(&r)
	case "tpm":
		return runTPM(&r)
	}
	return verdict{ID: r.ID, Stage: "input", Reason: fmt.Sprintf("unknown kind %q", r.Kind)}
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 1 {
			if encErr := enc.Encode(run(line)); encErr != nil {
				fmt.Fprintln(os.Stderr, "differential:", encErr)
				os.Exit(2)
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "differential:", err)
			os.Exit(2)
		}
	}
}
