package plugin

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	clienttesting "k8s.io/client-go/testing"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	planning "stargate.io/stargate/pkg/campaign"
)

// budgetsOf sets spec.failurePolicy.maxFailures; "" leaves a budget unset.
func budgetsOf(global, perDatacenter, perWave string) func(*v1alpha1.Campaign) {
	parse := func(s string) *intstr.IntOrString {
		if s == "" {
			return nil
		}
		v := intstr.Parse(s)
		return &v
	}
	return func(c *v1alpha1.Campaign) {
		c.Spec.FailurePolicy.MaxFailures = v1alpha1.CampaignFailureBudgets{
			Global: parse(global), PerDatacenter: parse(perDatacenter), PerWave: parse(perWave)}
	}
}

// failedIn sets the failures of dc-east and dc-west, and their sum.
func failedIn(east, west int32) func(*v1alpha1.Campaign) {
	return func(c *v1alpha1.Campaign) {
		c.Status.Datacenters[0].Counts.Failed = east
		c.Status.Datacenters[1].Counts.Failed = west
		c.Status.Counts.Failed = east + west
	}
}

// pausedBy sets the Paused condition the controller writes when a budget
// trips: reason FailureBudgetExceeded, the datacenters tripped alone
// (their pausedReason set) or the whole Campaign.
func pausedBy(message string, dcs ...int) func(*v1alpha1.Campaign) {
	return func(c *v1alpha1.Campaign) {
		c.Status.Phase = v1alpha1.CampaignPaused
		for _, i := range dcs {
			c.Status.Datacenters[i].PausedReason = v1alpha1.CampaignReasonFailureBudgetExceeded
		}
		condition(c, v1alpha1.CampaignConditionPaused, v1alpha1.CampaignReasonFailureBudgetExceeded, message)
	}
}

