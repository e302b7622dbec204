//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// applySamples applies the README's samples, with the suite's mock
// datacenter addresses in place of make run's.
func applySamples(t *testing.T) {
	t.Helper()
	// On a cluster, namespaces are the cluster's: NamespaceLifecycle refuses
	// objects in one that does not exist.
	for _, ns := range []string{"dc-west", "dc-east"} {
		if out, err := env.Kubectl("admin", "get", "namespace", ns); err != nil {
			ok(t, "admin", "create", "namespace", ns)
		} else if !strings.Contains(out, ns) {
			t.Fatalf("kubectl get namespace %s: %s", ns, out)
		}
	}
	dcs, err := os.ReadFile(filepath.Join(env.Root, "artifacts/samples/datacenters.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := strings.NewReplacer("http://127.0.0.1:8080", env.MockDC["dc-west"], "http://127.0.0.1:8081", env.MockDC["dc-east"]).Replace(string(dcs))
	if out, err := env.KubectlIn("admin", manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply datacenters: %v\n%s", err, out)
	}
	samples := filepath.Join(env.Root, "artifacts/samples")
	ok(t, "admin", "apply", "-f", filepath.Join(samples, "hardware.yaml"), "-f", filepath.Join(samples, "template.yaml"))
}

// rows returns kubectl's table output as whitespace-split fields per line.
func rows(out string) [][]string {
	var r [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		r = append(r, strings.Fields(line))
	}
	return r
}

// row returns the fields of the row whose first column is name, with the
// header's fields first.
func row(out, name string) (header, fields []string) {
	r := rows(out)
	if len(r) == 0 {
		return nil, nil
	}
	for _, f := range r[1:] {
		if len(f) > 0 && f[0] == name {
			return r[0], f
		}
	}
	return r[0], nil
}

// eventually retries check (a kubectl call and its assertion) for up to timeout.
func eventually(t *testing.T, timeout time.Duration, what string, check func() (string, bool)) string {
	t.Helper()
	var last string
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, ok := check()
		if ok {
			return out
		}
		last = out
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: not after %s; last output:\n%s", what, timeout, last)
	return ""
}

// TestSeedWalkThrough is the seed README through kube-apiserver with kubectl:
// the inventory with the seed's columns, a repave Job watched from Pending to
// Succeeded, and the Hardware running the new OS.
func TestSeedWalkThrough(t *testing.T) {
	applySamples(t)
	eventually(t, time.Minute, "the inventory looked up at dc-west", func() (string, bool) {
		out, _ := env.Kubectl("admin", "get", "hardwares", "-n", "dc-west")
		header, server1 := row(out, "server-001")
		return out, strings.Join(header, " ") == "NAME STATE OS IPV4" && strings.Join(server1, " ") == "server-001 ready 1.0.0 10.0.1.5"
	})

	stop, err := env.Watch("admin", "get", "jobs.stargate.io", "-n", "dc-west", "-w")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the watch is listening before the Job exists
	ok(t, "admin", "apply", "-f", filepath.Join(env.Root, "artifacts/samples/job-repave.yaml"))
	started := time.Now()
	ok(t, "admin", "wait", "-n", "dc-west", "--for=jsonpath={.status.phase}=Succeeded", "job.stargate.io/repave-server-001", "--timeout=90s")
	took := time.Since(started)
	time.Sleep(500 * time.Millisecond) // let the watch print the last event
	lines := stop()
	if took < env.RepaveDuration() {
		t.Errorf("the repave finished in %s, before the datacenter's %s repave could", took, env.RepaveDuration())
	}

	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "NAME HARDWARE OPERATION PHASE AGE" {
		t.Fatalf("watch header: %q", lines)
	}
	var phases []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) == 5 && f[0] == "repave-server-001" && f[1] == "server-001" && f[2] == "repave" &&
			(len(phases) == 0 || phases[len(phases)-1] != f[3]) {
			phases = append(phases, f[3])
		}
	}
	if strings.Join(phases, ",") != "Pending,Running,Succeeded" {
		t.Errorf("the watch showed phases %v, want Pending, Running, Succeeded:\n%s", phases, strings.Join(lines, "\n"))
	}

	out := ok(t, "admin", "get", "hardwares", "-n", "dc-west")
	if _, server1 := row(out, "server-001"); strings.Join(server1, " ") != "server-001 ready 2.0.0 10.0.1.5" {
		t.Errorf("after the repave:\n%s", out)
	}
}
