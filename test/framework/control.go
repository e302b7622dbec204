package framework

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"

	"stargate.io/stargate/mockdc"
)

// What the fault tests use to break the cluster and to judge the outcome.

// Signal sends sig to a started process (and its process group).
func (c *Cluster) Signal(name string, sig syscall.Signal) error {
	pid := c.PID(name)
	if pid == 0 {
		return fmt.Errorf("%s is not running", name)
	}
	return syscall.Kill(-pid, sig)
}

// Kill stops a started process and waits until it is gone: SIGKILL when
// hard, else SIGTERM (SIGKILL after 20s).
func (c *Cluster) Kill(name string, hard bool) {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p != nil {
		p.kill(hard)
	}
}

// AddStargateFlags adds flags and environment to every stargate-apiserver
// started from now on (RestartStargate, StartReplica).
func (c *Cluster) AddStargateFlags(args []string, env []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stargateArgs = append(c.stargateArgs, args...)
	c.opts.StargateEnv = append(c.opts.StargateEnv, env...)
}

// StartReplica starts one more stargate-apiserver, named name (which must
// begin with "stargate-apiserver-"), with the same flags and etcd as the
// first but its own port and data directory, and waits until it is ready.
// It is not behind the APIService: clients reach it on the returned port.
func (c *Cluster) StartReplica(name string) (int, error) {
	return c.StartReplicaWith(name, nil, nil)
}

// StartReplicaWith is StartReplica without the first replica's flags that
// begin with one of drop, and with env added to its environment.
func (c *Cluster) StartReplicaWith(name string, drop []string, env []string) (int, error) {
	if !strings.HasPrefix(name, "stargate-apiserver-") {
		return 0, fmt.Errorf("a replica's name begins with stargate-apiserver-, not %q", name)
	}
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	args := slices.DeleteFunc(slices.Clone(c.stargateArgs), func(a string) bool {
		return slices.ContainsFunc(drop, func(prefix string) bool { return strings.HasPrefix(a, prefix) })
	})
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--secure-port="):
			args[i] = fmt.Sprintf("--secure-port=%d", port)
		case strings.HasPrefix(a, "--data-dir="):
			args[i] = "--data-dir=" + filepath.Join(c.Work, name)
		}
	}
	if _, err := c.startWithEnv(name, env, c.Bin["stargate-apiserver"], args...); err != nil {
		return 0, err
	}
	return port, waitFor(name, 5*time.Minute, func() error {
		return httpOK(c.StargateHTTP(), fmt.Sprintf("https://127.0.0.1:%d/readyz", port))
	})
}

// Ready is nil when the Stargate on port answers /readyz with 200.
func (c *Cluster) Ready(port int) error {
	return httpOK(c.StargateHTTP(), fmt.Sprintf("https://127.0.0.1:%d/readyz", port))
}

// RESTConfig is a client configuration for user, straight to the Stargate
// on port, or through kube-apiserver's aggregator when port is 0. Client
// rate limits are off.
func (c *Cluster) RESTConfig(user string, port int) *rest.Config {
	file := strings.ReplaceAll(user, ":", "_")
	cfg := &rest.Config{Host: c.KubeURL, QPS: -1, TLSClientConfig: rest.TLSClientConfig{
		CertFile: c.PKI.Path(file + ".crt"), KeyFile: c.PKI.Path(file + ".key"), CAFile: c.PKI.ClusterCA.CertFile}}
	if port != 0 {
		cfg.Host = fmt.Sprintf("https://127.0.0.1:%d", port)
		cfg.CAFile = c.PKI.StargateCA.CertFile
	}
	return cfg
}

// Ledger is every job mock datacenter dc has started, in order: the oracle
// of what really ran.
func (c *Cluster) Ledger(dc string) ([]mockdc.LedgerEntry, error) {
	var ledger []mockdc.LedgerEntry
	return ledger, c.mockDebug(dc, http.MethodGet, "/debug/ledger", nil, &ledger)
}

// SetFaults switches the faults of mock datacenter dc at once.
func (c *Cluster) SetFaults(dc string, f mockdc.Faults) error {
	body, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return c.mockDebug(dc, http.MethodPost, "/debug/faults", body, nil)
}

// MockCounter sums the samples of a counter of mock datacenter dc's /metrics
// whose line has every one of the given substrings (label matches).
func (c *Cluster) MockCounter(dc, name string, has ...string) (float64, error) {
	var text string
	if err := c.mockDebug(dc, http.MethodGet, "/metrics", nil, &text); err != nil {
		return 0, err
	}
	total := 0.0
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		matches := true
		for _, h := range has {
			matches = matches && strings.Contains(line, h)
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); matches && err == nil {
			total += v
		}
	}
	return total, nil
}

func (c *Cluster) mockDebug(dc, method, path string, body []byte, into any) error {
	req, err := http.NewRequest(method, c.MockDC[dc]+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token(dc))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s on %s: %s", method, path, dc, resp.Status)
	}
	switch into := into.(type) {
	case nil:
		return nil
	case *string:
		data, err := io.ReadAll(resp.Body)
		*into = string(data)
		return err
	default:
		return json.NewDecoder(resp.Body).Decode(into)
	}
}

// Logs is the captured output of every process started so far, by name.
func (c *Cluster) Logs() (map[string][]byte, error) {
	c.mu.Lock()
	files := map[string]string{}
	for name, p := range c.procs {
		files[name] = p.log
	}
	c.mu.Unlock()
	out := map[string][]byte{}
	for name, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		out[name] = data
	}
	return out, nil
}
