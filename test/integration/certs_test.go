package integration

import (
	"path/filepath"
	"testing"

	"stargate.io/stargate/pkg/pki"
)

// issueClientCert signs a client certificate for user in group with the
// standalone CA of dataDir and returns the certificate and key files.
func issueClientCert(t *testing.T, dataDir, user, group string) (certFile, keyFile string) {
	t.Helper()
	dir := filepath.Join(dataDir, "pki")
	ca, err := pki.EnsureCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	certFile, keyFile = filepath.Join(out, user+".crt"), filepath.Join(out, user+".key")
	if err := ca.ClientCert(certFile, keyFile, user, group); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