func TestResumeWithATrippedBudget(t *testing.T) {
	paused := func(c *v1alpha1.Campaign) { c.Spec.Paused = true }
	for _, tc := range []struct {
		name  string
		edits []func(*v1alpha1.Campaign)
		// scopes are the tripped scopes the error names, patch the
		// budgets it suggests ("" for no error).
		scopes []string
		patch  string
	}{
		{
			name: "a datacenter's budget, as in the sample (global 5%, perDatacenter 2)",
			edits: []func(*v1alpha1.Campaign){budgetsOf("5%", "2", ""), failedIn(3, 1),
				pausedBy("datacenters held: dc-east: FailureBudgetExceeded; failure budget exceeded (datacenter dc-east: 3 failed, budget 2): raise spec.failurePolicy.maxFailures to go on there", 0)},
			scopes: []string{"datacenter dc-east: 3 failed of 1250, budget 2"},
			patch:  `{"perDatacenter":3}`,
		},
		{
			name: "a datacenter's budget under a manual pause",
			edits: []func(*v1alpha1.Campaign){budgetsOf("5%", "2", ""), failedIn(3, 1), paused, func(c *v1alpha1.Campaign) {
				c.Status.Datacenters[0].PausedReason = v1alpha1.CampaignReasonFailureBudgetExceeded
				condition(c, v1alpha1.CampaignConditionPaused, v1alpha1.CampaignReasonManualPause, "spec.paused is true")
			}},
			scopes: []string{"datacenter dc-east: 3 failed of 1250, budget 2"},
			patch:  `{"perDatacenter":3}`,
		},
		{
			name: "a datacenter's percentage stays a percentage",
			edits: []func(*v1alpha1.Campaign){budgetsOf("50%", "5%", ""), failedIn(70, 100),
				pausedBy("datacenters held: dc-east: FailureBudgetExceeded; failure budget exceeded (datacenter dc-east: 70 failed, budget 5% (62 of 1250))", 0)},
			scopes: []string{"datacenter dc-east: 70 failed of 1250, budget 5% (62 of 1250)"},
			patch:  `{"perDatacenter":"6%"}`,
		},
		{
			name: "the global budget, a number",
			edits: []func(*v1alpha1.Campaign){budgetsOf("250", "300", ""), failedIn(60, 200),
				pausedBy("failure budget exceeded (global: 260 failed, budget 250): raise spec.failurePolicy.maxFailures to go on")},
			scopes: []string{"global: 260 failed of 5000, budget 250"},
			patch:  `{"global":260}`,
		},
		{
			name: "the global budget, a percentage",
			edits: []func(*v1alpha1.Campaign){budgetsOf("5%", "10%", ""), failedIn(60, 200),
				pausedBy("failure budget exceeded (global: 260 failed, budget 5% (250 of 5000)): raise spec.failurePolicy.maxFailures to go on")},
			scopes: []string{"global: 260 failed of 5000, budget 5% (250 of 5000)"},
			patch:  `{"global":"6%"}`,
		},
		{
			name: "the global budget counts no skipped member",
			edits: []func(*v1alpha1.Campaign){budgetsOf("5%", "", ""), failedIn(1, 200), func(c *v1alpha1.Campaign) {
				c.Status.Counts.Skipped = 1000 // 4000 members: 5% is 200
				c.Status.Datacenters[1].Counts.Skipped = 1000
			}, pausedBy("failure budget exceeded (global: 201 failed, budget 5% (200 of 4000)): raise spec.failurePolicy.maxFailures to go on")},
			scopes: []string{"global: 201 failed of 4000, budget 5% (200 of 4000)"},
			patch:  `{"global":"6%"}`,
		},
		{
			name: "global and datacenters",
			edits: []func(*v1alpha1.Campaign){budgetsOf("5%", "2", ""), failedIn(3, 257),
				pausedBy("failure budget exceeded (global: 260 failed, budget 5% (250 of 5000)): raise spec.failurePolicy.maxFailures to go on", 0, 1)},
			scopes: []string{"global: 260 failed of 5000, budget 5% (250 of 5000)",
				"datacenter dc-east: 3 failed of 1250, budget 2", "datacenter dc-west: 257 failed of 3750, budget 2"},
			patch: `{"global":"6%","perDatacenter":257}`,
		},
		{
			name: "a wave's budget",
			edits: []func(*v1alpha1.Campaign){budgetsOf("5%", "2", "3"), failedIn(2, 2),
				pausedBy("failure budget exceeded (wave 2: 4 failed, budget 3): raise spec.failurePolicy.maxFailures to go on")},
			scopes: []string{"a wave: perWave budget 3; status counts no failures per wave (4 failed in all)"},
			patch:  `{"perWave":4}`,
		},
		{
			name: "a wave's budget and a datacenter's",
			edits: []func(*v1alpha1.Campaign){budgetsOf("5%", "2", "3"), failedIn(0, 4),
				pausedBy("failure budget exceeded (wave 2: 4 failed, budget 3; datacenter dc-west: 4 failed, budget 2): raise spec.failurePolicy.maxFailures to go on")},
			scopes: []string{"datacenter dc-west: 4 failed of 3750, budget 2", "a wave: perWave budget 3; status counts no failures per wave (4 failed in all)"},
			patch:  `{"perDatacenter":4,"perWave":4}`,
		},
		{
			name: "a wave's percentage becomes a number no wave's budget exceeds",
			edits: []func(*v1alpha1.Campaign){budgetsOf("5%", "2", "1%"), failedIn(2, 2),
				pausedBy("failure budget exceeded (wave 1: 4 failed, budget 1% (0 of 50)): raise spec.failurePolicy.maxFailures to go on")},
			scopes: []string{"a wave: perWave budget 1%; status counts no failures per wave (4 failed in all)"},
			patch:  `{"perWave":50}`,
		},
		{
			name: "the budget raised already, the controller yet to see it",
			edits: []func(*v1alpha1.Campaign){budgetsOf("300", "", ""), failedIn(60, 200),
				pausedBy("failure budget exceeded (global: 260 failed, budget 250): raise spec.failurePolicy.maxFailures to go on"),
				func(c *v1alpha1.Campaign) { c.Generation = 2 }},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := campaign("os-2")
			for _, e := range tc.edits {
				e(c)
			}
			h := newHarness(t, false, c.DeepCopy())
			err := h.run("resume", "campaign/os-2")
			if tc.patch == "" {
				if err != nil {
					t.Fatalf("error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error, want one saying the Campaign stays paused")
			}
			msg := err.Error()
			for _, s := range tc.scopes {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q\ndoes not name the tripped scope %q", msg, s)
				}
			}
			want := `kubectl patch campaign os-2 --type=merge -p '{"spec":{"failurePolicy":{"maxFailures":` + tc.patch + `}}}'`
			if !strings.HasSuffix(msg, "\n  "+want) {
				t.Fatalf("error:\n%s\nwant it to end with\n  %s", msg, want)
			}
			if wave := strings.Contains(tc.patch, "perWave"); wave != strings.Contains(msg, "upper bound") {
				t.Errorf("error %q: says an upper bound %v, want %v", msg, !wave, wave)
			}
			checkRaised(t, c, tc.patch)

			patches := h.actions("patch", "campaigns")
			if paused := c.Spec.Paused; paused != (len(patches) == 1) {
				t.Fatalf("sent %d patches; the Campaign was paused: %v", len(patches), paused)
			}
			if len(patches) == 1 {
				if got := string(patches[0].(clienttesting.PatchAction).GetPatch()); got != `{"spec":{"paused":false}}` {
					t.Errorf("sent %s, want only spec.paused cleared", got)
				}
			}
		})
	}
}

