// Package framework starts, on 127.0.0.1 only, what the end-to-end tests and
// the benchmarks run against: a real etcd and a real kube-apiserver (built
// from k8s.io/kubernetes by hack/build-cluster-tools.sh) with the aggregation
// layer, two mock datacenters, and stargate-apiserver in aggregated mode,
// registered through an APIService; and a real kubectl to drive them.
package framework

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/pki"
)

// Cluster is everything Start started.
type Cluster struct {
	Root, Work string // the repository, the scratch directory
	Bin        map[string]string
	PKI        *PKI

	EtcdURL, KubeURL string
	StargatePort     int
	MockDC           map[string]string // datacenter -> URL
	CredsDir         string
	Kubeconfigs      map[string]string // user -> kubeconfig

	opts         Options
	mu           sync.Mutex
	procs        map[string]*process
	stargateArgs []string
	etcdArgs     []string
}

type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// PKI is the cluster's certificate authorities and where their files are:
// ClusterCA signs kube-apiserver's serving and the users' client certificates,
// FrontProxyCA the aggregator's client certificate, StargateCA Stargate's
// serving certificate (the APIService caBundle).
type PKI struct {
	Dir                                 string
	ClusterCA, FrontProxyCA, StargateCA *pki.CA
}

// Path is a file in the PKI directory; user certificates are <user>.crt and .key
// with colons as underscores.
func (p *PKI) Path(name string) string { return filepath.Join(p.Dir, name) }

