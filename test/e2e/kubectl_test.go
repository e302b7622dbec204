//go:build e2e

package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDiscoveryThroughTheAggregator: kubectl sees stargate.io like any group.
func TestDiscoveryThroughTheAggregator(t *testing.T) {
	out := ok(t, "admin", "api-resources", "--api-group=stargate.io")
	for _, want := range []string{"hardwares", "hw", "templates", "jobs", "datacenters", "stargate.io/v1alpha1"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl api-resources lacks %q:\n%s", want, out)
		}
	}
	if v := ok(t, "admin", "version", "-o", "json"); !strings.Contains(v, `"gitVersion": "v1.37.2"`) {
		t.Errorf("kubectl version does not report v1.37.2:\n%s", v)
	}
}

// TestKubectlAsUsual: the verbs an operator reaches for, on stargate.io
// objects, through kube-apiserver.
func TestKubectlAsUsual(t *testing.T) {
	applySamples(t)

	// /repave through kubectl create --raw: the answer is the RepaveRequest,
	// status.job names the Job; then kubectl wait on the Job's condition.
	body := ok(t, "admin", "create", "--raw", "/apis/stargate.io/v1alpha1/namespaces/dc-west/hardwares/server-002/repave",
		"-f", filepath.Join(env.Root, "artifacts/samples/repave-request.json"))
	var answer struct {
		Kind string `json:"kind"`
		Spec struct {
			TemplateRef struct {
				Name string `json:"name"`
			} `json:"templateRef"`
			BackoffLimit *int32 `json:"backoffLimit"`
		} `json:"spec"`
		Status struct {
			Job struct {
				Name string `json:"name"`
				UID  string `json:"uid"`
			} `json:"job"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil || answer.Kind != "RepaveRequest" ||
		answer.Spec.TemplateRef.Name != "os-2-0-0" || answer.Spec.BackoffLimit == nil || *answer.Spec.BackoffLimit != 3 ||
		!strings.HasPrefix(answer.Status.Job.Name, "server-002-repave-") || answer.Status.Job.UID == "" {
		t.Fatalf("/repave answered %v:\n%s\nwant the RepaveRequest with backoffLimit 3 and status.job", err, body)
	}
	jobName := answer.Status.Job.Name
	// The README shows this answer, whole.
	readme := `{"kind":"RepaveRequest","apiVersion":"stargate.io/v1alpha1","metadata":{"namespace":"dc-west"},` +
		`"spec":{"templateRef":{"name":"os-2-0-0"},"backoffLimit":3},"status":{"job":{"name":"` + jobName + `","uid":"` + answer.Status.Job.UID + `"}}}`
	if strings.TrimSpace(body) != readme {
		t.Errorf("/repave answered\n%s\nnot as the README shows:\n%s", body, readme)
	}
	if uid := ok(t, "admin", "get", "job.stargate.io", "-n", "dc-west", jobName, "-o", "jsonpath={.metadata.uid}"); strings.TrimSpace(uid) != answer.Status.Job.UID {
		t.Errorf("Job %s has uid %q, the answer said %q", jobName, uid, answer.Status.Job.UID)
	}
	ok(t, "admin", "wait", "-n", "dc-west", "--for=condition=Complete", "job.stargate.io/"+jobName, "--timeout=90s")

	// The Job controller's Events reach the hosting cluster.
	eventually(t, 30*time.Second, "the Job's Events", func() (string, bool) {
		out, _ := env.Kubectl("admin", "get", "events", "-n", "dc-west", "--field-selector", "involvedObject.name="+jobName)
		return out, strings.Contains(out, "Submitted") && strings.Contains(out, "Completed")
	})

	describe := ok(t, "admin", "describe", "job.stargate.io", "-n", "dc-west", jobName)
	for _, want := range []string{"Name:", jobName, "Operation:", "repave", "Phase:", "Succeeded", "Complete", "Events:"} {
		if !strings.Contains(describe, want) {
			t.Errorf("kubectl describe lacks %q:\n%s", want, describe)
		}
	}
	explain := ok(t, "admin", "explain", "hardware.spec")
	for _, want := range []string{"KIND:", "Hardware", "stargate.io", "mac", "ipv4"} {
		if !strings.Contains(explain, want) {
			t.Errorf("kubectl explain hardware.spec lacks %q:\n%s", want, explain)
		}
	}

	// Server-side apply: a second field manager's conflicting change is refused.
	tmpl := `apiVersion: stargate.io/v1alpha1
kind: Template
metadata:
  name: os-3-0-0
  namespace: dc-west
spec:
  osVersion: "3.0.0"
  osImage: https://images.example.com/os-3.0.0.img
`
	if out, err := env.KubectlIn("admin", tmpl, "apply", "--server-side", "--field-manager=fleet", "-f", "-"); err != nil {
		t.Fatalf("apply --server-side: %v\n%s", err, out)
	}
	out, err := env.KubectlIn("admin", strings.Replace(tmpl, `"3.0.0"`, `"3.0.1"`, 1), "apply", "--server-side", "--field-manager=other", "-f", "-")
	if err == nil || !strings.Contains(out, "conflict") {
		t.Errorf("a conflicting server-side apply was not refused: %v\n%s", err, out)
	}
	if v := ok(t, "admin", "get", "template", "-n", "dc-west", "os-3-0-0", "-o", "jsonpath={.spec.osVersion}"); v != "3.0.0" {
		t.Errorf("osVersion %q after the refused apply", v)
	}

	all := ok(t, "admin", "get", "stargate", "-A")
	for _, want := range []string{"hardware.stargate.io/server-001", "template.stargate.io/os-2-0-0", "datacenter.stargate.io/dc-west", "job.stargate.io/" + jobName} {
		if !strings.Contains(all, want) {
			t.Errorf("kubectl get stargate -A lacks %s:\n%s", want, all)
		}
	}
}

// TestNamespaceLifecycle: objects in a namespace the cluster does not have
// are refused by admission, as for built-in resources.
func TestNamespaceLifecycle(t *testing.T) {
	hw := `apiVersion: stargate.io/v1alpha1
kind: Hardware
metadata:
  name: ghost
  namespace: no-such-namespace
spec:
  mac: "aa:bb:cc:dd:ee:99"
  ipv4: "10.9.9.9"
`
	out, err := env.KubectlIn("admin", hw, "create", "-f", "-")
	if err == nil || !strings.Contains(out, `namespaces "no-such-namespace" not found`) {
		t.Errorf("a Hardware in a missing namespace: %v\n%s", err, out)
	}
}
