//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

const rbacFixture = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: e2e-viewers
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: stargate-viewer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: viewers}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: e2e-repavers-view
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: stargate-viewer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: repavers}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: repave-only
  namespace: dc-west
rules:
  - apiGroups: ["stargate.io"]
    resources: ["hardwares/repave"]
    verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: repavers
  namespace: dc-west
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: repave-only}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: repavers}]
`

const rbacHardware = `apiVersion: stargate.io/v1alpha1
kind: Hardware
metadata:
  name: rbac-001
  namespace: dc-west
spec:
  mac: "aa:bb:cc:dd:ee:10"
  ipv4: "10.0.1.20"
`

func forbidden(t *testing.T, what, out string, err error) {
	t.Helper()
	if err == nil || !strings.Contains(out, "Forbidden") {
		t.Errorf("%s was not refused with 403 Forbidden: %v\n%s", what, err, out)
	}
}

// TestRBAC: kube-apiserver's RBAC decides who may do what on stargate.io,
// subresources included, through Stargate's delegated authorization.
func TestRBAC(t *testing.T) {
	applySamples(t)
	if out, err := env.KubectlIn("admin", rbacFixture+"---\n"+rbacHardware, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	repave := []string{"create", "--raw", "/apis/stargate.io/v1alpha1/namespaces/dc-west/hardwares/rbac-001/repave",
		"-f", env.Root + "/artifacts/samples/repave-request.json"}
	job := `apiVersion: stargate.io/v1alpha1
kind: Job
metadata: {name: rbac-reboot, namespace: dc-west}
spec: {hardwareRef: {name: rbac-001}, operation: reboot}
`

	// alice (stargate-viewer) reads, and nothing more.
	if out := ok(t, "alice", "get", "hardwares", "-n", "dc-west"); !strings.Contains(out, "rbac-001") {
		t.Errorf("alice cannot see the inventory:\n%s", out)
	}
	out, err := env.Kubectl("alice", repave...)
	forbidden(t, "alice's /repave", out, err)
	out, err = env.KubectlIn("alice", job, "create", "-f", "-")
	forbidden(t, "alice's Job create", out, err)

	// bob may repave (create hardwares/repave), but not edit Hardware or its status.
	var answer struct {
		Kind   string `json:"kind"`
		Status struct {
			Job struct {
				Name string `json:"name"`
			} `json:"job"`
		} `json:"status"`
	}
	out = ok(t, "bob", repave...)
	if err := json.Unmarshal([]byte(out), &answer); err != nil || answer.Kind != "RepaveRequest" || answer.Status.Job.Name == "" {
		t.Errorf("bob's /repave answered %v:\n%s\nwant a RepaveRequest naming its Job", err, out)
	} else if hw := ok(t, "admin", "get", "job.stargate.io", "-n", "dc-west", answer.Status.Job.Name,
		"-o", "jsonpath={.spec.hardwareRef.name}"); strings.TrimSpace(hw) != "rbac-001" {
		t.Errorf("bob's /repave made Job %s for %q, want rbac-001", answer.Status.Job.Name, hw)
	}
	out, err = env.Kubectl("bob", "label", "hardware", "-n", "dc-west", "rbac-001", "owner=bob")
	forbidden(t, "bob's Hardware edit", out, err)
	out, err = env.Kubectl("bob", "patch", "hardware", "-n", "dc-west", "rbac-001", "--subresource=status", "--type=merge",
		"-p", `{"status":{"state":"ready"}}`)
	forbidden(t, "bob's status write", out, err)
	out, err = env.KubectlIn("bob", job, "create", "-f", "-")
	forbidden(t, "bob's Job create", out, err)
}

// TestNoWayAroundTheFrontProxy: straight to Stargate's port, X-Remote-*
// headers count only with the front-proxy client certificate.
func TestNoWayAroundTheFrontProxy(t *testing.T) {
	url := fmt.Sprintf("https://127.0.0.1:%d/apis/stargate.io/v1alpha1/namespaces/dc-west/hardwares", env.StargatePort)
	// forged sends a request claiming to be admin in system:masters.
	forged := func(client *http.Client, method, url string) int {
		req, _ := http.NewRequest(method, url, nil)
		req.Header.Set("X-Remote-User", "admin")
		req.Header.Set("X-Remote-Group", "system:masters")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := forged(env.StargateHTTP(), http.MethodGet, url); code != http.StatusUnauthorized {
		t.Errorf("forged headers without a client certificate: %d, want 401", code)
	}
	// With a valid client certificate that is not the front proxy's, the
	// request is that certificate's user (alice), not the forged admin.
	cfg, err := env.UserTLS("alice")
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	if code := forged(withCert, http.MethodDelete, url+"/server-001"); code != http.StatusForbidden {
		t.Errorf("alice's certificate with forged admin headers deleting Hardware: %d, want 403", code)
	}
	// Plain HTTP is not served at all.
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/apis", env.StargatePort)); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP answered %d", resp.StatusCode)
		}
	}
}