// Start starts the cluster from the repository at root. On error the
// returned Cluster (if any) holds what started: Stop it.
func Start(root string, opts Options) (*Cluster, error) {
	opts.defaults()
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "stargate-e2e-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, Root: root, Work: work, Bin: map[string]string{}, procs: map[string]*process{},
		MockDC: map[string]string{}, Kubeconfigs: map[string]string{}}
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
func (c *Cluster) build() error {
	out, err := exec.Command(filepath.Join(c.Root, "hack/build-cluster-tools.sh")).Output()
	if err != nil {
		return fmt.Errorf("hack/build-cluster-tools.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	tools := lines[len(lines)-1]
	for _, t := range []string{"kube-apiserver", "kubectl", "etcd"} {
		c.Bin[t] = filepath.Join(tools, t)
	}
	binDir := filepath.Join(c.Work, "bin")
	cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/stargate-apiserver", "./cmd/mockdc")
	cmd.Dir = c.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	c.Bin["stargate-apiserver"] = filepath.Join(binDir, "stargate-apiserver")
	c.Bin["mockdc"] = filepath.Join(binDir, "mockdc")
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

func (c *Cluster) makePKI() error {
	p := &PKI{Dir: filepath.Join(c.Work, "pki")}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	var err error
	if p.ClusterCA, err = pki.EnsureCA(p.Path("cluster-ca.crt"), p.Path("cluster-ca.key"), "e2e-cluster-ca"); err != nil {
		return err
	}
	if p.FrontProxyCA, err = pki.EnsureCA(p.Path("front-proxy-ca.crt"), p.Path("front-proxy-ca.key"), "e2e-front-proxy-ca"); err != nil {
		return err
	}
	if p.StargateCA, err = pki.EnsureCA(p.Path("stargate-ca.crt"), p.Path("stargate-ca.key"), "e2e-stargate-ca"); err != nil {
		return err
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	if err := p.ClusterCA.EnsureLeaf(p.Path("kube-apiserver.crt"), p.Path("kube-apiserver.key"), &x509.Certificate{
		Subject: pkix.Name{CommonName: "kube-apiserver"}, DNSNames: []string{"localhost", "kubernetes.default.svc"},
		IPAddresses: loopback, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return err
	}
	// The aggregator checks Stargate's certificate against the APIService's
	// caBundle for <service>.<namespace>.svc.
	if err := p.StargateCA.EnsureLeaf(p.Path("stargate.crt"), p.Path("stargate.key"), &x509.Certificate{
		Subject: pkix.Name{CommonName: "stargate.stargate-system.svc"}, DNSNames: []string{"stargate.stargate-system.svc", "localhost"},
		IPAddresses: loopback, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return err
	}
	if err := p.FrontProxyCA.ClientCert(p.Path("front-proxy-client.crt"), p.Path("front-proxy-client.key"), "front-proxy-client"); err != nil {
		return err
	}
	for user, groups := range users {
		file := strings.ReplaceAll(user, ":", "_")
		if err := p.ClusterCA.ClientCert(p.Path(file+".crt"), p.Path(file+".key"), user, groups...); err != nil {
			return err
		}
	}
	if err := pki.EnsureKey(p.Path("service-account.key")); err != nil {
		return err
	}
	c.PKI = p
	return nil
}

// start runs a binary with its output in <work>/<name>.log.
func (c *Cluster) start(name string, bin string, args ...string) (*process, error) {
	return c.startWithEnv(name, nil, bin, args...)
}

// startWithEnv is start with env added to the environment (after
// Options.StargateEnv for Stargate, so it wins).
func (c *Cluster) startWithEnv(name string, env []string, bin string, args ...string) (*process, error) {
	log := filepath.Join(c.Work, name+".log")
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if strings.HasPrefix(name, "stargate-apiserver") && len(c.opts.StargateEnv)+len(env) > 0 {
		cmd.Env = append(append(os.Environ(), c.opts.StargateEnv...), env...)
	}
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

// Stop stops every process, Stargate first, then the mock datacenters.
func (c *Cluster) Stop() {
	// Stargate (and any replica) first, then what it depends on.
	c.mu.Lock()
	var replicas, mocks []string
	for name := range c.procs {
		switch {
		case strings.HasPrefix(name, "stargate-apiserver-"):
			replicas = append(replicas, name)
		case strings.HasPrefix(name, "mockdc-"):
			mocks = append(mocks, name)
		}
	}
	c.mu.Unlock()
	order := append(append(replicas, "stargate-apiserver"), mocks...)
	for _, name := range append(order, "kube-apiserver", "etcd") {
		c.mu.Lock()
		p := c.procs[name]
		c.mu.Unlock()
		if p != nil {
			p.kill(false)
		}
	}
}

// DumpLogs prints the last lines of every process's log.
func (c *Cluster) DumpLogs() {
	for name, p := range c.procs {
		data, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(os.Stderr, "==== last lines of %s (%s)\n%s\n", name, p.log, strings.Join(lines, "\n"))
	}
}

// httpOK is nil when GET url answers 200.
func httpOK(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return nil
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

func (c *Cluster) startEtcd() error {
	client, err := freePort()
	if err != nil {
		return err
	}
	peer, err := freePort()
	if err != nil {
		return err
	}
	c.EtcdURL = fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	c.etcdArgs = []string{"--name=e2e", "--data-dir=" + filepath.Join(c.Work, "etcd"),
		"--listen-client-urls=" + c.EtcdURL, "--advertise-client-urls=" + c.EtcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=e2e=" + peerURL, "--log-level=warn",
		// Room for the benchmark's million Hardware (etcd's default is 2 GiB).
		"--quota-backend-bytes=" + fmt.Sprint(8<<30)}
	return c.StartEtcd()
}

// StartEtcd starts etcd (again, after Kill("etcd")) on its ports and data.
func (c *Cluster) StartEtcd() error {
	if _, err := c.start("etcd", c.Bin["etcd"], c.etcdArgs...); err != nil {
		return err
	}
	return waitFor("etcd", time.Minute, func() error { return httpOK(http.DefaultClient, c.EtcdURL+"/health") })
}

func (c *Cluster) startKubeAPIServer() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	c.KubeURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	p := c.PKI
	if _, err := c.start("kube-apiserver", c.Bin["kube-apiserver"],
		"--etcd-servers="+c.EtcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file="+p.Path("kube-apiserver.crt"), "--tls-private-key-file="+p.Path("kube-apiserver.key"),
		"--client-ca-file="+p.Path("cluster-ca.crt"),
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+p.Path("service-account.key"),
		"--service-account-signing-key-file="+p.Path("service-account.key"),
		// No controller manager here to keep the kubernetes Endpoints, which
		// could not hold 127.0.0.1 anyway.
		"--endpoint-reconciler-type=none",
		// The aggregation layer: kube-apiserver proxies stargate.io with this
		// client certificate and the user in X-Remote-* headers.
		"--requestheader-client-ca-file="+p.Path("front-proxy-ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+p.Path("front-proxy-client.crt"),
		"--proxy-client-key-file="+p.Path("front-proxy-client.key"),
	); err != nil {
		return err
	}
	for user := range users {
		file := strings.ReplaceAll(user, ":", "_")
		kubeconfig := filepath.Join(c.Work, file+".kubeconfig")
		if err := writeKubeconfig(kubeconfig, c.KubeURL, p.Path("cluster-ca.crt"), p.Path(file+".crt"), p.Path(file+".key")); err != nil {
			return err
		}
		c.Kubeconfigs[user] = kubeconfig
	}
	return waitFor("kube-apiserver", 2*time.Minute, func() error {
		out, err := c.Kubectl("admin", "get", "--raw", "/readyz")
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
func (c *Cluster) applyRBAC() error {
	base := filepath.Join(c.Root, "artifacts/deploy/base")
	out, err := c.Kubectl("admin", "apply", "-f", filepath.Join(base, "namespace.yaml"),
		"-f", filepath.Join(base, "serviceaccount.yaml"), "-f", filepath.Join(base, "rbac.yaml"))
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func (c *Cluster) startMockDCs() error {
	c.CredsDir = filepath.Join(c.Work, "datacenter-credentials")
	if err := os.MkdirAll(c.CredsDir, 0o700); err != nil {
		return err
	}
	for _, dc := range []string{"dc-west", "dc-east"} {
		var extra []string
		if dc == "dc-west" {
			extra = append(extra, "--inventory="+filepath.Join(c.Root, "artifacts/samples/mockdc-inventory-dc-west.yaml"))
		}
		if err := c.startMockDC(dc, extra...); err != nil {
			return err
		}
	}
	return nil
}

// StartMockDC starts one more mock datacenter, process mockdc-<dc>, with the
// cluster's operation times, its token in the credentials directory under
// dc (so a Datacenter named dc reaches it), knowing machines from the start
// (a machine it does not know is looked up as state unknown, which a
// Campaign counts unavailable), and waits until it is healthy. MockDC[dc]
// is its URL; Stop stops it.
func (c *Cluster) StartMockDC(dc string, machines []mockdc.InventoryMachine) error {
	c.mu.Lock()
	_, exists := c.procs["mockdc-"+dc]
	c.mu.Unlock()
	if exists {
		return fmt.Errorf("mock datacenter %s was started already", dc)
	}
	var extra []string
	if len(machines) > 0 {
		data, err := json.Marshal(machines) // YAML, as --inventory reads it
		if err != nil {
			return err
		}
		inventory := filepath.Join(c.Work, "mockdc-"+dc+"-inventory.yaml")
		if err := os.WriteFile(inventory, data, 0o600); err != nil {
			return err
		}
		extra = append(extra, "--inventory="+inventory)
	}
	return c.startMockDC(dc, extra...)
}

func (c *Cluster) startMockDC(dc string, extra ...string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	token := filepath.Join(c.CredsDir, dc)
	if err := os.WriteFile(token, []byte("token-of-"+dc), 0o600); err != nil {
		return err
	}
	args := []string{"-v=1", "--name=" + dc, fmt.Sprintf("--listen=127.0.0.1:%d", port), "--token-file=" + token,
		"--repave-duration=" + c.opts.RepaveDuration.String(),
		"--reboot-duration=" + c.opts.RebootDuration.String(), "--power-duration=" + c.opts.PowerDuration.String(),
		fmt.Sprintf("--max-running=%d", c.opts.MockDCMaxRunning)}
	if !c.opts.MockDCInMemory {
		args = append(args, "--state-file="+filepath.Join(c.Work, "mockdc-"+dc+".json"))
	}
	if _, err := c.start("mockdc-"+dc, c.Bin["mockdc"], append(args, extra...)...); err != nil {
		return err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	c.mu.Lock()
	c.MockDC[dc] = url
	c.mu.Unlock()
	return waitFor(dc, 30*time.Second, func() error { return httpOK(http.DefaultClient, url+"/healthz") })
}

// startStargate runs stargate-apiserver in aggregated mode: delegated
// authentication and authorization through kube-apiserver, its objects in the
// same etcd under its own prefix.
func (c *Cluster) startStargate() error {
	if c.StargatePort == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		c.StargatePort = port
		self := c.Kubeconfigs["system:serviceaccount:stargate-system:stargate-apiserver"]
		c.stargateArgs = []string{
			"--etcd-servers=" + c.EtcdURL,
			"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
			"--tls-cert-file=" + c.PKI.Path("stargate.crt"), "--tls-private-key-file=" + c.PKI.Path("stargate.key"),
			"--kubeconfig=" + self, "--authentication-kubeconfig=" + self, "--authorization-kubeconfig=" + self,
			"--datacenter-credentials-dir=" + c.CredsDir,
			"--data-dir=" + filepath.Join(c.Work, "stargate"),
			"--leader-elect-lease-duration=3s",
		}
		c.stargateArgs = append(c.stargateArgs, c.opts.StargateArgs...)
	}
	if _, err := c.start("stargate-apiserver", c.Bin["stargate-apiserver"], c.stargateArgs...); err != nil {
		return err
	}
	return waitFor("stargate-apiserver", 2*time.Minute, func() error {
		return httpOK(c.StargateHTTP(), fmt.Sprintf("https://127.0.0.1:%d/readyz", c.StargatePort))
	})
}

// StargateHTTP is a client that verifies Stargate's certificate and presents none.
func (c *Cluster) StargateHTTP() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(c.PKI.StargateCA.Cert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig(pool)}}
}

// register tells kube-apiserver where stargate.io is served: an ExternalName
// Service to localhost (Endpoints may not hold loopback addresses) and an
// APIService with the real caBundle.
func (c *Cluster) register() error {
	caPEM, err := os.ReadFile(c.PKI.Path("stargate-ca.crt"))
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
`, c.StargatePort, b64(caPEM))
	if out, err := c.KubectlIn("admin", manifest, "apply", "-f", "-"); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	if err := c.WaitAvailable(); err != nil {
		return err
	}
	return c.waitOpenAPI()
}

// waitOpenAPI waits until kube-apiserver serves stargate.io's OpenAPI v3
// document, which it fetches from stargate-apiserver a moment after the
// APIService turns Available: kubectl explain (and kubectl's client-side
// field validation) read it from there.
func (c *Cluster) waitOpenAPI() error {
	return waitFor("kube-apiserver's OpenAPI v3 for stargate.io/v1alpha1 after the APIService became Available", time.Minute, func() error {
		out, err := c.Kubectl("admin", "get", "--raw", "/openapi/v3/apis/stargate.io/v1alpha1")
		if err == nil && strings.Contains(out, "v1alpha1.Campaign") {
			return nil
		}
		return fmt.Errorf("no v1alpha1.Campaign in it: %v: %s", err, out[:min(len(out), 300)])
	})
}

// WaitAvailable waits for the APIService to be Available.
func (c *Cluster) WaitAvailable() error {
	out, err := c.Kubectl("admin", "wait", "--for=condition=Available", "apiservice/v1alpha1.stargate.io", "--timeout=120s")
	if err != nil {
		status, _ := c.Kubectl("admin", "get", "apiservice/v1alpha1.stargate.io", "-o", "jsonpath={.status}")
		return fmt.Errorf("%v: %s (status %s)", err, out, status)
	}
	return nil
}

// RestartStargate kills stargate-apiserver (SIGKILL: no goodbye) and starts it
// again on the same port and etcd.
func (c *Cluster) RestartStargate() error {
	c.Kill("stargate-apiserver", true)
	return c.StartStargateAgain()
}

// StartStargateAgain starts stargate-apiserver, after Kill("stargate-apiserver"),
// on its port, flags and etcd, and waits until it is ready and the APIService
// Available: RestartStargate in two steps, so a test can look at what the
// killed process left behind before another starts.
func (c *Cluster) StartStargateAgain() error {
	if err := c.startStargate(); err != nil {
		return err
	}
	return c.WaitAvailable()
}

// Kubectl runs the real kubectl as user and returns its combined output.
func (c *Cluster) Kubectl(user string, args ...string) (string, error) {
	return c.KubectlIn(user, "", args...)
}

// KubectlIn is Kubectl with stdin.
func (c *Cluster) KubectlIn(user, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin["kubectl"], append([]string{"--kubeconfig=" + c.Kubeconfigs[user]}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Watch starts `kubectl ... -w` and returns a function that stops it and
// returns the lines it printed.
func (c *Cluster) Watch(user string, args ...string) (func() []string, error) {
	cmd := exec.Command(c.Bin["kubectl"], append([]string{"--kubeconfig=" + c.Kubeconfigs[user]}, args...)...)
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

// Options shape the cluster.
type Options struct {
	// RepaveDuration, RebootDuration and PowerDuration are the mock
	// datacenters' operation times (defaults 4s, 1s, 500ms).
	RepaveDuration, RebootDuration, PowerDuration time.Duration
	// MockDCMaxRunning is how many jobs each mock datacenter runs at once (default 10).
	MockDCMaxRunning int
	// MockDCInMemory runs the mock datacenters without a state file. Theirs
	// rewrites all their state on every change, which a benchmark of
	// thousands of Jobs would measure instead of Stargate.
	MockDCInMemory bool
	// StargateArgs are added to stargate-apiserver's flags.
	StargateArgs []string
	// StargateEnv is added to the environment of every stargate-apiserver
	// (e.g. GOMEMLIMIT).
	StargateEnv []string
}

func (o *Options) defaults() {
	if o.RepaveDuration <= 0 {
		o.RepaveDuration = 4 * time.Second
	}
	if o.RebootDuration <= 0 {
		o.RebootDuration = time.Second
	}
	if o.PowerDuration <= 0 {
		o.PowerDuration = 500 * time.Millisecond
	}
	if o.MockDCMaxRunning <= 0 {
		o.MockDCMaxRunning = 10
	}
}

// PID is the process ID of a started process ("etcd", "kube-apiserver",
// "stargate-apiserver", "mockdc-dc-west"...), 0 if it is not running.
func (c *Cluster) PID(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[name]; p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// RepaveDuration is the mock datacenters' repave time.
func (c *Cluster) RepaveDuration() time.Duration { return c.opts.RepaveDuration }

func tlsConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// UserTLS is a TLS configuration presenting user's client certificate and
// trusting Stargate's serving CA: straight to Stargate, past the aggregator.
func (c *Cluster) UserTLS(user string) (*tls.Config, error) {
	file := strings.ReplaceAll(user, ":", "_")
	cert, err := tls.LoadX509KeyPair(c.PKI.Path(file+".crt"), c.PKI.Path(file+".key"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.PKI.StargateCA.Cert)
	cfg := tlsConfig(pool)
	cfg.Certificates = []tls.Certificate{cert}
	return cfg, nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Token is the bearer token of a mock datacenter (for its /debug endpoints).
func (c *Cluster) Token(dc string) string {
	b, _ := os.ReadFile(filepath.Join(c.CredsDir, dc))
	return string(b)
}
