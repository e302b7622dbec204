package server

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"stargate.io/stargate/pkg/pki"
)

// standalonePKI is the certificate authority of a standalone server and the
// certificates it signs: the serving certificate and the admin client
// certificate in the written kubeconfig. Created once in <data-dir>/pki and
// reused, so kubeconfigs stay valid across restarts.
type standalonePKI struct {
	Dir string
}

const (
	// AdminUser is the identity of the standalone admin client certificate.
	AdminUser = "stargate-admin"
	// MastersGroup is the only group a standalone server authorizes.
	MastersGroup = "system:masters"
)

func (p standalonePKI) CACert() string      { return filepath.Join(p.Dir, "ca.crt") }
func (p standalonePKI) CAKey() string       { return filepath.Join(p.Dir, "ca.key") }
func (p standalonePKI) ServingCert() string { return filepath.Join(p.Dir, "serving.crt") }
func (p standalonePKI) ServingKey() string  { return filepath.Join(p.Dir, "serving.key") }
func (p standalonePKI) AdminCert() string   { return filepath.Join(p.Dir, "admin.crt") }
func (p standalonePKI) AdminKey() string    { return filepath.Join(p.Dir, "admin.key") }

// Ensure creates whatever is missing. The serving certificate is valid for
// localhost, 127.0.0.1 and the given extra names and addresses.
func (p standalonePKI) Ensure(dnsNames []string, ips []net.IP) error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	ca, err := pki.EnsureCA(p.CACert(), p.CAKey(), "stargate-standalone-ca")
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "stargate-apiserver"},
		DNSNames:    append([]string{"localhost"}, dnsNames...),
		IPAddresses: append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if err := ca.EnsureLeaf(p.ServingCert(), p.ServingKey(), serving); err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	if err := ca.ClientCert(p.AdminCert(), p.AdminKey(), AdminUser, MastersGroup); err != nil {
		return fmt.Errorf("admin client certificate: %w", err)
	}
	return nil
}
