// Package pki creates the certificate authorities, certificates and keys
// Stargate needs on disk: the standalone server's own PKI, the end-to-end
// test cluster's, and hack/gen-certs.sh's serving certificates for a deploy.
// Everything is created once and reused: a file that is still valid is kept.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// Validity is how long the certificates issued here are valid.
const Validity = 5 * 365 * 24 * time.Hour

// CA is a certificate authority with its signing key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertFile is where the CA certificate is (a caBundle, --client-ca-file).
	CertFile string
}

// EnsureCA loads the CA in certFile/keyFile, or creates a self-signed one
// named commonName there.
func EnsureCA(certFile, keyFile, commonName string) (*CA, error) {
	if exists(certFile) && exists(keyFile) {
		cert, key, err := LoadPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		return &CA{Cert: cert, Key: key, CertFile: certFile}, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: commonName}, key)
	if err != nil {
		return nil, err
	}
	if err := writePair(certFile, keyFile, cert.Raw, key); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertFile: certFile}, nil
}

// EnsureLeaf keeps a certificate in certFile that this CA signed, is still
// valid and covers tmpl's names; otherwise it issues one from tmpl (subject,
// names, extended key usages) with a new key.
func (ca *CA) EnsureLeaf(certFile, keyFile string, tmpl *x509.Certificate) error {
	if exists(certFile) && exists(keyFile) {
		if cert, _, err := LoadPair(certFile, keyFile); err == nil && cert.CheckSignatureFrom(ca.Cert) == nil &&
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
	tmpl.NotAfter = time.Now().Add(Validity).UTC()
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return err
	}
	return writePair(certFile, keyFile, der, key)
}

// ClientCert issues (or keeps) a client certificate for user in groups.
func (ca *CA) ClientCert(certFile, keyFile, user string, groups ...string) error {
	return ca.EnsureLeaf(certFile, keyFile, &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// EnsureKey writes a private key (ECDSA P-256, PEM) to keyFile unless one is there.
func EnsureKey(keyFile string) error {
	if exists(keyFile) {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return err
	}
	return keyutil.WriteKey(keyFile, pemBlock(keyutil.ECPrivateKeyBlockType, der))
}

// LoadPair reads a certificate and its private key.
func LoadPair(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
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
	return cert.Subject.CommonName == want.Subject.CommonName
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
