// Command gencerts issues a CA and a serving certificate for Stargate's
// Service (<service>.<namespace>.svc) and writes, next to them, a kustomize
// overlay of artifacts/deploy/base that puts the certificate in the
// stargate-serving-cert Secret and the CA in the APIService's caBundle.
// hack/gen-certs.sh runs it; `kubectl apply -k <out>` deploys.
package main

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"stargate.io/stargate/pkg/pki"
)

func main() {
	out := flag.String("out", ".stargate/deploy", "directory for the certificates and the overlay")
	base := flag.String("base", "artifacts/deploy/base", "the kustomize base the overlay builds on")
	service := flag.String("service", "stargate", "name of Stargate's Service")
	namespace := flag.String("namespace", "stargate-system", "namespace of Stargate's Service")
	flag.Parse()
	if err := run(*out, *base, *service, *namespace); err != nil {
		fmt.Fprintln(os.Stderr, "gencerts:", err)
		os.Exit(1)
	}
}

func run(out, base, service, namespace string) error {
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	ca, err := pki.EnsureCA(filepath.Join(out, "ca.crt"), filepath.Join(out, "ca.key"), "stargate-ca")
	if err != nil {
		return err
	}
	host := service + "." + namespace + ".svc"
	if err := ca.EnsureLeaf(filepath.Join(out, "tls.crt"), filepath.Join(out, "tls.key"), &x509.Certificate{
		Subject:     pkix.Name{CommonName: host},
		DNSNames:    []string{host, host + ".cluster.local"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return err
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	absBase, err := filepath.Abs(base)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(absOut, absBase)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		return err
	}
	kustomization := fmt.Sprintf(`# Written by hack/gen-certs.sh: the base with its serving certificate.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
secretGenerator:
  - name: stargate-serving-cert
    namespace: %s
    type: kubernetes.io/tls
    files:
      - tls.crt
      - tls.key
    options:
      disableNameSuffixHash: true
patches:
  - target:
      kind: APIService
      name: v1alpha1.stargate.io
    patch: |-
      - op: add
        path: /spec/caBundle
        value: %s
`, rel, namespace, base64.StdEncoding.EncodeToString(caPEM))
	if err := os.WriteFile(filepath.Join(out, "kustomization.yaml"), []byte(kustomization), 0o600); err != nil {
		return err
	}
	fmt.Printf("wrote %s: kubectl apply -k %s\n", out, out)
	return nil
}
