//go:build e2e

package e2e

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/yaml"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// TestCampaignWithKubectl: Campaigns through kube-apiserver as an operator
// meets them: the sample's plan from a server-side dry run, kubectl get's
// columns, kubectl explain, and an edit of the operation refused.
func TestCampaignWithKubectl(t *testing.T) {
	applySamples(t)
	// The sample selects the GPU servers of the eu datacenters: make
	// dc-west's two servers that (r01 holds the canary wave), for this test only.
	ok(t, "admin", "label", "--overwrite", "datacenter", "dc-west", "region=eu")
	ok(t, "admin", "label", "--overwrite", "-n", "dc-west", "hardware", "server-001", "pool=gpu", "topology.stargate.io/rack=r01")
	ok(t, "admin", "label", "--overwrite", "-n", "dc-west", "hardware", "server-002", "pool=gpu", "topology.stargate.io/rack=r02")
	t.Cleanup(func() {
		env.Kubectl("admin", "label", "datacenter", "dc-west", "region-")
		env.Kubectl("admin", "label", "-n", "dc-west", "hardware", "server-001", "server-002", "pool-", "topology.stargate.io/rack-")
	})

	sample := filepath.Join(env.Root, "artifacts/samples/campaign.yaml")
	out := ok(t, "admin", "create", "--dry-run=server", "-o", "yaml", "-f", sample)
	var planned v1alpha1.Campaign
	if err := yaml.Unmarshal([]byte(out), &planned); err != nil {
		t.Fatalf("kubectl create --dry-run=server -o yaml: %v\n%s", err, out)
	}
	st := planned.Status
	var inWaves int32
	for _, w := range st.Plan {
		inWaves += w.Members
	}
	// Both servers are targets; one already at 2.0.0 (a repave by another
	// test) is skipped, the others are in the waves.
	if st.Counts.Targets != 2 || st.Counts.Skipped+st.Counts.Pending != 2 || inWaves != st.Counts.Pending || len(st.Plan) == 0 {
		t.Fatalf("the dry run's plan: counts %+v, plan %+v\n%s", st.Counts, st.Plan, out)
	}
	for _, m := range st.Plan[0].FirstMembers {
		if !slices.Contains([]string{"dc-west/server-001", "dc-west/server-002"}, m) {
			t.Errorf("wave 1 names %s", m)
		}
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.CampaignConditionValidated); c == nil || c.Status != "True" {
		t.Errorf("Validated condition %+v\n%s", c, out)
	}
	for _, want := range []string{"plan:", "firstMembers:", "datacenters:", "name: dc-west"} {
		if !strings.Contains(out, want) {
			t.Errorf("the dry run's YAML lacks %q:\n%s", want, out)
		}
	}
	if out, err := env.Kubectl("admin", "get", "campaign", "os-2-rollout"); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("the dry run stored the Campaign: %v\n%s", err, out)
	}

	// A Campaign that selects no server, so it never operates on the
	// suite's Hardware whatever the controller does.
	idle := `apiVersion: stargate.io/v1alpha1
kind: Campaign
metadata:
  name: e2e-idle
spec:
  operation: reboot
  hardwareSelector:
    matchLabels:
      e2e: no-such-server
  paused: true
`
	if out, err := env.KubectlIn("admin", idle, "create", "-f", "-"); err != nil {
		t.Fatalf("kubectl create campaign: %v\n%s", err, out)
	}
	t.Cleanup(func() { env.Kubectl("admin", "delete", "campaign", "e2e-idle", "--wait=false") })

	out = ok(t, "admin", "get", "camp")
	header, idleRow := row(out, "e2e-idle")
	if got := strings.Join(header, " "); got != "NAME OPERATION TARGETS DONE FAILED WAVE PHASE AGE" {
		t.Errorf("kubectl get camp columns %q:\n%s", got, out)
	}
	if len(idleRow) != 8 || idleRow[1] != "reboot" {
		t.Errorf("kubectl get camp row %v:\n%s", idleRow, out)
	}
	if all := ok(t, "admin", "get", "stargate"); !strings.Contains(all, "campaign.stargate.io/e2e-idle") {
		t.Errorf("kubectl get stargate lacks the Campaign:\n%s", all)
	}

	explain := ok(t, "admin", "explain", "campaign.spec.waves")
	for _, want := range []string{"KIND:", "Campaign", "stargate.io", "size", "selector", "bakeDuration", "requireApproval"} {
		if !strings.Contains(explain, want) {
			t.Errorf("kubectl explain campaign.spec.waves lacks %q:\n%s", want, explain)
		}
	}

	out, err := env.Kubectl("admin", "patch", "campaign", "e2e-idle", "--type=merge", "-p", `{"spec":{"operation":"power-off"}}`)
	if err == nil || !strings.Contains(out, "is invalid") || !strings.Contains(out, "spec.operation: Forbidden: cannot be changed once the Campaign exists") {
		t.Errorf("changing the operation: %v\n%s", err, out)
	}
	// What operators do to a Campaign works.
	ok(t, "admin", "patch", "campaign", "e2e-idle", "--type=merge", "-p", `{"spec":{"paused":false,"approvedWaves":1}}`)
}
