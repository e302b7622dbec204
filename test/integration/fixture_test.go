package integration

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"stargate.io/stargate/pkg/cmd/server"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
)

// testServer is a whole stargate-apiserver running in this process in
// standalone mode on 127.0.0.1, with its embedded etcd in DataDir.
type testServer struct {
	DataDir string
	// EtcdURL is the client URL of the etcd the server stores into.
	EtcdURL string
	Config  *rest.Config
	Client  clientset.Interface
	stop    func()
}

// startServer runs a server on dataDir (a fresh one when empty) and stops it
// at the end of the test. Reusing a dataDir after stop restarts on the same data.
func startServer(t *testing.T, dataDir string, customize ...func(*server.Options)) *testServer {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := server.NewOptions(os.Stdout, os.Stderr)
	o.Standalone = true
	o.DataDir = dataDir
	// Tests that want the controller loop turn it on; the API tests drive
	// Job status themselves.
	o.Controllers = false
	o.RecommendedOptions.SecureServing.Listener = ln
	o.RecommendedOptions.SecureServing.BindAddress = net.ParseIP("127.0.0.1")
	o.RecommendedOptions.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port
	for _, c := range customize {
		c(o)
	}
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	s, stopDeps, err := o.NewServer()
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.GenericAPIServer.PrepareRun().RunWithContext(ctx) }()

	ts := &testServer{DataDir: dataDir, EtcdURL: o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList[0]}
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("server ended with %v", err)
				}
			case <-time.After(time.Minute):
				t.Error("server did not stop within a minute")
			}
			stopDeps()
		})
	}
	t.Cleanup(ts.stop)

	kubeconfig := filepath.Join(dataDir, "kubeconfig")
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true,
		func(ctx context.Context) (bool, error) {
			select {
			case err := <-done:
				return false, err
			default:
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil || cfg.Host != "https://"+ln.Addr().String() {
				return false, nil // not written yet, or left by an earlier run
			}
			ts.Config = cfg
			return true, nil
		})
	if err != nil {
		t.Fatalf("server did not write its kubeconfig: %v", err)
	}
	ts.Config.QPS, ts.Config.Burst = -1, 0
	ts.Client = clientset.NewForConfigOrDie(ts.Config)
	ts.waitReady(t)
	return ts
}

func (ts *testServer) waitReady(t *testing.T) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true,
		func(ctx context.Context) (bool, error) {
			body, err := ts.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err == nil && string(body) == "ok", nil
		})
	if err != nil {
		t.Fatalf("server not ready: %v", err)
	}
}

// Stop stops the server now (it is also stopped at the end of the test).
func (ts *testServer) Stop() { ts.stop() }
