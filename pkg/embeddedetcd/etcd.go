// Package embeddedetcd runs a single-member etcd inside the Stargate process,
// for laptops, CI and small installations. Production points --etcd-servers
// at an external cluster instead.
package embeddedetcd

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Server is a running embedded etcd.
type Server struct {
	etcd *embed.Etcd
	// closing is set when Close begins: from then on etcd's complaints
	// that its own listeners were closed are not news.
	closing *atomic.Bool
	// ClientURL is where the API server's storage connects.
	ClientURL string
}

// Start runs etcd with its data in dir, listening on 127.0.0.1 only, and
// returns once it serves. The ports are picked afresh at each start: the data
// directory, not the address, is what survives a restart. etcd's warnings and
// errors go to stderr.
func Start(dir string, startTimeout time.Duration) (*Server, error) {
	return start(dir, startTimeout, os.Stderr)
}

func start(dir string, startTimeout time.Duration, logs io.Writer) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating etcd data dir: %w", err)
	}
	ports, err := freeLoopbackPorts(2)
	if err != nil {
		return nil, err
	}
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))}

	cfg := embed.NewConfig()
	cfg.Name = "stargate"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// No metrics listener, no v2 discovery: the only client is this process.
	cfg.ListenMetricsUrls = nil
	closing := &atomic.Bool{}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(quietLogger(logs, closing))
	// Keep the history compact; Stargate's watch cache handles the rest.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "5m"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(startTimeout):
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s did not become ready within %s", dir, startTimeout)
	}
	return &Server{etcd: e, closing: closing, ClientURL: clientURL.String()}, nil
}

// Close stops etcd, flushing its data to disk.
func (s *Server) Close() {
	s.closing.Store(true)
	s.etcd.Close()
}

func freeLoopbackPorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port for embedded etcd: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// quietLogger logs etcd's warnings and errors only, as JSON like the rest of
// etcd's output, so Stargate's own logs stay readable; and once closing is
// set, not the errors (with stack traces) etcd logs when Close shuts its own
// listeners: a clean stop is quiet.
func quietLogger(w io.Writer, closing *atomic.Bool) *zap.Logger {
	encoder := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	core := zapcore.NewCore(encoder, zapcore.Lock(zapcore.AddSync(w)), zapcore.WarnLevel)
	return zap.New(&shutdownFilter{Core: core, closing: closing}, zap.AddCaller()).Named("embedded-etcd")
}

// shutdownNoise are the messages etcd logs, at warn or error level with a
// stack trace, when its listeners close under it during Close.
var shutdownNoise = map[string]bool{
	"setting up serving from embedded etcd failed.": true,
	"stopping insecure grpc server due to error":    true,
	"stopped insecure grpc server due to error":     true,
	"stopping secure grpc server due to error":      true,
	"stopped secure grpc server due to error":       true,
}

// shutdownFilter drops shutdownNoise once closing is set.
type shutdownFilter struct {
	zapcore.Core
	closing *atomic.Bool
}

func (f *shutdownFilter) With(fields []zapcore.Field) zapcore.Core {
	return &shutdownFilter{Core: f.Core.With(fields), closing: f.closing}
}

func (f *shutdownFilter) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if f.closing.Load() && shutdownNoise[ent.Message] {
		return ce
	}
	if f.Enabled(ent.Level) {
		return ce.AddCore(ent, f)
	}
	return ce
}
