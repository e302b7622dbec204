//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDeployManifestsPassServerDryRun: what a user deploys (the base with
// hack/gen-certs.sh's certificates) is accepted by a real kube-apiserver.
func TestDeployManifestsPassServerDryRun(t *testing.T) {
	out := filepath.Join(env.Work, "deploy")
	gen := exec.Command(filepath.Join(env.Root, "hack/gen-certs.sh"), out)
	gen.Dir = env.Root
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("hack/gen-certs.sh: %v\n%s", err, b)
	}
	applied := ok(t, "admin", "apply", "--dry-run=server", "-k", out)
	for _, want := range []string{"deployment.apps/stargate-apiserver", "statefulset.apps/stargate-etcd",
		"apiservice.apiregistration.k8s.io/v1alpha1.stargate.io", "secret/stargate-serving-cert",
		"clusterrole.rbac.authorization.k8s.io/stargate-operator", "(server dry run)"} {
		if !strings.Contains(applied, want) {
			t.Errorf("dry run lacks %s:\n%s", want, applied)
		}
	}
	// The cert-manager overlay needs cert-manager's CRDs to apply; it must build.
	ok(t, "admin", "kustomize", filepath.Join(env.Root, "artifacts/deploy/overlays/cert-manager"))
}

// TestRestartMidJob: stargate-apiserver is killed (SIGKILL) while a repave
// runs. It comes back, the APIService is Available again, the Job finishes,
// and the datacenter ran it once.
func TestRestartMidJob(t *testing.T) {
	applySamples(t)
	objects := `apiVersion: stargate.io/v1alpha1
kind: Template
metadata: {name: os-2-0-0, namespace: dc-east}
spec: {osVersion: "2.0.0", osImage: "https://images.example.com/os-2.0.0.img"}
---
apiVersion: stargate.io/v1alpha1
kind: Hardware
metadata: {name: east-001, namespace: dc-east}
spec: {mac: "aa:bb:cc:dd:ff:01", ipv4: "10.0.2.5"}
---
apiVersion: stargate.io/v1alpha1
kind: Job
metadata: {name: repave-east-001, namespace: dc-east}
spec: {hardwareRef: {name: east-001}, templateRef: {name: os-2-0-0}, operation: repave}
`
	if out, err := env.KubectlIn("admin", objects, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ok(t, "admin", "wait", "-n", "dc-east", "--for=jsonpath={.status.phase}=Running", "job.stargate.io/repave-east-001", "--timeout=60s")
	uid := ok(t, "admin", "get", "job.stargate.io", "-n", "dc-east", "repave-east-001", "-o", "jsonpath={.metadata.uid}")

	start := time.Now()
	if err := env.RestartStargate(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed and back (APIService Available) in %s", time.Since(start).Round(time.Millisecond))
	ok(t, "admin", "wait", "-n", "dc-east", "--for=condition=Complete", "job.stargate.io/repave-east-001", "--timeout=90s")
	if out := ok(t, "admin", "get", "hardware", "-n", "dc-east", "east-001"); !strings.Contains(out, "2.0.0") {
		t.Errorf("the Hardware after the restart:\n%s", out)
	}
	// Nothing written before the kill is lost.
	if out := ok(t, "admin", "get", "template", "-n", "dc-east", "os-2-0-0", "-o", "name"); strings.TrimSpace(out) != "template.stargate.io/os-2-0-0" {
		t.Errorf("the Template after the restart: %s", out)
	}
	if n := ledgerCount(t, "dc-east", uid); n != 1 {
		t.Errorf("the Job executed %d times at dc-east, want 1", n)
	}
}

// ledgerCount reads a mock datacenter's ledger: how often a key was executed.
func ledgerCount(t *testing.T, dc, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, env.MockDC[dc]+"/debug/ledger", nil)
	req.Header.Set("Authorization", "Bearer "+env.Token(dc))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var ledger []struct {
		IdempotencyKey string `json:"idempotencyKey"`
	}
	if err := json.Unmarshal(body, &ledger); err != nil {
		t.Fatalf("ledger: %v: %s", err, body)
	}
	n := 0
	for _, e := range ledger {
		if e.IdempotencyKey == key {
			n++
		}
	}
	return n
}
