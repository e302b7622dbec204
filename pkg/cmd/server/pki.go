package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
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

	certValidity = 5 * 365 * 24 * time.Hour
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
	caCert, caKey, err := p.ensureCA()
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "stargate-apiserver"},
		DNSNames:    append([]string{"localhost"}, dnsNames...),
		IPAddresses: append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if err := p.ensureLeaf(p.ServingCert(), p.ServingKey(), serving, caCert, caKey); err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	admin := &x509.Certificate{
		Subject:     pkix.Name{CommonName: AdminUser, Organization: []string{MastersGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := p.ensureLeaf(p.AdminCert(), p.AdminKey(), admin, caCert, caKey); err != nil {
		return fmt.Errorf("admin client certificate: %w", err)
	}
	return nil
}

func (p standalonePKI) ensureCA() (*x509.Certificate, crypto.Signer, error) {
	if exists(p.CACert()) && exists(p.CAKey()) {
		return loadPair(p.CACert(), p.CAKey())
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "stargate-standalone-ca"}, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(p.CACert(), p.CAKey(), cert.Raw, key); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// ensureLeaf keeps an existing certificate that the CA signed, and issues a
// new one otherwise.
func (p standalonePKI) ensureLeaf(certFile, keyFile string, tmpl, ca *x509.Certificate, caKey crypto.Signer) error {
	if exists(certFile) && exists(keyFile) {
		if cert, _, err := loadPair(certFile, keyFile); err == nil && cert.CheckSignatureFrom(ca) == nil &&
			time.Now().Before(cert.NotAfter) && coversNames(cert, tmpl) {
			return nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour).UTC()
	tmpl.NotAfter = time.Now().Add(certValidity).UTC()
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	return writePair(certFile, keyFile, der, key)
}

func coversNames(cert, want *x509.Certificate) bool {
	for _, name := range want.DNSNames {
		if cert.VerifyHostname(name) != nil {
			return false
		}
	}
	for _, ip := range want.IPAddresses {
		if cert.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	return true
}

func loadPair(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	certs, err := certutil.CertsFromFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := keyutil.PrivateKeyFromFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New(keyFile + " does not hold a signing key")
	}
	return certs[0], signer, nil
}

func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := keyutil.WriteKey(keyFile, pemBlock(keyutil.ECPrivateKeyBlockType, keyDER)); err != nil {
		return err
	}
	return certutil.WriteCert(certFile, pemBlock(certutil.CertificateBlockType, der))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func pemBlock(blockType string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
}
