package embeddedetcd

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDataSurvivesRestart proves the embedded etcd is a real, durable store:
// a key written before a restart on the same directory is read back after it.
func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	put := func(s *Server, key, value string) {
		c := client(t, s)
		defer c.Close()
		if _, err := c.Put(context.Background(), key, value); err != nil {
			t.Fatal(err)
		}
	}

	s, err := Start(dir, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.ClientURL, "http://127.0.0.1:") {
		t.Errorf("client URL %s is not on loopback", s.ClientURL)
	}
	put(s, "/registry/stargate.io/probe", "kept")
	s.Close()

	s, err = Start(dir, time.Minute)
	if err != nil {
		t.Fatalf("restart on the same data dir: %v", err)
	}
	defer s.Close()
	c := client(t, s)
	defer c.Close()
	resp, err := c.Get(context.Background(), "/registry/stargate.io/probe")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
		t.Fatalf("after restart got %v, want the value written before", resp.Kvs)
	}
}

func client(t *testing.T, s *Server) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.ClientURL}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCleanStopIsQuiet: Close logs no errors (etcd complains, with stack
// traces, about the listeners Close itself shuts) and no warnings about them.
func TestCleanStopIsQuiet(t *testing.T) {
	var logs syncBuffer
	s, err := start(t.TempDir(), time.Minute, &logs)
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, s)
	if _, err := c.Put(context.Background(), "/registry/stargate.io/probe", "x"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	before := logs.String()
	s.Close()
	after := strings.TrimPrefix(logs.String(), before)
	if strings.Contains(after, `"level":"error"`) || strings.Contains(after, "stacktrace") || strings.Contains(after, "server due to error") {
		t.Errorf("a clean stop logged:\n%s", after)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
