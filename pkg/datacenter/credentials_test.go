package datacenter_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"stargate.io/stargate/pkg/datacenter"
)

// bearerServer is a datacenter on 127.0.0.1 that accepts one bearer token
// and refuses anything else with refuseCode.
type bearerServer struct {
	url string

	mu         sync.Mutex
	want       string
	refuseCode int
	requests   int
	lastToken  string
}

func newBearerServer(t *testing.T, want string) *bearerServer {
	t.Helper()
	s := &bearerServer{want: want, refuseCode: http.StatusUnauthorized}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests++
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.lastToken = got
		w.Header().Set("Content-Type", "application/json")
		if got != s.want {
			w.WriteHeader(s.refuseCode)
			w.Write([]byte(`{"code":401,"message":"a valid bearer token is required"}`))
			return
		}
		w.Write([]byte(`{"mac":"aa:bb:cc:dd:ee:01","state":"ready","currentOS":"1.0.0"}`))
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// accept makes the server accept token from now on, and answer refusals with code.
func (s *bearerServer) accept(token string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want, s.refuseCode = token, code
}

func (s *bearerServer) seen() (requests int, lastToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.lastToken
}

func writeToken(t *testing.T, path, token string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A credentials file that appears after the client was built, and is then
// rewritten, is used at the next call; a refused token names its file.
func TestCredentialsFileAddedLateRotatedAndRefused(t *testing.T) {
	ctx := context.Background()
	srv := newBearerServer(t, "token-1")
	file := filepath.Join(t.TempDir(), "dc-west")
	c, err := datacenter.New(datacenter.Config{Endpoint: srv.url, TokenFile: file, Backoff: fastBackoff})
	if err != nil {
		t.Fatalf("a client whose credentials file is not there yet: %v", err)
	}

	// Missing: nothing is sent, and the error names the file.
	_, err = c.GetMachine(ctx, "aa:bb:cc:dd:ee:01")
	ce, ok := datacenter.IsCredentials(err)
	if !ok || !ce.Missing || ce.File != file || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("file missing: %v, want a CredentialsError (Missing) naming %s", err, file)
	}
	if datacenter.IsTransient(err) {
		t.Errorf("a missing credentials file is reported transient: %v", err)
	}
	if n, _ := srv.seen(); n != 0 {
		t.Errorf("%d requests sent without credentials", n)
	}

	// The file appears: the same client uses it.
	writeToken(t, file, "token-1")
	if _, err := c.GetMachine(ctx, "aa:bb:cc:dd:ee:01"); err != nil {
		t.Fatalf("after the file appeared: %v", err)
	}

	// Rotated in place to a token of the same length, at once: the next call sends the new one.
	srv.accept("token-2", http.StatusUnauthorized)
	writeToken(t, file, "token-2")
	if _, err := c.GetMachine(ctx, "aa:bb:cc:dd:ee:01"); err != nil {
		_, sent := srv.seen()
		t.Fatalf("after rotation: %v (sent %q)", err, sent)
	}

	// Refused (401): a CredentialsError naming the file, not retried, no token in it.
	srv.accept("token-3", http.StatusUnauthorized)
	before, _ := srv.seen()
	_, err = c.GetMachine(ctx, "aa:bb:cc:dd:ee:01")
	ce, ok = datacenter.IsCredentials(err)
	if !ok || ce.Missing || ce.File != file || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "401") {
		t.Errorf("refused token: %v, want a CredentialsError naming %s and the 401", err, file)
	}
	if !datacenter.IsUnauthorized(err) || datacenter.IsTransient(err) {
		t.Errorf("refused token: unauthorized=%v transient=%v", datacenter.IsUnauthorized(err), datacenter.IsTransient(err))
	}
	if strings.Contains(err.Error(), "token-2") {
		t.Errorf("the error shows the token: %v", err)
	}
	if n, _ := srv.seen(); n-before != 1 {
		t.Errorf("a 401 was sent %d times; it must not be retried", n-before)
	}

	// Forbidden (403) is a refusal too.
	srv.accept("token-3", http.StatusForbidden)
	err = c.Health(ctx)
	if ce, ok := datacenter.IsCredentials(err); !ok || ce.Missing || !strings.Contains(err.Error(), "403") {
		t.Errorf("forbidden: %v, want a CredentialsError with the 403", err)
	}

	// Empty, or gone again: Missing.
	writeToken(t, file, " ")
	if ce, ok := datacenter.IsCredentials(c.Health(ctx)); !ok || !ce.Missing || !strings.Contains(ce.Error(), "empty") {
		t.Errorf("empty file: %v", ce)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if ce, ok := datacenter.IsCredentials(c.Health(ctx)); !ok || !ce.Missing || ce.File != file {
		t.Errorf("removed file: %v", ce)
	}
}

// Without a credentials file, a refusal says none is configured.
func TestRefusedWithoutCredentialsFile(t *testing.T) {
	srv := newBearerServer(t, "token-1")
	c, err := datacenter.New(datacenter.Config{Endpoint: srv.url, Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetMachine(context.Background(), "aa:bb:cc:dd:ee:01")
	ce, ok := datacenter.IsCredentials(err)
	if !ok || ce.Missing || ce.File != "" || !strings.Contains(err.Error(), "no credentials file is configured") {
		t.Errorf("refused without a file: %v", err)
	}
	var dcErr *datacenter.Error
	if !errors.As(err, &dcErr) || dcErr.StatusCode != http.StatusUnauthorized {
		t.Errorf("the datacenter's answer is not in the chain: %v", err)
	}
}

// A token rewritten in place within the file system's timestamp granularity,
// with the same length, is still read again.
func TestTokenFileSeesEveryRewrite(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	tf := datacenter.NewTokenFile(file)
	if _, err := tf.Get(); err == nil {
		t.Fatal("a missing file gave a token")
	}
	for _, token := range []string{"aaaa", "bbbb", "cccc", "dddd"} {
		writeToken(t, file, token)
		if got, err := tf.Get(); err != nil || got != token {
			t.Fatalf("after writing %q: got %q, %v", token, got, err)
		}
	}
	// Replaced by another file (as a Secret volume does, by renaming).
	next := file + ".new"
	writeToken(t, next, "eeee")
	if err := os.Rename(next, file); err != nil {
		t.Fatal(err)
	}
	if got, err := tf.Get(); err != nil || got != "eeee" {
		t.Fatalf("after a replace: got %q, %v", got, err)
	}
}

// A datacenter that echoes the token in its refusal does not get it into the error.
func TestRefusalNeverShowsTheToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"code":401,"message":"bad token: ` + r.Header.Get("Authorization") + `"}`))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "dc-west")
	writeToken(t, file, "s3cret-token")
	c, err := datacenter.New(datacenter.Config{Endpoint: srv.URL, TokenFile: file, Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Health(context.Background())
	if _, ok := datacenter.IsCredentials(err); !ok || strings.Contains(err.Error(), "s3cret-token") || !strings.Contains(err.Error(), file) {
		t.Errorf("refusal: %v", err)
	}
}
