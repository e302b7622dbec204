//go:build faults

package faults

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// TestSecurity checks what an attacker on the network or a user with few
// rights can do, and that the datacenter token leaks nowhere, including
// after it is rotated (the new one is picked up without a restart).
func TestSecurity(t *testing.T) {
	ctx := context.Background()
	base := fmt.Sprintf("https://127.0.0.1:%d", env.StargatePort)
	checks := 0
	expect := func(what string, got, want int) {
		t.Helper()
		checks++
		if got != want {
			t.Errorf("%s: %d, want %d", what, got, want)
		}
	}
	do := func(client *http.Client, method, url string, header map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// Plain HTTP on the secure port: refused by the TLS server.
	plain := &http.Client{Timeout: 10 * time.Second}
	expect("plain HTTP", do(plain, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/apis/stargate.io/v1alpha1/hardwares", env.StargatePort), nil), http.StatusBadRequest)

	// No client certificate: anonymous, and forged front-proxy headers.
	anonymous := env.StargateHTTP()
	forged := map[string]string{"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}
	for _, path := range []string{"/apis/stargate.io/v1alpha1/hardwares", "/debug/pprof/", "/metrics", "/openapi/v3"} {
		expect("anonymous GET "+path, do(anonymous, http.MethodGet, base+path, nil), http.StatusUnauthorized)
		expect("forged headers GET "+path, do(anonymous, http.MethodGet, base+path, forged), http.StatusUnauthorized)
	}

	// A viewer (the shipped stargate-viewer role), straight to Stargate with
	// her own certificate: reads, but no repave, no Job create, no status
	// writes, no debug or metrics endpoints.
	if out, err := env.Kubectl("admin", "create", "clusterrolebinding", "faults-viewers", "--clusterrole=stargate-viewer", "--group=viewers"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	aliceTLS, err := env.UserTLS("alice")
	if err != nil {
		t.Fatal(err)
	}
	alice := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: aliceTLS}}
	ns := base + "/apis/stargate.io/v1alpha1/namespaces/dc-west"
	expect("viewer lists Hardware", do(alice, http.MethodGet, ns+"/hardwares", nil), http.StatusOK)
	expect("viewer repaves", do(alice, http.MethodPost, ns+"/hardwares/sec-0000/repave", nil), http.StatusForbidden)
	expect("viewer creates a Job", do(alice, http.MethodPost, ns+"/jobs", nil), http.StatusForbidden)
	expect("viewer writes Hardware status", do(alice, http.MethodPatch, ns+"/hardwares/sec-0000/status",
		map[string]string{"Content-Type": "application/merge-patch+json"}), http.StatusForbidden)
	expect("viewer writes Job status", do(alice, http.MethodPatch, ns+"/jobs/sec-job/status",
		map[string]string{"Content-Type": "application/merge-patch+json"}), http.StatusForbidden)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine", "/metrics", "/debug/flags/v"} {
		expect("viewer GET "+path, do(alice, http.MethodGet, base+path, nil), http.StatusForbidden)
	}
	// The same denials through kube-apiserver, with kubectl.
	for _, args := range [][]string{
		{"create", "--raw", "/apis/stargate.io/v1alpha1/namespaces/dc-west/hardwares/sec-0000/repave", "-f", "-"},
		{"create", "-f", "-"},
	} {
		checks++
		out, err := env.KubectlIn("alice", `{"apiVersion":"stargate.io/v1alpha1","kind":"Job","metadata":{"name":"x","namespace":"dc-west"},"spec":{"hardwareRef":{"name":"sec-0000"},"operation":"reboot"}}`, args...)
		if err == nil || !strings.Contains(out, "forbidden") {
			t.Errorf("kubectl %v as a viewer: %v %s", args, err, out)
		}
	}
	adminTLS, err := env.UserTLS("admin")
	if err != nil {
		t.Fatal(err)
	}
	admin := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: adminTLS}}
	expect("admin GET /debug/pprof/", do(admin, http.MethodGet, base+"/debug/pprof/", nil), http.StatusOK)

	// Token rotation: a new token in the file both sides read. Jobs keep
	// running; the old token is refused by the datacenter from then on.
	createHardware(t, "sec", 1)
	runJob := func(name string) *v1alpha1.Job {
		t.Helper()
		if _, err := sg.StargateV1alpha1().Jobs("dc-west").Create(ctx, job(name, "sec-0000", "security", v1alpha1.OperationReboot), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var got *v1alpha1.Job
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err = sg.StargateV1alpha1().Jobs("dc-west").Get(ctx, name, metav1.GetOptions{})
			return err == nil && finished(got), nil
		}); err != nil {
			t.Fatalf("Job %s did not finish: %+v", name, got)
		}
		return got
	}
	oldToken := env.Token("dc-west")
	if j := runJob("sec-before"); j.Status.Phase != v1alpha1.JobSucceeded {
		t.Fatalf("before the rotation: %+v", j.Status)
	}
	newToken := "rotated-" + fmt.Sprint(time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(env.CredsDir, "dc-west"), []byte(newToken), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := env.PID("stargate-apiserver")
	checks++
	if j := runJob("sec-after"); j.Status.Phase != v1alpha1.JobSucceeded {
		t.Errorf("after the rotation: %+v", j.Status)
	}
	if env.PID("stargate-apiserver") != pid {
		t.Error("stargate-apiserver restarted to pick up the token")
	}
	req, _ := http.NewRequest(http.MethodGet, env.MockDC["dc-west"]+"/v1/jobs?idempotencyKey=x", nil)
	req.Header.Set("Authorization", "Bearer "+oldToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	expect("the datacenter with the old token", resp.StatusCode, http.StatusUnauthorized)

	// Neither token anywhere: logs of every process, Events, every object.
	places := map[string][]byte{}
	logs, err := env.Logs()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range logs {
		places["log of "+name] = data
	}
	for _, what := range []string{"events", "hardwares.stargate.io", "jobs.stargate.io", "datacenters.stargate.io", "templates.stargate.io"} {
		out, err := env.Kubectl("admin", "get", what, "-A", "-o", "yaml")
		if err != nil {
			t.Fatalf("kubectl get %s: %v %s", what, err, out)
		}
		places["kubectl get "+what] = []byte(out)
	}
	for place, data := range places {
		for _, token := range []string{oldToken, newToken} {
			checks++
			if strings.Contains(string(data), token) {
				t.Errorf("a datacenter token appears in the %s", place)
			}
		}
	}
	record(t, row{Fault: "security: plain HTTP, anonymous, forged headers, RBAC, debug endpoints, token leaks and rotation",
		Runs: checks, Jobs: 2, Recovery: "-",
		Note: fmt.Sprintf("%d checks; token searched in %d logs and object dumps", checks, len(places))})
}
