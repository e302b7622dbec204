package dcclients

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
)

// tokenServer is a datacenter on 127.0.0.1 that accepts one bearer token.
type tokenServer struct {
	url string
	mu  sync.Mutex
	ok  string
}

func newTokenServer(t *testing.T, token string) *tokenServer {
	t.Helper()
	s := &tokenServer{ok: token}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+s.ok {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"code":401,"message":"a valid bearer token is required"}`))
			return
		}
		w.Write([]byte(`{"mac":"aa:bb:cc:dd:ee:01","state":"ready"}`))
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *tokenServer) accept(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok = token
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Credentials added after the first call, then rotated, are used by the
// client already handed out; a refused token names the file to fix.
func TestCredentialsAddedLateAndRotated(t *testing.T) {
	ctx := context.Background()
	srv := newTokenServer(t, "token-1")
	dir := t.TempDir()
	file := CredentialsFile(dir, "dc-west")
	if file != filepath.Join(dir, "dc-west") {
		t.Fatalf("CredentialsFile = %s", file)
	}
	clientFor := HTTPClients(dir)
	dc := &v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-west"}, Spec: v1alpha1.DatacenterSpec{Endpoint: srv.url}}
	lookup := func() (datacenter.Client, error) {
		t.Helper()
		c, err := clientFor(dc)
		if err != nil {
			t.Fatalf("a client of %s: %v", srv.url, err)
		}
		_, err = c.GetMachine(ctx, "aa:bb:cc:dd:ee:01")
		return c, err
	}

	first, err := lookup()
	if ce, ok := datacenter.IsCredentials(err); !ok || !ce.Missing || ce.File != file || !strings.Contains(err.Error(), file) {
		t.Fatalf("before the file exists: %v, want a CredentialsError (Missing) naming %s", err, file)
	}

	writeFile(t, file, "token-1\n")
	c, err := lookup()
	if err != nil {
		t.Fatalf("after the file appeared: %v", err)
	}
	if c != first {
		t.Error("the client was rebuilt; the one handed out first must pick the file up")
	}

	srv.accept("token-2")
	writeFile(t, file, "token-2\n")
	if _, err := lookup(); err != nil {
		t.Fatalf("after rotation: %v", err)
	}

	srv.accept("token-3")
	_, err = lookup()
	if ce, ok := datacenter.IsCredentials(err); !ok || ce.Missing || ce.File != file || !strings.Contains(err.Error(), file) ||
		strings.Contains(err.Error(), "token-2") {
		t.Errorf("refused: %v, want a CredentialsError naming %s, without the token", err, file)
	}

	// Another endpoint is another client; the same name and endpoint, the same one.
	moved := dc.DeepCopy()
	moved.Spec.Endpoint = "http://127.0.0.1:1"
	other, err := clientFor(moved)
	if err != nil || other == first {
		t.Errorf("new endpoint: %v, same client %v", err, other == first)
	}
}

// Without a credentials directory no token is sent, and a refusal says so.
func TestNoCredentialsDir(t *testing.T) {
	srv := newTokenServer(t, "token-1")
	if CredentialsFile("", "dc-west") != "" {
		t.Error("a credentials file without a directory")
	}
	c, err := HTTPClients("")(&v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-west"}, Spec: v1alpha1.DatacenterSpec{Endpoint: srv.url}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetMachine(context.Background(), "aa:bb:cc:dd:ee:01")
	if ce, ok := datacenter.IsCredentials(err); !ok || ce.File != "" || !strings.Contains(err.Error(), "no credentials file is configured") {
		t.Errorf("no credentials: %v", err)
	}
}
