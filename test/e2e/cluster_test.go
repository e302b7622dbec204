//go:build e2e

// Package e2e runs Stargate behind a real kube-apiserver (built from
// k8s.io/kubernetes by hack/build-cluster-tools.sh) on a real etcd, and drives
// it with a real kubectl, as an operator would. Everything listens on
// 127.0.0.1; `make test-e2e` runs it.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"stargate.io/stargate/pkg/pki"
)

// cluster is everything the suite started.
type cluster struct {
	root, work string // the repository, the suite's scratch directory
	bin        map[string]string
	pki        *clusterPKI

	etcdURL, kubeURL string
	stargatePort     int
	mockdc           map[string]string // datacenter -> URL
	credsDir         string
	kubeconfigs      map[string]string // user -> kubeconfig
	mu               sync.Mutex
	procs            map[string]*process
	stargateArgs     []string
}

type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

type clusterPKI struct {
	dir                           string
	clusterCA, frontProxyCA, sgCA *pki.CA
}

func (p *clusterPKI) path(name string) string { return filepath.Join(p.dir, name) }

var env *cluster

func TestMain(m *testing.M) {
	var err error
	env, err = startCluster()
	code := 1
	if err == nil {
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, "e2e: starting the cluster:", err)
	}
	if env != nil {
		if code != 0 {
			env.dumpLogs()
		}
		env.stop()
		if code == 0 {
			os.RemoveAll(env.work)
		}
	}
	os.Exit(code)
}

func startCluster() (*cluster, error) {
	root, err := filepath.Abs("../..")
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "stargate-e2e-")
	if err != nil {
		return nil, err
	}
	c := &cluster{root: root, work: work, bin: map[string]string{}, procs: map[string]*process{},
		mockdc: map[string]string{}, kubeconfigs: map[string]string{}}
	fmt.Fprintln(os.Stderr, "e2e: scratch directory", work)
	steps := []struct {
		name string
		run  func() error
	}{
		{"build", c.build},
		{"pki", c.makePKI},
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startKubeAPIServer},
		{"rbac", c.applyRBAC},
		{"mock datacenters", c.startMockDCs},
		{"stargate-apiserver", c.startStargate},
		{"registration", c.register},
	}
	for _, s := range steps {
		start := time.Now()
		if err := s.run(); err != nil {
			return c, fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(os.Stderr, "e2e: %s ready in %s\n", s.name, time.Since(start).Round(time.Millisecond))
	}
	return c, nil
}