// checkRaised checks the suggested budgets: none lowers the budget of any
// scope it applies to, and after it none of the tripped scopes trips.
func checkRaised(t *testing.T, c *v1alpha1.Campaign, patch string) {
	t.Helper()
	var suggested map[string]intstr.IntOrString
	if err := json.Unmarshal([]byte(patch), &suggested); err != nil {
		t.Fatal(err)
	}
	budgets := c.Spec.FailurePolicy.MaxFailures
	counts := c.Status.Counts
	total := int(counts.Targets - counts.Skipped)
	for key, v := range suggested {
		switch key {
		case budgetGlobal:
			if old, now := planning.Budget(budgets.Global, total), planning.Budget(&v, total); now <= old {
				t.Errorf("global: suggested %s allows %d failures, no more than %s's %d", v.String(), now, budgets.Global.String(), old)
			}
			if planning.Exceeded(int(counts.Failed), &v, total) {
				t.Errorf("global: %d failures still exceed the suggested %s", counts.Failed, v.String())
			}
		case budgetPerDatacenter:
			for _, dc := range c.Status.Datacenters {
				n := int(dc.Counts.Targets - dc.Counts.Skipped)
				old, now := planning.Budget(budgets.PerDatacenter, n), planning.Budget(&v, n)
				if now < old {
					t.Errorf("%s: suggested %s lowers its budget from %d to %d", dc.Name, v.String(), old, now)
				}
				if planning.Exceeded(int(dc.Counts.Failed), budgets.PerDatacenter, n) && now <= old {
					t.Errorf("%s: suggested %s does not raise its tripped budget %d", dc.Name, v.String(), old)
				}
				if planning.Exceeded(int(dc.Counts.Failed), &v, n) {
					t.Errorf("%s: %d failures still exceed the suggested %s", dc.Name, dc.Counts.Failed, v.String())
				}
			}
		case budgetPerWave:
			// A wave has at most every member: the budget there bounds any wave's.
			if v.Type != intstr.Int || v.IntValue() < planning.Budget(budgets.PerWave, total) || v.IntValue() < int(counts.Failed) {
				t.Errorf("perWave: suggested %s, want a number at least %d (the failures) and at least %d (%s of every member)",
					v.String(), counts.Failed, planning.Budget(budgets.PerWave, total), budgets.PerWave.String())
			}
			if v.IntValue() <= budgets.PerWave.IntValue() && budgets.PerWave.Type == intstr.Int {
				t.Errorf("perWave: suggested %s, not above %s", v.String(), budgets.PerWave.String())
			}
		default:
			t.Errorf("suggested an unknown budget %s", key)
		}
	}
}

func TestTrippedBudget(t *testing.T) {
	dcOnly := pausedBy("datacenters held: dc-east: FailureBudgetExceeded; failure budget exceeded (datacenter dc-east: 3 failed, budget 2): raise spec.failurePolicy.maxFailures to go on there", 0)
	for _, tc := range []struct {
		name    string
		edits   []func(*v1alpha1.Campaign)
		scope   string
		tripped bool
	}{
		{name: "no budget tripped", edits: []func(*v1alpha1.Campaign){budgetsOf("5%", "2", "")}},
		{name: "exceeded, but the controller has not paused for it yet",
			edits: []func(*v1alpha1.Campaign){budgetsOf("5%", "2", ""), failedIn(3, 1)}},
		{name: "a datacenter's, from the spec and status",
			edits:   []func(*v1alpha1.Campaign){budgetsOf("5%", "2", ""), failedIn(3, 1), dcOnly},
			scope:   "datacenter dc-east: 3 failed of 1250, budget 2",
			tripped: true},
		{name: "none exceeded by the spec: the condition's words",
			edits: []func(*v1alpha1.Campaign){failedIn(3, 1), dcOnly},
			scope: "datacenters held: dc-east: FailureBudgetExceeded; failure budget exceeded (datacenter dc-east: 3 failed, budget 2): raise spec.failurePolicy.maxFailures to go on there", tripped: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := campaign("os-2")
			for _, e := range tc.edits {
				e(c)
			}
			scope, tripped := trippedBudget(c)
			if scope != tc.scope || tripped != tc.tripped {
				t.Errorf("trippedBudget = %q, %v; want %q, %v", scope, tripped, tc.scope, tc.tripped)
			}
		})
	}
}