// build finds (or builds, once) kube-apiserver, kubectl and etcd, and builds
// this tree's stargate-apiserver and mockdc.
func (c *cluster) build() error {
	out, err := exec.Command(filepath.Join(c.root, "hack/build-cluster-tools.sh")).Output()
	if err != nil {
		return fmt.Errorf("hack/build-cluster-tools.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	tools := lines[len(lines)-1]
	for _, t := range []string{"kube-apiserver", "kubectl", "etcd"} {
		c.bin[t] = filepath.Join(tools, t)
	}
	binDir := filepath.Join(c.work, "bin")
	cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/stargate-apiserver", "./cmd/mockdc")
	cmd.Dir = c.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	c.bin["stargate-apiserver"] = filepath.Join(binDir, "stargate-apiserver")
	c.bin["mockdc"] = filepath.Join(binDir, "mockdc")
	return nil
}

// Users of the suite and their groups.
var users = map[string][]string{
	"admin": {"system:masters"},
	// Stargate's own identity, as a ServiceAccount would have it, so the
	// deploy manifests' RBAC applies to it unchanged.
	"system:serviceaccount:stargate-system:stargate-apiserver": {"system:serviceaccounts", "system:serviceaccounts:stargate-system"},
	"alice": {"viewers"},
	"bob":   {"repavers"},
}

func (c *cluster) makePKI() error {
	p := &clusterPKI{dir: filepath.Join(c.work, "pki")}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	var err error
	if p.clusterCA, err = pki.EnsureCA(p.path("cluster-ca.crt"), p.path("cluster-ca.key"), "e2e-cluster-ca"); err != nil {
		return err
	}
	if p.frontProxyCA, err = pki.EnsureCA(p.path("front-proxy-ca.crt"), p.path("front-proxy-ca.key"), "e2e-front-proxy-ca"); err != nil {
		return err
	}
	if p.sgCA, err = pki.EnsureCA(p.path("stargate-ca.crt"), p.path("stargate-ca.key"), "e2e-stargate-ca"); err != nil {
		return err
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	if err := p.clusterCA.EnsureLeaf(p.path("kube-apiserver.crt"), p.path("kube-apiserver.key"), &x509.Certificate{
		Subject: pkix.Name{CommonName: "kube-apiserver"}, DNSNames: []string{"localhost", "kubernetes.default.svc"},
		IPAddresses: loopback, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return err
	}
	// The aggregator checks Stargate's certificate against the APIService's
	// caBundle for <service>.<namespace>.svc.
	if err := p.sgCA.EnsureLeaf(p.path("stargate.crt"), p.path("stargate.key"), &x509.Certificate{
		Subject: pkix.Name{CommonName: "stargate.stargate-system.svc"}, DNSNames: []string{"stargate.stargate-system.svc", "localhost"},
		IPAddresses: loopback, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return err
	}
	if err := p.frontProxyCA.ClientCert(p.path("front-proxy-client.crt"), p.path("front-proxy-client.key"), "front-proxy-client"); err != nil {
		return err
	}
	for user, groups := range users {
		file := strings.ReplaceAll(user, ":", "_")
		if err := p.clusterCA.ClientCert(p.path(file+".crt"), p.path(file+".key"), user, groups...); err != nil {
			return err
		}
	}
	if err := pki.EnsureKey(p.path("service-account.key")); err != nil {
		return err
	}
	c.pki = p
	return nil
}

// start runs a binary with its output in <work>/<name>.log.
func (c *cluster) start(name string, bin string, args ...string) (*process, error) {
	log := filepath.Join(c.work, name+".log")
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &process{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return p, nil
}

// kill stops a process: SIGKILL when hard, else SIGTERM and SIGKILL after 20s.
func (p *process) kill(hard bool) {
	sig := syscall.SIGTERM
	if hard {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (c *cluster) stop() {
	// Stargate first, then what it depends on.
	for _, name := range []string{"stargate-apiserver", "mockdc-dc-west", "mockdc-dc-east", "kube-apiserver", "etcd"} {
		c.mu.Lock()
		p := c.procs[name]
		c.mu.Unlock()
		if p != nil {
			p.kill(false)
		}
	}
}

func (c *cluster) dumpLogs() {
	for name, p := range c.procs {
		data, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(os.Stderr, "==== last lines of %s (%s)\n%s\n", name, p.log, strings.Join(lines, "\n"))
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls until check passes or the time is up.
func waitFor(what string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not ready after %s: %w", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) startEtcd() error {
	client, err := freePort()
	if err != nil {
		return err
	}
	peer, err := freePort()
	if err != nil {
		return err
	}
	c.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	if _, err := c.start("etcd", c.bin["etcd"], "--name=e2e", "--data-dir="+filepath.Join(c.work, "etcd"),
		"--listen-client-urls="+c.etcdURL, "--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=e2e="+peerURL, "--log-level=warn"); err != nil {
		return err
	}
	return waitFor("etcd", time.Minute, func() error {
		resp, err := http.Get(c.etcdURL + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/health: %d", resp.StatusCode)
		}
		return nil
	})
}

func (c *cluster) startKubeAPIServer() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	c.kubeURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	p := c.pki
	if _, err := c.start("kube-apiserver", c.bin["kube-apiserver"],
		"--etcd-servers="+c.etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file="+p.path("kube-apiserver.crt"), "--tls-private-key-file="+p.path("kube-apiserver.key"),
		"--client-ca-file="+p.path("cluster-ca.crt"),
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+p.path("service-account.key"),
		"--service-account-signing-key-file="+p.path("service-account.key"),
		// No controller manager here to keep the kubernetes Endpoints, which
		// could not hold 127.0.0.1 anyway.
		"--endpoint-reconciler-type=none",
		// The aggregation layer: kube-apiserver proxies stargate.io with this
		// client certificate and the user in X-Remote-* headers.
		"--requestheader-client-ca-file="+p.path("front-proxy-ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+p.path("front-proxy-client.crt"),
		"--proxy-client-key-file="+p.path("front-proxy-client.key"),
	); err != nil {
		return err
	}
	for user := range users {
		file := strings.ReplaceAll(user, ":", "_")
		kubeconfig := filepath.Join(c.work, file+".kubeconfig")
		if err := writeKubeconfig(kubeconfig, c.kubeURL, p.path("cluster-ca.crt"), p.path(file+".crt"), p.path(file+".key")); err != nil {
			return err
		}
		c.kubeconfigs[user] = kubeconfig
	}
	return waitFor("kube-apiserver", 2*time.Minute, func() error {
		out, err := c.kubectl("admin", "get", "--raw", "/readyz")
		if err != nil || strings.TrimSpace(out) != "ok" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

func writeKubeconfig(path, server, ca, cert, key string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: ca}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificate: cert, ClientKey: key}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "user"}
	cfg.CurrentContext = "e2e"
	return clientcmd.WriteToFile(*cfg, path)
}

// applyRBAC applies the deploy manifests' namespace, ServiceAccount and RBAC:
// the suite's Stargate runs with exactly what a deployed one gets.
func (c *cluster) applyRBAC() error {
	base := filepath.Join(c.root, "artifacts/deploy/base")
	out, err := c.kubectl("admin", "apply", "-f", filepath.Join(base, "namespace.yaml"),
		"-f", filepath.Join(base, "serviceaccount.yaml"), "-f", filepath.Join(base, "rbac.yaml"))
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// Mock datacenter durations: long enough to watch a Job run, short enough for CI.
const repaveDuration = 4 * time.Second

func (c *cluster) startMockDCs() error {
	c.credsDir = filepath.Join(c.work, "datacenter-credentials")
	if err := os.MkdirAll(c.credsDir, 0o700); err != nil {
		return err
	}
	for _, dc := range []string{"dc-west", "dc-east"} {
		port, err := freePort()
		if err != nil {
			return err
		}
		token := filepath.Join(c.credsDir, dc)
		if err := os.WriteFile(token, []byte("e2e-token-of-"+dc), 0o600); err != nil {
			return err
		}
		args := []string{"-v=1", "--name=" + dc, fmt.Sprintf("--listen=127.0.0.1:%d", port), "--token-file=" + token,
			"--state-file=" + filepath.Join(c.work, "mockdc-"+dc+".json"), "--repave-duration=" + repaveDuration.String(),
			"--reboot-duration=1s", "--power-duration=500ms"}
		if dc == "dc-west" {
			args = append(args, "--inventory="+filepath.Join(c.root, "artifacts/samples/mockdc-inventory-dc-west.yaml"))
		}
		if _, err := c.start("mockdc-"+dc, c.bin["mockdc"], args...); err != nil {
			return err
		}
		c.mockdc[dc] = fmt.Sprintf("http://127.0.0.1:%d", port)
		if err := waitFor(dc, 30*time.Second, func() error {
			resp, err := http.Get(c.mockdc[dc] + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// startStargate runs stargate-apiserver in aggregated mode: delegated
// authentication and authorization through kube-apiserver, its objects in the
// same etcd under its own prefix.
func (c *cluster) startStargate() error {
	if c.stargatePort == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		c.stargatePort = port
		self := c.kubeconfigs["system:serviceaccount:stargate-system:stargate-apiserver"]
		c.stargateArgs = []string{
			"--etcd-servers=" + c.etcdURL,
			"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
			"--tls-cert-file=" + c.pki.path("stargate.crt"), "--tls-private-key-file=" + c.pki.path("stargate.key"),
			"--kubeconfig=" + self, "--authentication-kubeconfig=" + self, "--authorization-kubeconfig=" + self,
			"--datacenter-credentials-dir=" + c.credsDir,
			"--data-dir=" + filepath.Join(c.work, "stargate"),
			"--leader-elect-lease-duration=3s",
		}
	}
	if _, err := c.start("stargate-apiserver", c.bin["stargate-apiserver"], c.stargateArgs...); err != nil {
		return err
	}
	return waitFor("stargate-apiserver", 2*time.Minute, func() error {
		resp, err := c.stargateHTTP().Get(fmt.Sprintf("https://127.0.0.1:%d/readyz", c.stargatePort))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d", resp.StatusCode)
		}
		return nil
	})
}

// stargateHTTP is a client that verifies Stargate's certificate and presents none.
func (c *cluster) stargateHTTP() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.sgCA.Cert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig(pool)}}
}

// register tells kube-apiserver where stargate.io is served: an ExternalName
// Service to localhost (Endpoints may not hold loopback addresses) and an
// APIService with the real caBundle.
func (c *cluster) register() error {
	caPEM, err := os.ReadFile(c.pki.path("stargate-ca.crt"))
	if err != nil {
		return err
	}
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: stargate
  namespace: stargate-system
spec:
  type: ExternalName
  externalName: localhost
  ports:
    - name: https
      port: %[1]d
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1alpha1.stargate.io
spec:
  group: stargate.io
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  caBundle: %[2]s
  service:
    name: stargate
    namespace: stargate-system
    port: %[1]d
`, c.stargatePort, b64(caPEM))
	if out, err := c.kubectlIn("admin", manifest, "apply", "-f", "-"); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return c.waitAvailable()
}

func (c *cluster) waitAvailable() error {
	out, err := c.kubectl("admin", "wait", "--for=condition=Available", "apiservice/v1alpha1.stargate.io", "--timeout=120s")
	if err != nil {
		status, _ := c.kubectl("admin", "get", "apiservice/v1alpha1.stargate.io", "-o", "jsonpath={.status}")
		return fmt.Errorf("%v: %s (status %s)", err, out, status)
	}
	return nil
}

// restartStargate kills stargate-apiserver (SIGKILL: no goodbye) and starts it
// again on the same port and etcd.
func (c *cluster) restartStargate() error {
	c.mu.Lock()
	p := c.procs["stargate-apiserver"]
	c.mu.Unlock()
	p.kill(true)
	if err := c.startStargate(); err != nil {
		return err
	}
	return c.waitAvailable()
}

// kubectl runs the real kubectl as user and returns its combined output.
func (c *cluster) kubectl(user string, args ...string) (string, error) {
	return c.kubectlIn(user, "", args...)
}

func (c *cluster) kubectlIn(user, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin["kubectl"], append([]string{"--kubeconfig=" + c.kubeconfigs[user]}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// watch starts `kubectl ... -w` and returns a function that stops it and
// returns the lines it printed.
func (c *cluster) watch(user string, args ...string) (func() []string, error) {
	cmd := exec.Command(c.bin["kubectl"], append([]string{"--kubeconfig=" + c.kubeconfigs[user]}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			mu.Lock()
			lines = append(lines, s.Text())
			mu.Unlock()
		}
	}()
	return func() []string {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
		mu.Lock()
		defer mu.Unlock()
		return lines
	}, nil
}

// ok runs kubectl as user and fails the test, with kubectl's output, when it fails.
func (c *cluster) ok(t *testing.T, user string, args ...string) string {
	t.Helper()
	out, err := c.kubectl(user, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
